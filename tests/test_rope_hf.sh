#!/usr/bin/env bash
# RoPE variants (plain, linear, dynamic, yarn, longrope, llama3) imported from Hugging Face folders
# that transformers writes, checked against transformers' logits, exported back, and raised for
# long context over an imported model: tests/rope_hf_check.py says what each check is.
# Needs torch and transformers (exit 77, skipped, when they do not import).
# Usage: test_rope_hf.sh BUILD_DIR TRAINER
set -euo pipefail
build=$(realpath "$1")
bin=$(realpath "$2")
cd "$(dirname "$0")/.."
if ! python3 -c "import torch, transformers" 2>/dev/null; then
  echo "test_rope_hf: skipped: torch and transformers do not import here"
  exit 77
fi
dir=$(mktemp -d /tmp/infllm_test_rope_hf_XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
python3 tests/rope_hf_check.py "$dir" "$build/tests/tool_logits" "$bin"
