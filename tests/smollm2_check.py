#!/usr/bin/env python3
"""smollm2_check.py: the checks of tests/test_smollm2.sh (a real pretrained model, converted from GGUF).

    python3 tests/smollm2_check.py MODEL.gguf HF_FOLDER TOOL_LOGITS WORK_DIR

HF_FOLDER is what tests/gguf_to_hf.py wrote from MODEL.gguf; TOOL_LOGITS is tests/tool_logits (our
importer and fp32 CPU forward). Checks, each with its tolerance, exit 1 on the first failure:
  1. ours vs an independent numpy Llama forward that reads the GGUF itself (gguf's dequantizer,
     llama.cpp's RoPE on adjacent pairs on the permuted q/k rows as stored: no unpermutation
     anywhere): relative L2 of the logits < 1e-4. The same forward with Hugging Face's rotate-half
     RoPE on the stored rows, i.e. a converter that forgot to undo the permutation, must be far
     off (> 1e-2): the check can fail.
  2. when torch + transformers (+ accelerate) import: transformers' LlamaForCausalLM on HF_FOLDER vs
     ours (< 1e-4); transformers' own GGUF reader and dequantizer (from_pretrained(gguf_file=...))
     vs HF_FOLDER: every weight (max abs difference <= 1e-6) and the logits (< 1e-5); the tokenizer
     of HF_FOLDER vs the one transformers builds from the GGUF, on strings of prose, code, digits,
     special tokens and unicode, with llama.cpp's "smollm" digit rule applied to the latter (see
     reference_ids).
"""
import json
import subprocess
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import Tokenizer

PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes "
          "Gutenberg combined movable metal type with an oil-based ink and a screw press. Within "
          "fifty years, printers in more than two hundred cities had produced millions of books.")
STRINGS = ["Hello world, this is a test.", "def f(x):\n\treturn x**2  # square\n",
           "In 2024, 3.14159 and 42 apples cost $1,000.", "<|im_start|>user\nHi!<|im_end|>\n",
           "naïve café ☃ 𝄞 日本語", "a  2 b   17 c\t9", "   leading spaces", "x\r\ny", "int main(void) { return 0; }"]
failures = 0


def check(ok, what):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    failures += 0 if ok else 1


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def gguf_weights(path):
    r = GGUFReader(path)
    w = {t.name: dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
         for t in r.tensors}
    meta = {k: r.fields[k].contents() for k in r.fields if k.startswith("llama.")}
    return w, meta


def rope(x, theta, adjacent):
    """x (T, H, D). adjacent: llama.cpp's pairs (2i, 2i+1); else Hugging Face's (i, i + D/2)."""
    t, _, d = x.shape
    ang = np.arange(t)[:, None] * theta ** (-np.arange(0, d, 2) / d)  # (T, D/2)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = (x[..., 0::2], x[..., 1::2]) if adjacent else (x[..., : d // 2], x[..., d // 2:])
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x)
    if adjacent:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., : d // 2], out[..., d // 2:] = ra, rb
    return out


def gguf_forward(w, meta, ids, adjacent=True):
    """Llama forward on the GGUF tensors as stored (float64 activations)."""
    hq, hkv = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    eps, theta = float(meta["llama.attention.layer_norm_rms_epsilon"]), float(meta["llama.rope.freq_base"])

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    t = len(ids)
    x = w["token_embd.weight"][ids].astype(np.float64)
    mask = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(meta["llama.block_count"]):
        p = lambda n: w[f"blk.{layer}.{n}.weight"]
        h = norm(x, p("attn_norm"))
        q = rope((h @ p("attn_q").T).reshape(t, hq, -1), theta, adjacent)
        k = rope((h @ p("attn_k").T).reshape(t, hkv, -1), theta, adjacent)
        v = (h @ p("attn_v").T).reshape(t, hkv, -1)
        g, d = hq // hkv, q.shape[-1]
        o = np.empty_like(q)
        for head in range(hq):
            s = q[:, head] @ k[:, head // g].T / np.sqrt(d) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            o[:, head] = (s / s.sum(-1, keepdims=True)) @ v[:, head // g]
        x = x + o.reshape(t, -1) @ p("attn_output").T
        h = norm(x, p("ffn_norm"))
        gate, up = h @ p("ffn_gate").T, h @ p("ffn_up").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ p("ffn_down").T
    head = w.get("output.weight", w["token_embd.weight"])
    return norm(x, w["output_norm.weight"]) @ head.T


def ours_logits(tool, folder, ids, work):
    np.asarray(ids, dtype=np.int32).tofile(f"{work}/tokens.bin")
    subprocess.run([tool, folder, str(len(ids)), f"{work}/tokens.bin", f"{work}/ours.bin"],
                   check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(f"{work}/ours.bin", dtype=np.float32).reshape(len(ids), -1)


def mean_nll(logits, ids):
    z = logits[:-1] - logits[:-1].max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-lp[np.arange(len(ids) - 1), ids[1:]].mean())


def reference_ids(tok, text):
    """llama.cpp's "smollm" pre-tokenizer: every number character is split off first, then the
    GPT-2 regex and BPE run on each piece (here: transformers' GGUF tokenizer on each piece)."""
    import regex
    ids, pos = [], 0
    for m in regex.finditer(r"\p{N}", text):
        ids += tok(text[pos:m.start()], add_special_tokens=False)["input_ids"] if m.start() > pos else []
        ids += tok(m.group(), add_special_tokens=False)["input_ids"]
        pos = m.end()
    return ids + (tok(text[pos:], add_special_tokens=False)["input_ids"] if pos < len(text) else [])


def transformers_checks(gguf_path, folder, ids, ours):
    import os
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gdir, gname = os.path.split(os.path.abspath(gguf_path))
    conv = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    with torch.no_grad():
        x = torch.tensor([ids])
        lc, ld = conv(x).logits[0].double().numpy(), direct(x).logits[0].double().numpy()
    r = rel(ours, lc)
    check(r < 1e-4, f"ours vs transformers on the converted folder: relative L2 {r:.3g}, "
          f"max abs {np.abs(ours - lc).max():.3g} (< 1e-4)")
    sc, sd = conv.state_dict(), direct.state_dict()
    dw = max(float((sc[k] - sd[k]).abs().max()) for k in sc)
    check(sc.keys() == sd.keys() and dw <= 1e-6,
          f"converted weights vs transformers' GGUF reader: {len(sc)} tensors, max abs difference {dw:.3g} (<= 1e-6)")
    r = rel(lc, ld)
    check(r < 1e-5, f"logits, converted folder vs transformers on the GGUF directly: relative L2 {r:.3g} (< 1e-5)")
    ref_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    ours_tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    plain = 0
    for s in STRINGS + [PROMPT]:
        a, b = ours_tok.encode(s).ids, reference_ids(ref_tok, s)
        check(a == b, f"tokenizer: {len(a)} ids for {json.dumps(s[:40], ensure_ascii=False)}")
        plain += a != ref_tok(s)["input_ids"]
    print(f"     ({plain} of {len(STRINGS) + 1} strings differ from transformers' GGUF tokenizer without the "
          f"digit rule: it does not know the \"smollm\" pre-tokenizer)")


def main():
    gguf_path, folder, tool, work = sys.argv[1:5]
    ids = Tokenizer.from_file(f"{folder}/tokenizer.json").encode(PROMPT).ids[:48]
    w, meta = gguf_weights(gguf_path)
    ours = ours_logits(tool, folder, ids, work).astype(np.float64)
    ref = gguf_forward(w, meta, ids)
    r = rel(ours, ref)
    check(r < 1e-4, f"ours vs numpy forward on the GGUF (llama.cpp RoPE layout), {len(ids)} tokens: "
          f"relative L2 {r:.3g}, max abs {np.abs(ours - ref).max():.3g} (< 1e-4)")
    r = rel(gguf_forward(w, meta, ids, adjacent=False), ref)
    check(r > 1e-2, f"q/k rows left permuted (rotate-half RoPE on the stored rows): relative L2 {r:.3g} (> 1e-2)")
    print(f"     mean next-token loss of the prompt: ours {mean_nll(ours, ids):.4f}, numpy {mean_nll(ref, ids):.4f}")
    try:
        import accelerate, torch, transformers  # noqa: F401
    except ImportError as e:
        print(f"skip transformers checks: {e.name} not importable")
    else:
        transformers_checks(gguf_path, folder, ids, ours)
    print(f"smollm2_check: {'passed' if failures == 0 else f'{failures} FAILED'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
