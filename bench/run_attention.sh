#!/usr/bin/env bash
# Runs bench/attention (ours), bench/sdpa.py (PyTorch SDPA, flash-attention-2 and cuDNN) and,
# where the user has installed their `infllm_v2` package, bench/infllmv2_peer.py (the released
# InfLLM-V2 kernels) on the same shapes in one session and prints the tables. Needs a CUDA build in
# BUILD (default build-gpu) and PyTorch on the machine.
# Usage: bench/run_attention.sh [BUILD] [T...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
Ts=("$@")
[ ${#Ts[@]} -gt 0 ] || Ts=(8192 32768 65536 131072)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
"$build/bench_attention" "${Ts[@]}"
python3 bench/sdpa.py "${Ts[@]}"
python3 bench/infllmv2_peer.py "${Ts[@]}" || [ $? = 77 ] # 77: infllm_v2 not installed
