#!/usr/bin/env bash
# Launches infllm-train with one rank per GPU on this node (or on the hosts of a hostfile) under
# Open MPI, with NCCL defaults that suit a single NVLink node.
#   launch/train.sh CONFIG [--gpus N] [--hostfile FILE] [trainer options...]
# Every rank picks GPU (node-local rank % GPUs of the node): the node-local rank comes from MPI
# (MPI_COMM_TYPE_SHARED, the same value as OMPI_COMM_WORLD_LOCAL_RANK), so ranks are mapped
# by node and not bound to cores. The trainer prints the rank -> host/GPU map and the NCCL version.
# Stop a run cleanly with `kill -USR1 <mpirun pid>` (mpirun forwards it; the ranks finish the
# step, checkpoint and exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: launch/train.sh CONFIG [--gpus N] [--hostfile FILE] [options]" >&2; exit 2; }
config=$1
shift
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || echo 0)
hostfile=()
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --gpus) gpus=$2; shift 2 ;;
    --hostfile) hostfile=(--hostfile "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ "$gpus" -ge 1 ] || { echo "launch/train.sh: no GPU found (set --gpus)" >&2; exit 2; }
np=$gpus
if [ ${#hostfile[@]} -gt 0 ]; then
  np=$(( gpus * $(grep -cv '^\s*\(#\|$\)' "${hostfile[1]}") ))
fi
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
exec mpirun "${root[@]}" "${hostfile[@]}" -np "$np" --map-by "ppr:${gpus}:node" --bind-to none \
  -x NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}" -x NCCL_DEBUG="${NCCL_DEBUG:-WARN}" \
  -x NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-0}" -x OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}" \
  build/infllm-train "$config" "${args[@]}"
