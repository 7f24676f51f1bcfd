#!/usr/bin/env bash
# Configures and builds infllm-train into build/ (Release). Extra arguments go to CMake's configure
# step, e.g. `launch/build.sh -DINFLLM_CUDA=OFF`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
