#!/usr/bin/env bash
# The Hopper attention check in one command, on a machine with an sm_90 GPU: build with CUDA for
# arch 90 into BUILD, run test_gpu (every kernel against the CPU reference; its wgmma section
# asserts that the wgmma path takes the shipped dense shapes and checks it for D 64 / 128 and
# groups 1-16), then time dense causal attention (Hq 32, Hkv 2) beside PyTorch SDPA (flash and
# cuDNN) for D 128 and D 64, and print a short table last. Logs go to $OUT when set, else BUILD.
# Usage: bench/wgmma_check.sh [BUILD] [T...]   (default build-gpu, 8192 32768)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
Ts=("$@")
[ ${#Ts[@]} -gt 0 ] || Ts=(8192 32768)
out=${OUT:-$build}
mkdir -p "$out" "$build"
# cJSON from .deps/*.deb when the machine lacks it (the GPU machine has no package registry).
if ! [ -f /usr/include/cjson/cJSON.h ] && ls .deps/*.deb >/dev/null 2>&1; then
  for f in .deps/*.deb; do dpkg -i "$f" >/dev/null 2>&1 || dpkg -x "$f" /; done
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
t0=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DINFLLM_CUDA_ARCH=90 >"$out/cmake.log" 2>&1 &&
  cmake --build "$build" -j"$(nproc)" --target test_gpu bench_attention >"$out/build.log" 2>&1 ||
  { tail -40 "$out/build.log" "$out/cmake.log"; exit 1; }
echo "build: $(($(date +%s) - t0)) s"
timeout 600 "$build/tests/test_gpu" >"$out/test_gpu.log" 2>&1
tested=$?
status=$tested
grep -E "FAIL|wgmma path|test_gpu:" "$out/test_gpu.log" | tail -6
[ $tested = 0 ] || echo "test_gpu exited $tested (see test_gpu.log)"
for d in 128 64; do
  bench/run_attention.sh "$build" --hq 32 --hkv 2 --d "$d" --dense-only "${Ts[@]}" \
    >"$out/bench_d$d.log" 2>&1 || status=1
done
python3 - "$out/bench_d128.log" "$out/bench_d64.log" <<'PY'
import re, sys
rows = {}
for path, d in zip(sys.argv[1:], (128, 64)):
    for line in open(path):
        f = [x.strip() for x in line.split("|")]
        if len(f) < 5 or not f[1].endswith("k"):
            continue
        name = {"dense fwd": "ours fwd", "dense fwd+bwd": "ours fwd+bwd",
                "SDPA cuDNN fwd": "cuDNN fwd", "SDPA cuDNN fwd+bwd": "cuDNN fwd+bwd",
                "SDPA flash-attention-2 fwd": "FA2 fwd",
                "SDPA flash-attention-2 fwd+bwd": "FA2 fwd+bwd"}.get(f[2])
        if name:
            rows.setdefault((f[1], d), {})[name] = (float(f[3]), float(f[4]))
cols = ["ours fwd", "cuDNN fwd", "FA2 fwd", "ours fwd+bwd", "cuDNN fwd+bwd", "FA2 fwd+bwd"]
print("\nms (TFLOP/s), causal, bf16, Hq 32, Hkv 2")
print("| T | D | " + " | ".join(cols) + " | ours / cuDNN fwd | ours / cuDNN fwd+bwd |")
print("|---" * (len(cols) + 4) + "|")
for (t, d), r in sorted(rows.items(), key=lambda x: (-x[0][1], int(x[0][0][:-1]))):
    cells = ["%.2f (%.0f)" % r[c] if c in r else "-" for c in cols]
    ratio = lambda a, b: "%.2fx" % (r[a][0] / r[b][0]) if a in r and b in r else "-"
    print("| %s | %d | %s | %s | %s |" % (t, d, " | ".join(cells), ratio("ours fwd", "cuDNN fwd"),
                                          ratio("ours fwd+bwd", "cuDNN fwd+bwd")))
PY
exit $status
