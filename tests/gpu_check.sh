#!/usr/bin/env bash
# The GPU session in one command, for a machine with an NVIDIA GPU (CI has none): build with CUDA
# for sm_90, run the `gpu` CTest label (every kernel against the CPU reference, a tiny model's
# gradients, two ranks sharing the GPU), the export check against `transformers`, the quickstart
# on the GPU, and a 64k-token InfLLM-V2 run of the MiniCPM4-0.5B shape with its step time,
# tokens/s and memory. Logs go to $OUT when set (the device tool's output folder), else build-gpu/.
# Binaries built elsewhere (a machine without a GPU compiles them for free): PREBUILT=DIR takes
# infllm-train, bench_attention and tests/{test_gpu,test_parallel,tool_logits} from the build folder
# DIR of the same source tree; CTest is configured here without building and runs them.
# Usage: tests/gpu_check.sh [steps of the 64k run, default 3]
set -uo pipefail
cd "$(dirname "$0")/.."
steps=${1:-3}
out=${OUT:-build-gpu}
mkdir -p "$out"
# cJSON from .deps/*.deb when the machine lacks it (the GPU machine has no package registry).
if ! [ -f /usr/include/cjson/cJSON.h ] && ls .deps/*.deb >/dev/null 2>&1; then
  for f in .deps/*.deb; do dpkg -i "$f" >/dev/null 2>&1 || dpkg -x "$f" /; done
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
t0=$(date +%s)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DINFLLM_CUDA_ARCH=90 >"$out/cmake.log" 2>&1 ||
  { tail -40 "$out/cmake.log"; exit 1; }
if [ -n "${PREBUILT:-}" ]; then
  for f in infllm-train bench_attention tests/test_gpu tests/test_parallel tests/tool_logits; do
    [ -x "$PREBUILT/$f" ] || { echo "PREBUILT: $PREBUILT/$f is missing"; exit 1; }
    mkdir -p "build-gpu/$(dirname "$f")" && cp "$PREBUILT/$f" "build-gpu/$f"
  done
  echo "binaries: prebuilt ($PREBUILT)"
else
  cmake --build build-gpu -j"$(nproc)" --target infllm-train test_gpu test_parallel tool_logits \
    >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t0 )) s"
fi
status=0
(cd build-gpu && ctest -L gpu --output-on-failure --timeout 600) 2>&1 | tee "$out/ctest_gpu.log" | \
  grep -E "rel L2|differ|loss|Test +#|tests passed|FAIL|step" || true
grep -q "100% tests passed" "$out/ctest_gpu.log" || status=1
bash tests/test_export.sh build-gpu build-gpu/infllm-train 2>&1 | tee "$out/export.log" | tail -4
build-gpu/infllm-train configs/quickstart.json --set device=cuda --set train.max_steps=30 \
  --set run_dir=/tmp/quickstart-cuda --set resume=none --set log.every=10 2>&1 |
  tee "$out/quickstart_cuda.log" | grep -E "^step|^done|^eval|error"
build-gpu/infllm-train configs/minicpm4_0.5b_64k.json --set train.max_steps="$steps" \
  --set train.warmup_steps=1 --set run_dir=/tmp/minicpm64k --set resume=none --set log.every=1 \
  --set train.eval_every=0 2>&1 | tee "$out/minicpm_64k.log" | grep -E "^step|^done|total|error|cuda:"
exit $status
