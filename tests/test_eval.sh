#!/usr/bin/env bash
# infllm-train eval: validation loss and retrieval accuracy of a checkpoint, of its `latest`
# pointer and of an exported Hugging Face folder, in dense mode and in InfLLM-V2 sparse mode at a
# longer length; the numbers are finite, the accuracy is a fraction of the answers counted, the
# export's loss equals the checkpoint's within bf16 rounding of the weights, and a folder that is
# neither is refused with exit 2.
# Usage: test_eval.sh BUILD_DIR TRAINER
set -euo pipefail
bin=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=2
"$bin" configs/quickstart.json --set run_dir="$dir/run" --set resume=none --set train.max_steps=4 \
  --set train.warmup_steps=1 --set train.eval_every=0 >/dev/null
"$bin" export "$dir/run/ckpt/latest" "$dir/hf" >/dev/null
ev() { "$bin" eval "$@" --set train.eval_batches=4 | sed -n 's/^eval_json: //p'; }
dense=$(ev "$dir/run/ckpt/latest" configs/quickstart.json)
sparse=$(ev "$dir/run/ckpt/latest" configs/quickstart.json --set data.seq_len=1024 \
  --set attention.dense_len=-1 --set attention.window_size=128 --set attention.topk=4)
hf=$(ev "$dir/hf" configs/quickstart.json)
python3 - "$dense" "$sparse" "$hf" <<'PY'
import json, math, sys
d, s, h = (json.loads(x) for x in sys.argv[1:4])
for name, r in (("dense", d), ("sparse 1024", s), ("hf export", h)):
    assert math.isfinite(r["loss"]) and 0 < r["loss"] < 10, (name, r)
    assert r["answers"] > 0 and 0 <= r["correct"] <= r["answers"], (name, r)
    assert abs(r["accuracy"] - r["correct"] / r["answers"]) < 1e-9, (name, r)
    print(f"{name}: loss {r['loss']:.4f}, accuracy {r['correct']}/{r['answers']}, sparse {r['sparse']}")
assert not d["sparse"] and s["sparse"] and s["seq_len"] == 1024
assert abs(h["loss"] - d["loss"]) < 2e-2 * d["loss"], "export changed the model beyond bf16 rounding"
PY
set +e
"$bin" eval "$dir" configs/quickstart.json >/dev/null 2>"$dir/err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "neither a checkpoint" "$dir/err" || { echo "FAIL: bad MODEL: exit $rc"; cat "$dir/err"; exit 1; }
echo "test_eval: passed"
