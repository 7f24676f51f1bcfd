#!/usr/bin/env bash
# A real pretrained model, short to long, on one GPU: SmolLM2-135M-Instruct (trained at 8k tokens)
# evaluated at 8k and 32k (and 64k) before adaptation, fine-tuned at 32k on real text with
# InfLLM-V2 sparse attention (configs/smollm2_32k.json: YaRN x4 over its 8k, documents packed with
# document masking), and densely for comparison, then evaluated again: perplexity by position
# bucket on held-out text, and needle retrieval (single, multi-key, multi-value at depths
# 10/50/90%), each in dense and in InfLLM-V2 sparse attention.
#   launch/smollm2_recipe.sh ROOT [STEPS]        STEPS: fine-tuning steps of 32k tokens (150)
# ROOT holds what these commands make (docs/RESULTS.md, "SmolLM2-135M" for the whole list):
#   ROOT/hf/                    python3 tests/gguf_to_hf.py SmolLM2-135M-Instruct.Q4_1.gguf ROOT/hf
#   ROOT/shards/{train,val}_000000.tok   data/text_corpus.py + data/prepare.py --append-eos
#   ROOT/needles_L/needles.json (+ shards)  bench/needles.py --seq-len L, for L = 8192, 32768
#                                (and 65536: evaluated when present and DEADLINE allows)
# Environment: BUILD (folder of a CUDA build's infllm-train; default build), DEADLINE (seconds:
# after this much time the optional evaluations are skipped and said so; default: none),
# DENSE_FT (0 skips the dense fine-tune; default 1), FT_SECONDS (time-box the sparse fine-tune:
# STEPS becomes an upper bound, the dense one then runs the steps the sparse one reached), SHORT / LONG / XLONG (the lengths: 8192,
# 32768, 65536), EVAL_TOKENS (held-out tokens per perplexity evaluation: 524288), SETS (more
# key=value overrides for every command, space-separated; a smoke test of this script on the CPU
# with a tiny model: SETS="device=cpu ..." and short lengths). Writes ROOT/evals.jsonl,
# ROOT/results.md (the tables, printed last) and the runs' logs under ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: launch/smollm2_recipe.sh ROOT [STEPS]}
steps=${2:-150}
bin=${BUILD:-build}/infllm-train
deadline=${DEADLINE:-0}
[ -x "$bin" ] || { echo "smollm2_recipe: no trainer at $bin (set BUILD)" >&2; exit 2; }
for f in "$root/hf/config.json" "$root/shards/train_000000.tok" "$root/shards/val_000000.tok"; do
  [ -f "$f" ] || { echo "smollm2_recipe: missing $f" >&2; exit 2; }
done
start=$SECONDS
evals=$root/evals.jsonl
: >"$evals"
paths=(--set model.init_from="$root/hf" --set "data.train_files=[\"$root/shards/train_000000.tok\"]")
val=(--set "data.val_files=[\"$root/shards/val_000000.tok\"]")
declare -A modes=([dense]=1000000000 [sparse]=-1)
short=${SHORT:-8192} long=${LONG:-32768} xlong=${XLONG:-65536}
for kv in ${SETS:-}; do paths+=(--set "$kv"); done
batches() { local n=$((${EVAL_TOKENS:-524288} / $1)); echo $((n < 4 ? 4 : n)); } # held-out windows

time_left() { [ "$deadline" -eq 0 ] || [ $((SECONDS - start + $1)) -lt "$deadline" ]; }

# eval_one NAME MODEL CONFIG LEN MODE KIND: one eval_json line, labelled, into evals.jsonl
eval_one() {
  local name=$1 model=$2 cfg=$3 len=$4 mode=$5 kind=$6 extra=()
  if [ "$kind" = needles ]; then
    local nj=$root/needles_$len/needles.json
    [ -f "$nj" ] || return 0
    extra=(--set "train.eval_buckets=[]"
           --set "data.val_files=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["data"]["val_files"]))' "$nj")"
           --set "data.val_answer_files=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["data"]["val_answer_files"]))' "$nj")"
           --set "train.eval_batches=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train"]["eval_batches"])' "$nj")")
  else
    extra=("${val[@]}" --set "train.eval_batches=$(batches "$len")")
  fi
  local log=$root/eval_${name// /_}_${len}_${mode}_$kind.log
  if ! "$bin" eval "$model" "$cfg" "${paths[@]}" --set data.seq_len="$len" \
      --set attention.dense_len="${modes[$mode]}" "${extra[@]}" >"$log" 2>&1; then
    echo "smollm2_recipe: eval $name $len $mode $kind failed (log $log):"; tail -3 "$log"; return 0
  fi
  grep "^eval: .*attention: loss" "$log" | sed 's/^eval: [^,]*, //'
  sed -n 's/^eval_json: //p' "$log" |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r.update(name=sys.argv[1], mode=sys.argv[2], kind=sys.argv[3]); print(json.dumps(r))' \
      "$name" "$mode" "$kind" >>"$evals"
}

# eval_at NAME MODEL CONFIG LEN: perplexity and needles, dense and sparse
eval_at() {
  for kind in ppl needles; do
    for mode in dense sparse; do
      echo "== $1 at $4 tokens, $mode, $kind"
      eval_one "$1" "$2" "$3" "$4" "$mode" "$kind"
    done
  done
}

# finetune NAME DENSE_LEN [SECONDS]: STEPS steps at the long length; with SECONDS, stopped by
# SIGTERM after that long (the trainer finishes its step, checkpoints and exits 0) at a constant
# learning rate after warmup, so a run cut short has the schedule of a complete one.
finetune() {
  local timed=() sched=() note=""
  if [ "${3:-0}" -gt 0 ]; then
    timed=(timeout --preserve-status -s TERM "$3")
    sched=(--set train.schedule=constant)
    note=", stopped after $3 s at the latest, constant learning rate"
  fi
  echo "== fine-tune ($1 attention): configs/smollm2_32k.json, $steps steps of $long tokens$note"
  "${timed[@]}" "$bin" configs/smollm2_32k.json "${paths[@]}" "${val[@]}" --set run_dir="$root/$1" \
    --set data.seq_len="$long" --set train.max_steps="$steps" --set attention.dense_len="$2" \
    "${sched[@]}" >"$root/$1.log" 2>&1 ||
    { echo "smollm2_recipe: fine-tune $1 failed:"; tail -5 "$root/$1.log"; return 1; }
  grep -E "^step|^done|^stop|InfLLM-V2 sparse attention \(" "$root/$1.log" | tail -4
}

# The steps a run's latest checkpoint holds.
steps_of() { python3 -c 'import json,sys; d=sys.argv[1]; print(json.load(open(d + "/" + open(d + "/latest").read().strip() + "/state.json"))["step"])' "$1/ckpt"; }

eval_at "before" "$root/hf" configs/smollm2_eval.json "$long"
for kind in ppl needles; do # its own length: dense (sparse below, when there is time)
  echo "== before at $short tokens, dense, $kind"
  eval_one "before" "$root/hf" configs/smollm2_eval.json "$short" dense "$kind"
done
finetune sparse "$short" "${FT_SECONDS:-0}" || true
if [ "${FT_SECONDS:-0}" -gt 0 ]; then steps=$(steps_of "$root/sparse"); echo "sparse: $steps steps"; fi
eval_at "sparse-FT" "$root/sparse/ckpt/latest" configs/smollm2_32k.json "$long"
ft=${FT_SECONDS:-0}
if [ "${DENSE_FT:-1}" != 0 ] && time_left $((ft > 0 ? 2 * ft + 40 : 150)); then
  finetune dense 1000000000 $((2 * ft)) || true
  eval_at "dense-FT" "$root/dense/ckpt/latest" configs/smollm2_32k.json "$long"
else
  echo "smollm2_recipe: dense fine-tune skipped (DENSE_FT=0 or past DEADLINE)"
fi
optional() { # what it costs (s), then eval_one's arguments
  local cost=$1; shift
  if time_left "$cost"; then
    echo "== $1 at $4 tokens, $5, $6"
    eval_one "$@"
  else
    echo "smollm2_recipe: skipped (time): $1 at $4 tokens, $5, $6"
  fi
}
optional 10 "sparse-FT" "$root/sparse/ckpt/latest" configs/smollm2_32k.json "$short" dense needles
optional 10 "sparse-FT" "$root/sparse/ckpt/latest" configs/smollm2_32k.json "$short" dense ppl
for kind in ppl needles; do
  optional 10 "before+YaRN" "$root/hf" configs/smollm2_32k.json "$long" dense "$kind"
  optional 10 "before" "$root/hf" configs/smollm2_eval.json "$short" sparse "$kind"
done
if [ -f "$root/needles_$xlong/needles.json" ]; then
  for mode in sparse dense; do
    for kind in ppl needles; do
      optional 20 "before" "$root/hf" configs/smollm2_eval.json "$xlong" "$mode" "$kind"
      optional 20 "sparse-FT" "$root/sparse/ckpt/latest" configs/smollm2_32k.json "$xlong" "$mode" "$kind"
    done
  done
fi
echo "== done in $((SECONDS - start)) s"
python3 - "$evals" "$root/results.md" <<'PY'
import json, sys
order = {"before": 0, "before+YaRN": 1, "sparse-FT": 2, "dense-FT": 3}
rows = sorted((json.loads(l) for l in open(sys.argv[1])),
              key=lambda r: (r["seq_len"], order.get(r["name"], 9), r["mode"]))
out = []
ppl = [r for r in rows if r["kind"] == "ppl"]
if ppl:
    edges = [(b["from"], b["to"]) for b in ppl[0]["buckets"]]
    name = lambda a, b: f"{a // 1024}-{b // 1024}k"
    out.append("| model | attention | length | all | " + " | ".join(name(a, b) for a, b in edges) + " |")
    out.append("|---|---|---|---|" + "---|" * len(edges))
    for r in ppl:
        cells = [f"{2.718281828459045 ** b['loss']:.2f}" if b["targets"] else "-" for b in r["buckets"]]
        out.append(f"| {r['name']} | {r['mode']} | {r['seq_len']} | {2.718281828459045 ** r['loss']:.2f} | "
                   + " | ".join(cells) + " |")
ndl = [r for r in rows if r["kind"] == "needles"]
if ndl:
    import re
    cols = [re.sub(r"^.*needle_(\w+?)_\d+_d(\d+)\.tok$", r"\1 \2%", f["file"]) for f in ndl[0]["files"]]
    out.append("")
    out.append("| model | attention | length | all | " + " | ".join(cols) + " |")
    out.append("|---|---|---|---|" + "---|" * len(cols))
    for r in ndl:
        s = sum(f["spans"] for f in r["files"]); w = sum(f["whole"] for f in r["files"])
        out.append(f"| {r['name']} | {r['mode']} | {r['seq_len']} | {100 * w / max(s, 1):.0f}% | "
                   + " | ".join(f"{f['whole']}/{f['spans']}" for f in r["files"]) + " |")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
