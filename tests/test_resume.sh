#!/usr/bin/env bash
# Checkpoints and resume, end to end through the trainer:
#   1. N steps in one go == N/2 steps, exit (train.exit_after_steps), resume, N/2 steps: the same
#      losses (every digit) and byte-identical weights and optimizer state (CPU).
#   2. Saved on 4 ranks (dp 2 x cp 2), resumed on 2 (dp 2): losses and weights within fp32
#      reassociation of the single-rank run.
#   3. SIGKILL at random moments of a run that checkpoints every step: `latest` always names a
#      complete checkpoint, and training resumes from it.
#   4. SIGTERM or SIGUSR1 makes the trainer finish its step, checkpoint and exit 0.
#   5. A checkpoint whose model shape disagrees with the config is refused naming the tensor.
#   6. A resume names the config keys that differ from the checkpoint's (none for part 1), and
#      warns when one of them changes the data order, or when the training shards now hold other
#      data under the same names (the checkpoint's fingerprint of them).
# Usage: test_resume.sh BUILD_DIR TRAINER
set -euo pipefail
bin=$2
dir=$(mktemp -d)
trap '[ -z "${KEEP:-}" ] && rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=1
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpirun_=(mpiexec --oversubscribe)
common=(configs/quickstart.json --set data.seq_len=256 --set train.max_steps=8
        --set train.warmup_steps=2 --set train.eval_every=0 --set log.every=100
        --set model.num_hidden_layers=2 --set train.micro_batch_size=2 --set train.global_batch_size=4)

compare() { # metrics_a metrics_b rtol label   (rtol 0: exact)
  python3 - "$@" <<'PY'
import json, sys
a, b, rtol, label = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def losses(p):
    d = {}
    for line in open(p):
        r = json.loads(line)
        if "loss" in r: d[r["step"]] = r["loss"]  # a resumed run appends; the last line of a step wins
    return d
la, lb = losses(a), losses(b)
assert sorted(la) == sorted(lb) == list(range(1, 9)), f"{label}: steps {sorted(la)} vs {sorted(lb)}"
worst = max(abs(la[s] - lb[s]) / abs(la[s]) for s in la)
print(f"{label}: max relative loss difference over 8 steps {worst:.3g}")
if worst > rtol: sys.exit(f"FAIL {label}: losses differ by {worst:.3g} > {rtol}")
PY
}

echo "== 1. uninterrupted vs split run (bitwise)"
"$bin" "${common[@]}" --set run_dir="$dir/full" --set resume=none >/dev/null
"$bin" "${common[@]}" --set run_dir="$dir/split" --set resume=none --set train.exit_after_steps=4 >/dev/null
out=$("$bin" "${common[@]}" --set run_dir="$dir/split" 2>&1)
grep "resumed from" <<<"$out"
! grep -E "config key|warning" <<<"$out" || { echo "FAIL: the same config reported as changed"; exit 1; }
compare "$dir/full/metrics.jsonl" "$dir/split/metrics.jsonl" 0 "split run"
for f in model.safetensors optim_00000.safetensors; do
  cmp "$dir/full/ckpt/step_00000008/$f" "$dir/split/ckpt/step_00000008/$f"
done
echo "weights and optimizer state byte-identical"

echo "== 2. saved on 4 ranks, resumed on 2"
"${mpirun_[@]}" -n 4 "$bin" "${common[@]}" --set parallel.cp=2 --set run_dir="$dir/ranks" \
  --set resume=none --set train.exit_after_steps=4 >/dev/null
"${mpirun_[@]}" -n 2 "$bin" "${common[@]}" --set run_dir="$dir/ranks" | grep "resumed from"
compare "$dir/full/metrics.jsonl" "$dir/ranks/metrics.jsonl" 2e-6 "4 -> 2 ranks"
python3 - "$dir/full/ckpt/step_00000008/model.safetensors" "$dir/ranks/ckpt/step_00000008/model.safetensors" <<'PY'
import json, struct, sys
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); base = 8 + n; out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        b, e = v["data_offsets"]
        out[k] = struct.unpack(f"<{(e - b) // 4}f", raw[base + b:base + e])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
# Per tensor, RMS of the difference over RMS of the weights: fp32 reassociation of the gradient
# sums is ~1e-7 relative; AdamW's m / sqrt(v) can turn the noise of a near-zero gradient into a
# visible step for a handful of elements, which the RMS averages out but a wrong resume does not.
worst = 0.0
for k in a:
    d = sum((x - y) ** 2 for x, y in zip(a[k], b[k])) / len(a[k])
    w = sum(x * x for x in a[k]) / len(a[k]) or 1.0
    worst = max(worst, (d / w) ** 0.5)
print(f"4 -> 2 ranks: max per-tensor RMS weight difference / RMS weight {worst:.3g}")
if worst > 1e-4: sys.exit("FAIL: weights differ beyond fp32 reassociation")
PY

echo "== 3. SIGKILL while checkpointing"
kill_dir="$dir/kill"
for i in 1 2 3 4 5 6; do
  "$bin" "${common[@]}" --set run_dir="$kill_dir" --set train.max_steps=100000 \
    --set checkpoint.every=1 --set checkpoint.keep_last=2 >/dev/null 2>&1 &
  pid=$!
  # the first checkpoint exists before the kill (a sanitizer build starts slowly), then a random moment
  for _ in $(seq 600); do [ -f "$kill_dir/ckpt/latest" ] && break; sleep 0.1; done
  sleep "$(python3 -c "import random; print(round(random.uniform(0.2, 1.5), 2))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  latest=$(cat "$kill_dir/ckpt/latest")
  [ -f "$kill_dir/ckpt/$latest/state.json" ] || { echo "FAIL: latest -> $latest is incomplete"; exit 1; }
  partial=$(cd "$kill_dir/ckpt" && ls -d *.tmp 2>/dev/null || true)
  out=$("$bin" "${common[@]}" --set run_dir="$kill_dir" --set train.max_steps=100000 \
    --set train.exit_after_steps=1)
  grep -q "resumed from" <<<"$out" || { echo "FAIL: no resume after kill $i"; exit 1; }
  echo "kill $i: latest = $latest, resumed${partial:+ (the kill left $partial half-written: ignored)}"
done

echo "== 4. SIGTERM and SIGUSR1 finish the step, checkpoint and exit 0"
for sig in TERM USR1; do
  sdir="$dir/sig$sig"
  "$bin" "${common[@]}" --set run_dir="$sdir" --set train.max_steps=100000 >"$sdir.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do [ -s "$sdir/metrics.jsonl" ] && break; sleep 0.1; done # training began
  kill -s "$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  grep -q "stop signal received" "$sdir.log" && [ $rc -eq 0 ] && [ -f "$sdir/ckpt/latest" ] ||
    { echo "FAIL: SIG$sig: exit $rc"; cat "$sdir.log"; exit 1; }
  echo "SIG$sig: exit 0, $(grep "stop signal" "$sdir.log"), latest = $(cat "$sdir/ckpt/latest")"
done

echo "== 5. shape mismatch refused"
set +e
msg=$("$bin" "${common[@]}" --set run_dir="$dir/full" --set train.max_steps=9 \
      --set model.intermediate_size=200 2>&1 >/dev/null)
rc=$?
set -e
echo "$msg"
[ $rc -eq 2 ] && echo "$msg" | grep -q 'gate_proj.weight' || { echo "FAIL: expected exit 2 naming the tensor"; exit 1; }
echo "== 6. a resume names the config keys that differ from the checkpoint's"
"$bin" "${common[@]}" --set run_dir="$dir/keys" --set resume=none --set train.exit_after_steps=2 >/dev/null
out=$("$bin" "${common[@]}" --set run_dir="$dir/keys" --set train.exit_after_steps=1 \
      --set train.lr=1e-3 2>&1)
grep -q "resume: 1 config key(s) differ from .*: train.lr 0.003 -> 0.001$" <<<"$out" &&
  ! grep -q "warning" <<<"$out" || { echo "FAIL: a new learning rate"; echo "$out"; exit 1; }
grep "config key" <<<"$out"
out=$("$bin" "${common[@]}" --set run_dir="$dir/keys" --set train.exit_after_steps=1 \
      --set train.lr=1e-3 --set seed=99 2>&1)
grep -q "resume: 1 config key(s) differ from .*: seed 1234 -> 99$" <<<"$out" &&
  grep -q "warning: seed, .* not the ones the checkpoint's run would have read" <<<"$out" ||
  { echo "FAIL: a new seed"; echo "$out"; exit 1; }
grep "warning" <<<"$out"
# shards rewritten under the same name between two invocations: the checkpoint's fingerprint tells
write_shard() { # PATH SEED: 40000 random tokens below 512
  python3 - "$1" "$2" <<'PY'
import random, struct, sys
random.seed(int(sys.argv[2])); n = 40000
with open(sys.argv[1], "wb") as f:
    f.write(b"INFLTOK1" + struct.pack("<IIQQ", 1, 2, n, 512))
    f.write(struct.pack(f"<{n}H", *[random.randrange(512) for _ in range(n)]))
PY
}
write_shard "$dir/a.tok" 1
shards=(--set data.source=shards --set "data.train_files=[\"$dir/a.tok\"]" --set run_dir="$dir/shards"
        --set train.exit_after_steps=1)
"$bin" "${common[@]}" "${shards[@]}" --set resume=none >/dev/null
out=$("$bin" "${common[@]}" "${shards[@]}" 2>&1)
! grep -q "warning" <<<"$out" || { echo "FAIL: unchanged shards reported"; echo "$out"; exit 1; }
write_shard "$dir/a.tok" 2
out=$("$bin" "${common[@]}" "${shards[@]}" 2>&1)
grep -q "warning: data.train_files hold other data than when .* (156 windows then, 156 now; fingerprint" <<<"$out" ||
  { echo "FAIL: rewritten shards not reported"; echo "$out"; exit 1; }
grep "warning" <<<"$out"
echo "test_resume: passed"
