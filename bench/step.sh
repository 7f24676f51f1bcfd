#!/usr/bin/env bash
# One training step of ours against the PyTorch peer (bench/step_peer.py: transformers
# LlamaForCausalLM, bf16, SDPA, gradient checkpointing, fused AdamW) on the same model shape, the
# same sequence length and the same GPU, in one session; prints one table (tokens/s, MFU, peak
# memory, ratio) and, for each of our runs, the profiled step's split by region.
#
#   bench/step.sh BUILD CASE...      CASE = CONFIG:T[:SETTINGS]   e.g.
#   bench/step.sh build-gpu bench/step_8b_class.json:4096 bench/step_8b_class.json:65536 \
#                 configs/minicpm4_0.5b_64k.json:65536:train.recompute=full
#
# SETTINGS are extra `--set` overrides for our side, comma-separated. Both sides train one sequence
# per step (batch 1). Our side runs 4 steps (the
# first pays for warm-up; steps 2-3 are timed, step 4 is the profiled one) with no checkpoint;
# attention is dense below the config's attention.dense_len and InfLLM-V2 sparse above it. The
# peer always runs dense SDPA attention (it has no sparse mode), as a user would.
# MFU counts model FLOPs only, honestly: 6 x (matrix parameters, the lm head included) per token,
# plus attention 4 x D x Hq x (keys each query attends: causal, and in sparse mode only its
# selected blocks) x 3.5 (forward and backward); recomputation and selection are not counted.
# The GEMM ceiling (bf16, one H200) is 753 TFLOP/s (measured; docs/PERF.md).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench/step.sh BUILD CONFIG:T[:SETTINGS]...}
shift
work=$(mktemp -d /tmp/bench-step.XXXXXX)
trap 'rm -rf "$work"' EXIT
results=$work/results.jsonl
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader || true

for case in "$@"; do
  IFS=: read -r config T settings <<<"$case"
  sets=()
  if [ -n "${settings:-}" ]; then
    IFS=, read -ra kv <<<"$settings"
    for s in "${kv[@]}"; do sets+=(--set "$s"); done
  fi
  run=$work/run
  rm -rf "$run"
  echo "== ours: $config T=$T ${settings:-}" >&2
  if "$build/infllm-train" "$config" --set data.seq_len="$T" --set run_dir="$run" \
      --set resume=none --set train.max_steps=4 --set train.warmup_steps=1 \
      --set train.eval_every=0 --set checkpoint.at_end=false --set log.profile_step=4 \
      --set log.every=1 --set train.micro_batch_size=1 --set train.global_batch_size=1 \
      "${sets[@]}" >"$work/ours.log" 2>&1; then
    grep -E "^profile|^done" "$work/ours.log" >&2
    python3 - "$run/metrics.jsonl" "$work/ours.log" "$config" "$T" "${settings:-}" >>"$results" <<'PY'
import json, re, sys
metrics, log, config, T, settings = sys.argv[1:6]
rows = [json.loads(l) for l in open(metrics)]
timed = [r["ms"] for r in rows if r.get("step") in (2, 3) and "ms" in r]
prof = next(r["profile_ms"] for r in rows if "profile_ms" in r)
text = open(log).read()
mem = re.search(r"device memory in use ([0-9.]+) GiB", text)
sparse = "InfLLM-V2 sparse" in text
print(json.dumps({"side": "ours", "config": config, "T": int(T), "settings": settings,
                  "ms": sum(timed) / len(timed), "peak_gib": float(mem.group(1)) if mem else None,
                  "sparse": sparse, "profile_ms": prof}))
PY
  else
    echo "ours failed: $(grep -m1 -i error "$work/ours.log")" >&2
    echo "{\"side\": \"ours\", \"config\": \"$config\", \"T\": $T, \"settings\": \"${settings:-}\", \"error\": \"failed\"}" >>"$results"
  fi
done

# The peer, once per (config, T).
for config in $(printf '%s\n' "$@" | cut -d: -f1 | sort -u); do
  Ts=$(printf '%s\n' "$@" | awk -F: -v c="$config" '$1 == c {print $2}' | sort -un | tr '\n' ' ')
  echo "== peer: $config T=$Ts" >&2
  python3 bench/step_peer.py "$config" $Ts |
    python3 -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l); r["side"] = "peer"; r["config"] = sys.argv[1]; print(json.dumps(r))' \
      "$config" >>"$results" || echo "peer failed for $config" >&2
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
CEIL = 753e12

def flops_per_token(cfg_path, T, sparse):
    cfg = json.load(open(cfg_path))
    m, a = cfg["model"], cfg.get("attention", {})
    C, I, L, V = m["hidden_size"], m["intermediate_size"], m["num_hidden_layers"], m["vocab_size"]
    Hq, Hkv = m["num_attention_heads"], m["num_key_value_heads"]
    D = m.get("head_dim", C // Hq)
    per_layer = C * (Hq * D + 2 * Hkv * D) + Hq * D * C + 3 * C * I
    gemm = 6 * (L * per_layer + V * C)
    bs = a.get("block_size", 64)
    nsel = a.get("topk", 64) + a.get("window_size", 2048) // bs
    cap = nsel * bs if sparse else T
    keys = sum(min(i + 1, cap) for i in range(T)) / T  # mean keys per query (sparse: an upper bound)
    return gemm + 3.5 * 4 * D * Hq * keys * L

peer = {(r["config"], r["T"]): r for r in rows if r["side"] == "peer"}
print("| model config | T | side | attention | ms / step | tokens/s | MFU | peak GiB | vs peer |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["side"] != "ours":
        continue
    p = peer.get((r["config"], r["T"]))
    name = r["config"].split("/")[-1].replace(".json", "")
    for side, x, sparse in (("ours" + (f" ({r['settings']})" if r["settings"] else ""), r, r.get("sparse")),
                            ("peer", p, False)):
        if x is None:
            continue
        if "error" in x:
            print(f"| {name} | {r['T']} | {side} | | {x['error']} | | | | |")
            continue
        tps = r["T"] / x["ms"] * 1e3
        mfu = tps * flops_per_token(r["config"], r["T"], bool(sparse)) / CEIL
        ratio = ""
        if x is r and p and "error" not in p:
            ratio = f"{p['ms'] / r['ms']:.2f}x"
        peak = f"{x['peak_gib']:.1f}" if x.get("peak_gib") else ""
        print(f"| {name} | {r['T']} | {side} | {'sparse' if sparse else 'dense'} | {x['ms']:.0f} | "
              f"{tps / 1e3:.1f}k | {100 * mfu:.1f}% | {peak} | {ratio} |")
print()
print("Our profiled step (4), by region, ms (device synchronised per region):")
for r in rows:
    if r["side"] == "ours" and "profile_ms" in r:
        prof = ", ".join(f"{k} {v:.0f}" for k, v in r["profile_ms"].items())
        print(f"- {r['config'].split('/')[-1]} T={r['T']} {r['settings']}: {prof}")
PY
