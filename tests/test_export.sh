#!/usr/bin/env bash
# Export to a Hugging Face folder, checked by independent readers:
#   1. a tiny Llama (untied) and a tiny MiniCPM (tied, muP scales) train 3 steps and export; the
#      Python `safetensors` package loads model.safetensors with the expected names, shapes, BF16
#      dtype and {"format": "pt"} metadata; config.json carries the shape, architectures,
#      torch_dtype and sparse_config; a small --max-shard-bytes gives shards plus an index that
#      covers every tensor;
#   2. export -> import (model.init_from) -> a step with lr 0 -> export gives byte-identical files;
#   3. when `torch` and `transformers` import, LlamaForCausalLM.from_pretrained on the export gives
#      the same next-token logits as our fp32 forward of the imported folder (tests/tool_logits);
#   4. an imported folder with tokenizer, chat template (also additional_chat_templates/),
#      generation and remote-code files beside other files: `export --dtype float32` of a run from
#      it carries exactly the side files, byte-identical, writes F32 tensors equal to the imported
#      ones (lr 0) and torch_dtype / dtype float32; every config.json field import reads, given
#      values that need 17 digits, reads back from the export as the same double.
# Usage: test_export.sh BUILD_DIR TRAINER
set -euo pipefail
build=$1
bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
  python3 -m pip install --quiet safetensors numpy >/dev/null 2>&1 ||
    { echo "test_export: the safetensors Python package cannot be installed: skipped"; exit 77; }
fi
small=(--set data.seq_len=128 --set train.max_steps=3 --set train.warmup_steps=1 --set train.eval_every=0 --set resume=none
       --set train.micro_batch_size=2 --set train.global_batch_size=2 --set log.every=100)

echo "== 1. export checked by the safetensors package"
"$bin" configs/quickstart.json "${small[@]}" --set run_dir="$dir/llama" \
  --set model.tie_word_embeddings=false >/dev/null
"$bin" configs/quickstart.json "${small[@]}" --set run_dir="$dir/minicpm" \
  --set model.model_type=minicpm --set model.scale_emb=4 --set model.dim_model_base=32 >/dev/null
"$bin" export "$dir/llama/ckpt/latest" "$dir/hf_llama"
"$bin" export "$dir/minicpm/ckpt/latest" "$dir/hf_minicpm"
"$bin" export "$dir/llama/ckpt/latest" "$dir/hf_sharded" --max-shard-bytes 300000
python3 - "$dir" <<'PY'
import json, os, sys
from safetensors import safe_open
d = sys.argv[1]
def check(folder, arch, tied):
    cfg = json.load(open(f"{d}/{folder}/config.json"))
    assert cfg["architectures"] == [arch], cfg["architectures"]
    assert cfg["torch_dtype"] == "bfloat16" and cfg["hidden_size"] == 128 and cfg["num_hidden_layers"] == 4
    assert cfg["num_key_value_heads"] == 2 and cfg["vocab_size"] == 512 and "sparse_config" in cfg
    assert cfg["tie_word_embeddings"] == tied
    if arch.startswith("MiniCPM"):
        assert cfg["scale_emb"] == 4 and cfg["dim_model_base"] == 32 and cfg["scale_depth"] == 1.4
    names = {}
    index = f"{d}/{folder}/model.safetensors.index.json"
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    for fn in files:
        with safe_open(f"{d}/{folder}/{fn}", framework="numpy") as f:
            assert f.metadata() == {"format": "pt"}, f.metadata()
            for k in f.keys():
                names[k] = fn
    if os.path.exists(index):
        wm = json.load(open(index))["weight_map"]
        assert wm == names, "index weight_map does not match the shards"
    raw = open(f"{d}/{folder}/{files[0]}", "rb").read()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    shapes = {k: v for k, v in header.items() if k != "__metadata__"}
    assert all(v["dtype"] == "BF16" for v in shapes.values())
    expect = {"model.embed_tokens.weight": [512, 128], "model.norm.weight": [128],
              "model.layers.3.self_attn.q_proj.weight": [128, 128],
              "model.layers.3.self_attn.k_proj.weight": [64, 128],
              "model.layers.0.mlp.down_proj.weight": [128, 384]}
    if not tied: expect["lm_head.weight"] = [512, 128]
    if len(files) == 1:
        for k, s in expect.items():
            assert shapes[k]["shape"] == s, (k, shapes[k]["shape"], s)
    assert ("lm_head.weight" in names) == (not tied)
    assert len(names) == 3 + 9 * 4 - (1 if tied else 0), len(names)
    print(f"{folder}: {len(names)} tensors in {len(files)} file(s), BF16, format pt, config.json ok")
check("hf_llama", "LlamaForCausalLM", False)
check("hf_minicpm", "MiniCPMForCausalLM", True)
check("hf_sharded", "LlamaForCausalLM", False)
PY

echo "== 2. export -> import -> export"
"$bin" configs/quickstart.json "${small[@]}" --set run_dir="$dir/reimport" \
  --set model.init_from="$dir/hf_llama" --set model.tie_word_embeddings=false \
  --set train.max_steps=1 --set train.warmup_steps=0 \
  --set train.lr=0 --set train.min_lr=0 --set train.weight_decay=0 | grep "imported"
"$bin" export "$dir/reimport/ckpt/latest" "$dir/hf_again"
cmp "$dir/hf_llama/model.safetensors" "$dir/hf_again/model.safetensors"
echo "re-exported weights byte-identical"

echo "== 4. side files, --dtype float32, exact config.json fields"
python3 - "$dir" <<'PY'
import json, os, shutil, sys
d = sys.argv[1]
src, side = f"{d}/hf_side", f"{d}/hf_side_files"
shutil.copytree(f"{d}/hf_llama", src)
cfg = json.load(open(f"{src}/config.json"))
cfg.update({"rms_norm_eps": 1.0000000000000002e-05, "rope_theta": 12345.678901234567,
            "max_position_embeddings": 1024, "transformers_version": "5.0.0",
            "rope_scaling": {"rope_type": "yarn", "factor": 1.2345678901234567,
                             "original_max_position_embeddings": 256, "attention_factor": 1.1000000000000001,
                             "beta_fast": 31.999999999999996, "beta_slow": 0.30000000000000004, "truncate": False}})
json.dump(cfg, open(f"{src}/config.json", "w"), indent=2)
files = {"tokenizer.json": '{"model": {}}', "tokenizer_config.json": '{"chat_template": "x"}',
         "special_tokens_map.json": "{}", "chat_template.jinja": "{{ messages }}\n",
         "generation_config.json": '{"do_sample": true}', "vocab.json": "{}", "merges.txt": "a b\n",
         "tokenizer.model": "\x00spm", "added_tokens.json": "{}", "modeling_x.py": "# code\n",
         "additional_chat_templates/tool_use.jinja": "{{ tools }}\n"}
others = ["README.md", "training_args.bin", "pytorch_model.bin", "notes.txt"]
for name, text in [*files.items(), *[(o, "not carried") for o in others]]:
    os.makedirs(os.path.dirname(f"{src}/{name}"), exist_ok=True)
    open(f"{src}/{name}", "w").write(text)
json.dump(sorted(files), open(f"{d}/side_names.json", "w"))
base = json.load(open("configs/quickstart.json"))
del base["model"]  # the imported config.json gives every model key
json.dump(base, open(f"{d}/base.json", "w"))
PY
"$bin" "$dir/base.json" "${small[@]}" --set run_dir="$dir/side" \
  --set model.init_from="$dir/hf_side" --set train.max_steps=1 --set train.warmup_steps=0 \
  --set train.lr=0 --set train.min_lr=0 --set train.weight_decay=0 >/dev/null
"$bin" export "$dir/side/ckpt/latest" "$dir/hf_side_out" --dtype float32 | tee "$dir/export.log"
grep -q "export: from $dir/hf_side: .*chat_template.jinja" "$dir/export.log"
if "$bin" export "$dir/side/ckpt/latest" "$dir/hf_bad" --dtype float16 2>"$dir/err"; then
  echo "FAIL --dtype float16 accepted"; exit 1
fi
grep -q "export: --dtype needs float32 or bfloat16, got \"float16\"" "$dir/err" && cat "$dir/err"
python3 - "$dir" <<'PY'
import filecmp, json, os, sys
import numpy as np
d = sys.argv[1]
src, out = f"{d}/hf_side", f"{d}/hf_side_out"
names = json.load(open(f"{d}/side_names.json"))
for n in names:
    assert filecmp.cmp(f"{src}/{n}", f"{out}/{n}", shallow=False), f"{n} not carried byte-identical"
written = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs)
assert written == sorted(names + ["config.json", "model.safetensors"]), written
cfg, src_cfg = json.load(open(f"{out}/config.json")), json.load(open(f"{src}/config.json"))
assert cfg["torch_dtype"] == cfg["dtype"] == "float32", (cfg["torch_dtype"], cfg["dtype"])
read = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "rope_theta", "rms_norm_eps", "max_position_embeddings",
        "tie_word_embeddings", "rope_scaling"]
diff = {k: (src_cfg.get(k), cfg.get(k)) for k in read if src_cfg.get(k) != cfg.get(k)}
assert not diff, f"exported config.json fields differ from the imported ones: {diff}"
def tensors(path):  # numpy has no bfloat16: widen BF16 by hand (exact)
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k == "__metadata__": continue
        b, e = v["data_offsets"]
        data = raw[8 + n + b:8 + n + e]
        if v["dtype"] == "BF16":
            out[k] = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            assert v["dtype"] == "F32", v["dtype"]
            out[k] = np.frombuffer(data, np.float32)
        out[k] = (v["dtype"], out[k])
    return out
a, b = tensors(f"{out}/model.safetensors"), tensors(f"{src}/model.safetensors")
assert sorted(a) == sorted(b)
for k in a:
    assert a[k][0] == "F32" and np.array_equal(a[k][1], b[k][1]), k
print(f"{len(names)} side files carried byte-identical, nothing else; F32 tensors equal to the "
      f"imported ones; {len(read)} config.json fields read back exactly "
      f"(rope_theta {cfg['rope_theta']!r}, rms_norm_eps {cfg['rms_norm_eps']!r})")
PY

echo "== 3. logits against transformers"
if python3 -c "import torch, transformers" 2>/dev/null; then
  python3 - "$dir" "$build/tests/tool_logits" <<'PY'
import subprocess, sys
import numpy as np, torch
from transformers import AutoModelForCausalLM
d, tool = sys.argv[1], sys.argv[2]
T = 64
tokens = np.random.default_rng(0).integers(0, 512, T).astype(np.int32)
tokens.tofile(f"{d}/tokens.bin")
subprocess.run([tool, f"{d}/hf_llama", str(T), f"{d}/tokens.bin", f"{d}/ours.bin"], check=True)
ours = np.fromfile(f"{d}/ours.bin", dtype=np.float32).reshape(T, 512)
model = AutoModelForCausalLM.from_pretrained(f"{d}/hf_llama", torch_dtype=torch.float32)
with torch.no_grad():
    ref = model(torch.tensor(tokens[None], dtype=torch.long)).logits[0].float().numpy()
diff = np.abs(ours - ref).max()
rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
print(f"logits: max abs difference {diff:.3g}, relative L2 {rel:.3g} (both fp32 on the exported bf16 weights)")
assert rel < 1e-4, "our forward and transformers disagree"
PY
else
  echo "torch/transformers not importable here: logits check not run (it runs on the GPU machine)"
fi
echo "test_export: passed"
