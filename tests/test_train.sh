#!/usr/bin/env bash
# A short training run on the synthetic task lowers the loss clearly, in dense mode
# (configs/quickstart.json) and in InfLLM-V2 sparse mode (configs/sparse_cpu.json); --set
# overrides reach the run; metrics.jsonl holds one line per step with the required fields.
# Usage: test_train.sh BUILD_DIR TRAINER
set -euo pipefail
bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2

# Mean loss of the first and last K steps of a metrics file; fails unless last < ratio * first.
check_falls() { # metrics ratio label
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
path, ratio, label = sys.argv[1], float(sys.argv[2]), sys.argv[3]
rows = [json.loads(l) for l in open(path)]
steps = [r for r in rows if "loss" in r]
for r in steps:
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s"):
        assert key in r, f"{label}: metrics line without {key}: {r}"
k = 5
first = sum(r["loss"] for r in steps[:k]) / k
last = sum(r["loss"] for r in steps[-k:]) / k
print(f"{label}: {len(steps)} steps, mean loss of the first {k} {first:.4f}, of the last {k} {last:.4f}")
if not last < ratio * first:
    sys.exit(f"FAIL {label}: the loss did not fall below {ratio} x its start")
vals = [r for r in rows if "val_loss" in r]
if vals:
    print(f"{label}: validation loss {vals[0]['val_loss']:.4f} at step {vals[0]['step']} -> {vals[-1]['val_loss']:.4f} at step {vals[-1]['step']}")
PY
}

"$bin" configs/quickstart.json --set run_dir="$dir/dense" --set resume=none \
  --set train.max_steps=60 --set train.eval_every=30 --set log.every=10
check_falls "$dir/dense/metrics.jsonl" 0.75 dense

"$bin" configs/sparse_cpu.json --set run_dir="$dir/sparse" --set resume=none \
  --set train.max_steps=30 --set train.eval_every=0 --set log.every=10 \
  --set log.profile_step=2 | tee "$dir/sparse.log"
grep -q "InfLLM-V2 sparse" "$dir/sparse.log" || { echo "FAIL: sparse_cpu.json did not run in sparse mode"; exit 1; }
# log.profile_step: step 2's time split by region; every region of a sparse step took time and
# the regions add up to the step's measured time (the profile brackets the whole step).
python3 - "$dir/sparse/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
prof = [r for r in rows if "profile_ms" in r]
assert len(prof) == 1 and prof[0]["step"] == 2, f"FAIL: one profile record for step 2 expected: {prof}"
p = prof[0]["profile_ms"]
for region in ("gemm", "attention", "selection", "head", "optimizer", "other"):
    assert p[region] > 0, f"FAIL: profile region {region} has no time: {p}"
step_ms = next(r["ms"] for r in rows if r.get("step") == 2 and "ms" in r)
total = sum(p.values())
assert 0.9 * step_ms <= total <= 1.01 * step_ms + 1, f"FAIL: regions sum to {total} ms, step took {step_ms}"
print(f"profile of step 2: {total:.1f} ms in regions of a {step_ms:.1f} ms step: {p}")
PY
check_falls "$dir/sparse/metrics.jsonl" 0.85 sparse
# Retrieval, trained on the answers only (data.synthetic.answers_only): the accuracy of the queried
# values rises far above chance (1 / n_values = 6.25%) within 150 steps.
"$bin" configs/quickstart.json --set run_dir="$dir/answers" --set resume=none \
  --set data.seq_len=256 --set train.max_steps=150 --set train.warmup_steps=30 \
  --set 'data.synthetic={"n_pairs": 8, "n_queries": 32, "n_keys": 16, "n_values": 16, "answers_only": true}' \
  --set train.lr=1e-3 --set train.min_lr=1e-4 --set train.weight_decay=0 \
  --set train.micro_batch_size=16 --set train.global_batch_size=16 \
  --set train.eval_every=150 --set train.eval_batches=64 --set log.every=50 >/dev/null
python3 - "$dir/answers/metrics.jsonl" <<'PY'
import json, sys
evals = [r for r in map(json.loads, open(sys.argv[1])) if "val_accuracy" in r]
acc = evals[-1]["val_accuracy"]
print(f"answers only: retrieval accuracy {acc:.3f} after {evals[-1]['step']} steps (chance 0.0625)")
if acc < 0.3: sys.exit("FAIL: retrieval was not learned")
PY
echo "test_train: passed"
