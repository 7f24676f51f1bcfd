#!/usr/bin/env bash
# Short-to-long adaptation, end to end: train densely on short sequences, fine-tune at a long length
# in InfLLM-V2 sparse mode starting from the short model (exported to a Hugging Face folder and
# imported, the path a pretrained model takes), and measure retrieval accuracy at the long length
# in sparse and in dense mode, for the short model (no long training) and the fine-tuned one.
#   launch/recipe.sh cpu [ROOT]    configs/recipe_{short,long}_cpu.json: 256 -> 2048 tokens, ~30 min
#   launch/recipe.sh gpu [ROOT]    configs/recipe_{short,long}_gpu.json: 4096 -> 32768 tokens, 24M
#                                  parameters, one GPU (BUILD=build-gpu for a CUDA build elsewhere)
# Writes ROOT/results.md (the table), ROOT/loss.png (loss curves, when matplotlib imports) and the
# runs under ROOT (default runs/recipe_SCALE).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:?usage: launch/recipe.sh cpu|gpu [ROOT]}
root=${2:-runs/recipe_$scale}
short=configs/recipe_short_$scale.json
long=configs/recipe_long_$scale.json
bin=${BUILD:-build}/infllm-train
[ -f "$short" ] && [ -f "$long" ] || { echo "recipe: no $short / $long" >&2; exit 2; }
[ -x "$bin" ] || { echo "recipe: no trainer at $bin (build it, or set BUILD)" >&2; exit 2; }
mkdir -p "$root"
dense=(--set attention.dense_len=1000000000)
sparse=(--set attention.dense_len=-1)
eval_at_long() { # MODEL MODE -> the eval_json line
  local mode=("${@:3}")
  "$bin" eval "$1" "$long" "${mode[@]}" | sed -n 's/^eval_json: //p' | sed "s/^{/{\"name\": \"$2\", /"
}

echo "== 1. short, dense: $short"
"$bin" "$short" --set run_dir="$root/short" --set resume=none | grep -E "^step|^eval|^done"
"$bin" export "$root/short/ckpt/latest" "$root/short_hf" >/dev/null
echo "== 2. the short model at the long length"
{
  eval_at_long "$root/short/ckpt/latest" "short model, sparse" "${sparse[@]}"
  eval_at_long "$root/short/ckpt/latest" "short model, dense" "${dense[@]}"
} >"$root/evals.jsonl"
echo "== 3. long, sparse, from the short model: $long"
"$bin" "$long" --set run_dir="$root/long" --set resume=none --set model.init_from="$root/short_hf" |
  grep -E "^step|^eval|^done|imported"
echo "== 4. the fine-tuned model at the long length"
{
  eval_at_long "$root/long/ckpt/latest" "fine-tuned, sparse" "${sparse[@]}"
  eval_at_long "$root/long/ckpt/latest" "fine-tuned, dense" "${dense[@]}"
} >>"$root/evals.jsonl"
python3 - "$root" "$short" "$long" <<'PY'
import json, sys
root, short, long_ = sys.argv[1:4]
rows = [json.loads(l) for l in open(f"{root}/evals.jsonl")]
acc = {r["name"]: r for r in rows}
lines = [f"| model | attention at {rows[0]['seq_len']} tokens | loss | retrieval accuracy |", "|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['name'].split(',')[0]} | {'sparse' if r['sparse'] else 'dense'} | {r['loss']:.4f} | "
                 f"{100 * r['accuracy']:.1f}% ({r['correct']} of {r['answers']}) |")
s, d = acc["fine-tuned, sparse"]["accuracy"], acc["fine-tuned, dense"]["accuracy"]
ratio = s / d if d > 0 else float("nan")
lines.append("")
lines.append(f"Sparse keeps {100 * ratio:.1f}% of dense accuracy after fine-tuning ({short} -> {long_}).")
open(f"{root}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
python3 launch/plot_metrics.py "$root/loss.png" "short (dense)=$root/short/metrics.jsonl" \
  "long (sparse)=$root/long/metrics.jsonl" || echo "recipe: no plot (matplotlib missing?)"
