#!/usr/bin/env bash
# Every GQA group size on one GPU in one command: runs test_gpu (every kernel against the CPU
# reference, attention and selection for G 1, 2, 3, 4, 6, 7, 8, 16) and times one layer's
# attention at 64k tokens (bench_attention: dense fwd+bwd, selection, sparse fwd, sparse
# fwd+bwd with selection) for the query/KV head counts of issue 17, then prints one table.
# Binaries: from $PREBUILT (test_gpu, bench_attention) when they start on this machine (else it
# stops, unless BUILD_IF_NEEDED=1), or built into $BUILD (default /tmp/build-gqa) for sm_90 when
# PREBUILT is unset. Logs go to $OUT when set.
# SHAPES ("Hq,Hkv,D ...") and BENCH_ARGS (e.g. --forward-only) narrow the timings.
# Usage: bench/gqa_check.sh [T, default 65536]
set -uo pipefail
cd "$(dirname "$0")/.."
T=${1:-65536}
out=${OUT:-/tmp/gqa-check}
build=${BUILD:-/tmp/build-gqa}
mkdir -p "$out"
if ! [ -f /usr/include/cjson/cJSON.h ] && ls .deps/*.deb >/dev/null 2>&1; then
  for f in .deps/*.deb; do dpkg -i "$f" >/dev/null 2>&1 || dpkg -x "$f" /; done
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
bin=""
if [ -n "${PREBUILT:-}" ] && [ -x "$PREBUILT/test_gpu" ] &&
   "$PREBUILT/bench_attention" --hq 2 --hkv 1 --d 64 --selection-only 2048 >"$out/smoke.log" 2>&1; then
  bin=$PREBUILT
  echo "binaries: prebuilt ($PREBUILT)"
elif [ -n "${PREBUILT:-}" ] && [ "${BUILD_IF_NEEDED:-0}" != 1 ]; then
  echo "prebuilt binaries do not start here:"; ldd "$PREBUILT/test_gpu" | grep "not found"
  tail -5 "$out/smoke.log"; exit 1
else
  t0=$(date +%s)
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DINFLLM_CUDA_ARCH=90 >"$out/cmake.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" --target test_gpu bench_attention >"$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log" "$out/cmake.log"; exit 1; }
  bin=$build
  echo "binaries: built in $(( $(date +%s) - t0 )) s"
fi
tg=$bin/test_gpu; [ -x "$tg" ] || tg=$bin/tests/test_gpu
ba=$bin/bench_attention; [ -x "$ba" ] || ba=$bin/bench/bench_attention
shapes=${SHAPES:-"9,3,64 12,4,64 16,2,64 8,1,64 4,4,64 32,2,128 28,4,128 24,4,128"}
for s in $shapes; do
  IFS=, read -r hq hkv d <<<"$s"
  echo "## Hq $hq Hkv $hkv D $d" >>"$out/bench.log"
  timeout "${BENCH_TIMEOUT:-120}" "$ba" --hq "$hq" --hkv "$hkv" --d "$d" --dense-max "$T" ${BENCH_ARGS:-} "$T" \
    >>"$out/bench.log" 2>&1 ||
    echo "| bench Hq $hq Hkv $hkv D $d failed or timed out |" >>"$out/bench.log"
done
t0=$(date +%s)
timeout "${TEST_TIMEOUT:-240}" "$tg" >"$out/test_gpu.log" 2>&1
rc=$?
grep -E "FAIL|refuse|differ beyond|tensor-core dense" "$out/test_gpu.log" | head -20
echo "test_gpu: rc $rc in $(( $(date +%s) - t0 )) s: $(tail -1 "$out/test_gpu.log")"
echo
echo "| Hq/Hkv/D | G | dense fwd ms | dense fwd+bwd ms | selection ms | sparse fwd ms | sparse fwd+bwd+sel ms | sel TFLOP/s |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'|' '
  /^## Hq/ { if (key != "") print row; split($0, w, " "); key = w[3] "/" w[5] "/" w[7];
             g = w[3] / w[5]; d1 = df = sel = sf = sfb = st = "-" ; row = "" }
  /dense fwd  / { d1 = $4 + 0 }
  /dense fwd\+bwd/ { df = $4 + 0 }
  /selection \(stages/ { sel = $4 + 0; st = $5 + 0 }
  /sparse fwd \(stage 3\)/ { sf = $4 + 0 }
  /sparse fwd\+bwd incl/ { sfb = $4 + 0 }
  { if (key != "") row = sprintf("| %s | %d | %s | %s | %s | %s | %s | %s |", key, g, d1, df, sel, sf, sfb, st) }
  /failed or timed out/ { row = row " (failed)" }
  END { if (key != "") print row }' "$out/bench.log"
exit $rc
