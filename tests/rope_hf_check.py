#!/usr/bin/env python3
"""rope_hf_check.py: the checks of tests/test_rope_hf.sh (RoPE variants against transformers).

    python3 tests/rope_hf_check.py WORK_DIR TOOL_LOGITS TRAINER

For each rope type (plain with a non-default theta, linear, dynamic, yarn with its defaults, yarn
with beta_fast / beta_slow / mscale / mscale_all_dim / truncate false, yarn with an explicit
attention_factor, llama3, longrope), transformers builds a tiny random Llama (LlamaConfig,
save_pretrained: transformers 5 writes the `rope_parameters` layout) whose original context (64)
is far below the sequence (T = 256), so the scaling matters. Checks, exit 1 when any fails:
  1. our fp32 logits of the folder (tests/tool_logits: our importer and CPU forward) against
     transformers' LlamaForCausalLM in fp32: relative L2 < 1e-5 and max abs < 1e-5 x max |ref|.
     The same weights under plain RoPE (theta 10000) must move transformers' logits by > 1e-2, so
     a scaling we ignored could not pass.
  2. the 4.x layout (top-level rope_theta + rope_scaling, `type` for `rope_type` in one case) of the
     same folders gives bit-identical logits of ours.
  3. train one step with lr 0 from the folder, `export --dtype float32`: the exported config.json
     has the source's RoPE fields exactly (same layout, same values), and transformers gives
     bit-identical logits on the export and on the source.
  4. long-context RoPE over an imported model (model.rope_override): a raised rope_theta with a
     yarn scaling for 512 tokens is trained, exported, and transformers on the export matches our
     logits of the export; without the override the run stops (exit 2) naming both values.
  5. config.json whose two layouts disagree (rope_theta against rope_parameters.rope_theta,
     rope_scaling against rope_parameters) stops with exit 2 naming config.json and both fields.
"""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

WORK, TOOL, TRAINER = sys.argv[1], sys.argv[2], sys.argv[3]
T, ORIG, D, V = 256, 64, 32, 256
failures = 0


def check(ok, what):
    global failures
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    failures += 0 if ok else 1
    return ok


def cases():
    rng = np.random.default_rng(1)
    longrope = {"rope_type": "longrope", "original_max_position_embeddings": ORIG,
                "long_factor": [round(float(x), 4) for x in 1 + 3 * rng.random(D // 2)],
                "short_factor": [round(float(x), 4) for x in 1 + 0.2 * rng.random(D // 2)]}
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": ORIG}
    return {
        "default": (50000.0, T, None),
        "linear": (10000.0, T, {"rope_type": "linear", "factor": 3.0}),
        "dynamic": (10000.0, ORIG, {"rope_type": "dynamic", "factor": 2.0}),
        "yarn": (10000.0, T, yarn),
        "yarn_mscale": (20000.0, T, {**yarn, "beta_fast": 16.0, "beta_slow": 2.0, "mscale": 0.8,
                                     "mscale_all_dim": 0.5, "truncate": False}),
        "yarn_attention": (10000.0, T, {**yarn, "attention_factor": 1.25}),
        "llama3": (500000.0, T, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": ORIG}),
        "longrope": (10000.0, T, longrope),
    }


def build(name, theta, max_pos, scaling):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=D, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, max_position_embeddings=max_pos, rope_theta=theta,
                      rope_scaling=copy.deepcopy(scaling))
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():  # sharper attention: positions move the logits more
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    model.save_pretrained(f"{WORK}/{name}")


def ref_logits(folder, tokens, rope=None):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if rope is not None:  # the same weights under another RoPE
        cfg = copy.deepcopy(model.config)
        cfg.rope_parameters = rope
        other = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        other.load_state_dict(model.state_dict())
        model = other
    with torch.no_grad():
        return model(torch.tensor(tokens[None], dtype=torch.long)).logits[0].float().numpy()


def our_logits(folder, tokens):
    tokens.tofile(f"{WORK}/tokens.bin")
    subprocess.run([TOOL, folder, str(len(tokens)), f"{WORK}/tokens.bin", f"{WORK}/ours.bin"],
                   check=True, capture_output=True)
    return np.fromfile(f"{WORK}/ours.bin", dtype=np.float32).reshape(len(tokens), -1)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def legacy_copy(name, use_type):
    """The folder with config.json in transformers 4.x's layout."""
    src, dst = f"{WORK}/{name}", f"{WORK}/{name}_v4"
    os.makedirs(dst, exist_ok=True)
    os.link(f"{src}/model.safetensors", f"{dst}/model.safetensors")
    cfg = json.load(open(f"{src}/config.json"))
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    if use_type:
        rp["type"] = rp.pop("rope_type")
    cfg["rope_scaling"] = rp
    json.dump(cfg, open(f"{dst}/config.json", "w"), indent=2)
    return dst


def run(*args):
    return subprocess.run([TRAINER, *args], capture_output=True, text=True)


def train_export(folder, run_dir, out, *sets):
    """Trains one step from folder and exports it in fp32: (training's result, export's result)."""
    base = f"{WORK}/base.json"
    r = run(base, "--set", f"run_dir={run_dir}", "--set", f"model.init_from={folder}", *sets)
    if r.returncode != 0:
        return r, r
    return r, run("export", f"{run_dir}/ckpt/latest", out, "--dtype", "float32")


def write_base():
    base = {"data": {"seq_len": T, "synthetic": {"n_pairs": 4, "n_queries": 2, "n_keys": 32,
                                                  "n_values": 32}},
            "resume": "none",
            "train": {"max_steps": 1, "warmup_steps": 0, "micro_batch_size": 1,
                      "global_batch_size": 1, "lr": 0, "min_lr": 0, "weight_decay": 0,
                      "eval_every": 0},
            "log": {"every": 100}}
    json.dump(base, open(f"{WORK}/base.json", "w"))


def rope_fields(cfg):
    keys = ("rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings")
    return {k: cfg[k] for k in keys if k in cfg}


def check_variants(tokens):
    print("== logits against transformers (T = 256, original context 64)")
    for name, (theta, max_pos, scaling) in cases().items():
        build(name, theta, max_pos, scaling)
        folder = f"{WORK}/{name}"
        ref, ours = ref_logits(folder, tokens), our_logits(folder, tokens)
        plain = ref_logits(folder, tokens, {"rope_type": "default", "rope_theta": 10000.0})
        r, m = rel(ours, ref), float(np.abs(ours - ref).max() / np.abs(ref).max())
        check(r < 1e-5 and m < 1e-5 and rel(plain, ref) > 1e-2,
              f"{name:15s} ours vs transformers: relative L2 {r:.2e}, max abs {m:.2e} of max "
              f"|logit|; plain RoPE moves transformers' logits by {rel(plain, ref):.2f}")
        if name in ("yarn_mscale", "llama3", "longrope"):
            v4 = legacy_copy(name, use_type=name == "llama3")
            check(np.array_equal(our_logits(v4, tokens), ours),
                  f"{name:15s} 4.x layout (rope_theta + rope_scaling) gives the same logits")


def check_round_trip(tokens):
    print("== import -> train (lr 0) -> export --dtype float32")
    for name in [*cases(), "yarn_mscale_v4", "llama3_v4", "longrope_v4"]:
        folder, out = f"{WORK}/{name}", f"{WORK}/{name}_export"
        _, r = train_export(folder, f"{WORK}/run_{name}", out)
        if not check(r.returncode == 0, f"{name:15s} train and export: {r.stderr.strip()[-300:]}"):
            continue
        src, exp = json.load(open(f"{folder}/config.json")), json.load(open(f"{out}/config.json"))
        same_ref = np.array_equal(ref_logits(out, tokens), ref_logits(folder, tokens))
        check(rope_fields(src) == rope_fields(exp) and exp["dtype"] == "float32" and same_ref,
              f"{name:15s} exported RoPE fields {json.dumps(rope_fields(exp))[:90]}... equal the "
              f"source's; transformers' logits identical")


def check_override(tokens):
    print("== long-context RoPE over an imported model (model.rope_override)")
    sets = ["--set", "model.rope_theta=200000", "--set", "model.max_position_embeddings=512",
            "--set", 'model.rope_scaling={"rope_type": "yarn", "factor": 2, '
                     '"original_max_position_embeddings": 256}']
    r, _ = train_export(f"{WORK}/llama3", f"{WORK}/run_abf0", f"{WORK}/abf0", *sets)
    check(r.returncode == 2 and "model.rope_theta is 200000 but" in r.stderr and
          "rope_override" in r.stderr, f"without the override: exit {r.returncode}: "
          f"{r.stderr.strip()}")
    t, r = train_export(f"{WORK}/llama3", f"{WORK}/run_abf", f"{WORK}/abf", "--set",
                        "model.rope_override=true", *sets)
    if not check(r.returncode == 0, f"with the override: trained and exported {r.stderr[-300:]}"):
        return
    notes = [line for line in t.stdout.splitlines() if line.startswith("note:")]
    check(len(notes) == 3 and "model.rope_theta is 200000, replacing" in notes[0] and
          "max_position_embeddings 256" in notes[1] and "rope_type \"llama3\"" in notes[2],
          "notes:\n     " + "\n     ".join(notes))
    exp = json.load(open(f"{WORK}/abf/config.json"))
    want = {"rope_type": "yarn", "rope_theta": 200000, "factor": 2,
            "original_max_position_embeddings": 256}
    check(exp["rope_parameters"] == want and exp["max_position_embeddings"] == 512,
          f"exported: {json.dumps(rope_fields(exp))}")
    ref, ours = ref_logits(f"{WORK}/abf", tokens), our_logits(f"{WORK}/abf", tokens)
    check(rel(ours, ref) < 1e-5, f"transformers on the export vs ours: relative L2 "
          f"{rel(ours, ref):.2e} (the llama3 source's logits differ by "
          f"{rel(ref, ref_logits(f'{WORK}/llama3', tokens)):.2f})")


def check_conflicts():
    print("== config.json whose two layouts disagree")
    cfg = json.load(open(f"{WORK}/yarn/config.json"))
    bad = [({**cfg, "rope_theta": 10000.5},
            "rope_theta (10000.5) and rope_parameters.rope_theta (10000) disagree"),
           ({**cfg, "rope_scaling": {"type": "yarn", "factor": 8.0,
                                     "original_max_position_embeddings": ORIG}},
            "rope_scaling.factor (8) and rope_parameters.factor (4) disagree"),
           ({**cfg, "rope_parameters": {**cfg["rope_parameters"], "partial_rotary_factor": 0.5}},
            "partial RoPE is not supported")]
    for i, (c, want) in enumerate(bad):
        d = f"{WORK}/conflict{i}"
        os.makedirs(d, exist_ok=True)
        json.dump(c, open(f"{d}/config.json", "w"))
        r = run(f"{WORK}/base.json", "--set", f"model.init_from={d}", "--dry-run")
        err = r.stderr.strip()
        check(r.returncode == 2 and f"{d}/config.json: " in err and want in err and
              err.count("\n") == 0, f"exit {r.returncode}: {err}")


def main():
    write_base()
    tokens = np.random.default_rng(0).integers(0, V, T).astype(np.int32)
    check_variants(tokens)
    check_round_trip(tokens)
    check_override(tokens)
    check_conflicts()
    print(f"rope_hf_check: {failures} failure(s)")
    sys.exit(1 if failures else 0)


main()
