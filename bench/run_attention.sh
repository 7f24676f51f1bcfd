#!/usr/bin/env bash
# Runs bench/attention (ours), bench/sdpa.py (PyTorch SDPA, flash-attention-2 and cuDNN) and,
# where the user has installed their `infllm_v2` package, bench/infllmv2_peer.py (the released
# InfLLM-V2 kernels) on the same shapes in one session and prints the tables. Needs a CUDA build in
# BUILD (default build-gpu) and PyTorch on the machine. --hq, --hkv and --d go to ours and SDPA;
# --dense-only times dense attention alone (no selection, no sparse kernels, no InfLLM-V2 peer);
# --split-probe goes to ours (stage 3 on the forced and dynamic parts, and the split forward).
# Usage: bench/run_attention.sh [BUILD] [--hq N] [--hkv N] [--d N] [--dense-only] [--split-probe] [T...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shift || true
opts=()
shape=()
Ts=()
dense_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --hq | --hkv | --d) shape+=("$1" "$2"); shift 2 ;;
    --dense-only) opts+=("$1"); dense_only=1; shift ;;
    --split-probe) opts+=("$1"); shift ;;
    *) Ts+=("$1"); shift ;;
  esac
done
[ ${#Ts[@]} -gt 0 ] || Ts=(8192 32768 65536 131072)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
"$build/bench_attention" ${shape[@]+"${shape[@]}"} ${opts[@]+"${opts[@]}"} "${Ts[@]}"
python3 bench/sdpa.py ${shape[@]+"${shape[@]}"} "${Ts[@]}"
[ $dense_only = 1 ] || python3 bench/infllmv2_peer.py "${Ts[@]}" || [ $? = 77 ] # 77: not installed
