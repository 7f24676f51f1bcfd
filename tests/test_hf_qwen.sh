#!/usr/bin/env bash
# test_hf_qwen.sh: the Qwen2 / Qwen3 families (and Llama with attention_bias) against `transformers`,
# the independent reference. For each of
#   qwen2   Qwen2Config: q/k/v biases, a GQA group of 7 (Qwen2.5-7B's), tied embeddings;
#   qwen3   Qwen3Config: per-head q/k RMSNorm, head_dim 32 given explicitly with 6 heads x 32 = 192
#           != hidden 64, a GQA group of 3, untied;
#   llama   LlamaConfig with attention_bias: biases on q, k, v and o;
# a tiny random model is built by transformers (biases N(0, 0.5), norm weights U(0.5, 1.5), so none
# is trivial), saved (fp32 safetensors; config.json written the way released Qwen files are: a
# top-level rope_theta, 1e6), and then:
#   1. logits: our fp32 forward of the imported folder (tests/tool_logits) against transformers in
#      fp32 on 64 tokens: relative L2 below 1e-5;
#   2. one training step: the trainer (CPU, fp32, model.init_from, a token shard of two sequences
#      of 64) logs its loss and gradient norm (metrics.jsonl); PyTorch autograd in float64 on the
#      same weights and tokens gives the reference: relative differences below 1e-5;
#   3. export: the checkpoint after that step is exported; transformers loads it with the family's
#      class (Qwen2ForCausalLM, ...) and gives our logits of the exported folder (relative L2 below
#      1e-5, both on its bf16 weights).
# Exit 77 (skipped) when torch, transformers or safetensors do not import.
# Usage (CTest): test_hf_qwen.sh BUILD_DIR TRAINER
set -euo pipefail
build=$(realpath "${1:-build}")
bin=$(realpath "${2:-$build/infllm-train}")
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
if ! python3 -c "import torch, transformers, safetensors" 2>/dev/null; then
  echo "test_hf_qwen: skipped: torch, transformers or safetensors do not import"
  exit 77
fi
dir=$(mktemp -d /tmp/infllm_test_hf_qwen_XXXXXX)
trap 'rm -rf "$dir"' EXIT

python3 - "$dir" "$bin" "$build/tests/tool_logits" <<'PY'
import json, os, struct, subprocess, sys
import numpy as np, torch
import transformers
from transformers import AutoModelForCausalLM

d, trainer, tool = sys.argv[1:4]
T, V = 64, 300
rng = np.random.default_rng(16)
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


FAMILIES = {
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(hidden_size=112, num_attention_heads=7, num_key_value_heads=1,
                   tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM",
              dict(hidden_size=64, num_attention_heads=6, num_key_value_heads=2, head_dim=32,
                   tie_word_embeddings=False)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                   attention_bias=True, tie_word_embeddings=False)),
}


def build(name):
    """A random model of the family, saved as released models are (top-level rope_theta)."""
    cls, _, shape = FAMILIES[name]
    cfg = getattr(transformers, cls)(vocab_size=V, intermediate_size=96, num_hidden_layers=2,
                                     max_position_embeddings=256, rms_norm_eps=1e-6,
                                     initializer_range=0.1, **shape)
    torch.manual_seed(16)
    model = AutoModelForCausalLM.from_config(cfg).float()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.normal_(0.0, 0.5)
            elif p.dim() == 1:  # every RMSNorm weight, the per-head ones included
                p.uniform_(0.5, 1.5)
    folder = f"{d}/{name}"
    model.save_pretrained(folder)
    path = f"{folder}/config.json"
    j = json.load(open(path))
    j.pop("rope_parameters", None)
    j["rope_theta"], j["rope_scaling"] = 1e6, None
    json.dump(j, open(path, "w"), indent=2)
    return folder


def hf_model(folder, dtype):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager")


def ours_logits(folder, tokens):
    np.asarray(tokens, dtype=np.int32).tofile(f"{d}/tokens.bin")
    subprocess.run([tool, folder, str(len(tokens)), f"{d}/tokens.bin", f"{d}/ours.bin"], check=True,
                   stdout=subprocess.DEVNULL)
    return np.fromfile(f"{d}/ours.bin", dtype=np.float32).reshape(len(tokens), V).astype(np.float64)


def logits_rel(folder, label):
    tokens = rng.integers(0, V, T)
    model = hf_model(folder, torch.float32)
    with torch.no_grad():
        ref = model(torch.tensor(tokens[None], dtype=torch.long)).logits[0].double().numpy()
    ours = ours_logits(folder, tokens)
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    check(rel < 1e-5, f"{label}: logits relative L2 {rel:.2e} (max abs {np.abs(ours - ref).max():.2e}), "
          f"{type(model).__name__}")
    return rel


def write_shard(path, tokens):
    with open(path, "wb") as f:
        f.write(b"INFLTOK1" + struct.pack("<IIQQ", 1, 2, len(tokens), V))
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


def train_one_step(name, folder, tokens):
    run = f"{d}/run_{name}"
    cfg = {"run_dir": run, "resume": "none", "model": {"init_from": folder},
           "data": {"seq_len": T, "source": "shards", "train_files": [f"{d}/{name}.tok"]},
           "train": {"max_steps": 1, "micro_batch_size": 2, "global_batch_size": 2, "lr": 1e-3,
                     "warmup_steps": 0, "eval_every": 0, "grad_clip": 0}}
    write_shard(f"{d}/{name}.tok", tokens)
    json.dump(cfg, open(f"{d}/{name}.json", "w"))
    subprocess.run([trainer, f"{d}/{name}.json"], check=True, stdout=subprocess.DEVNULL)
    rec = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"grad_norm"' in l][0]
    return run, rec["loss"], rec["grad_norm"]


def reference_step(folder, tokens):
    """Mean cross-entropy of both sequences and the global gradient norm, float64 autograd."""
    model = hf_model(folder, torch.float64)
    seqs = torch.tensor(np.stack([tokens[:T + 1], tokens[T:2 * T + 1]]), dtype=torch.long)
    logits = model(seqs[:, :T]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), seqs[:, 1:].reshape(-1))
    loss.backward()
    norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    return loss.item(), norm.item()


for name in FAMILIES:
    folder = build(name)
    logits_rel(folder, f"{name}: import")
    tokens = rng.integers(0, V, 2 * T + 1)
    run, loss, norm = train_one_step(name, folder, tokens)
    rloss, rnorm = reference_step(folder, tokens)
    dl, dn = abs(loss - rloss) / rloss, abs(norm - rnorm) / rnorm
    check(dl < 1e-5 and dn < 1e-5, f"{name}: one step: loss {loss:.9f} vs float64 {rloss:.9f} (rel {dl:.2e}), "
          f"grad norm {norm:.9f} vs {rnorm:.9f} (rel {dn:.2e})")
    out = f"{d}/export_{name}"
    subprocess.run([trainer, "export", f"{run}/ckpt/latest", out], check=True, stdout=subprocess.DEVNULL)
    exported = json.load(open(f"{out}/config.json"))
    check(exported["architectures"] == [FAMILIES[name][1]] and exported["model_type"] == name,
          f"{name}: exported config.json: {exported['architectures']}, model_type {exported['model_type']}")
    logits_rel(out, f"{name}: export")
sys.exit(1 if failures else 0)
PY
echo "test_hf_qwen: passed"
