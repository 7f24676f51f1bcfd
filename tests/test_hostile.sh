#!/usr/bin/env bash
# test_hostile.sh: the trainer, export and prepare.py against hostile input and faults. Every case
# runs one command under `timeout` and expects an exact exit code and a message; where nothing may
# be written or deleted, the folder's fingerprint (names, sizes, mtimes, checksums) must not move.
# Classes: configs (devices, FIFOs, folders, huge, malformed), token shards (bad, and changed while
# training), checkpoints and `latest` (missing, broken, outside, corrupt files, state.json fields,
# non-finite values, foreign and leftover folders), divergence, export destinations, metrics on a
# full disk, signals at startup / while training / while writing, prepare.py, several ranks; sizes
# that overflow or are absurd (--set, a JSON config, config.json), every config.json field, top-k
# budgets past the sequence (dense attention), config errors of several ranks printed once.
# Prints "hostile: N cases, N clean" and fails on any crash (a signal exit nobody sent), hang
# (timeout), unexpected exit code or message.
# Usage: test_hostile.sh BUILD_DIR TRAINER   (run from the project root, as CTest does)
set -uo pipefail
bin=$(realpath "$2")
dir=$(mktemp -d /tmp/infllm_hostile_XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; [ -z "${KEEP:-}" ] && rm -rf "$dir"' EXIT
# Open MPI's start-up dominates a case: a single rank without the helper daemon, and without the
# UCX transport (shared memory is enough here), starts in 0.1 s instead of 0.5 s.
export OMP_NUM_THREADS=1 OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cases=0 clean=0 crashes=0 hangs=0 wrong=0
tiny=(configs/quickstart.json --set data.seq_len=128 --set model.num_hidden_layers=1
      --set model.hidden_size=32 --set model.intermediate_size=64 --set model.num_attention_heads=2
      --set model.num_key_value_heads=1 --set train.micro_batch_size=1 --set train.global_batch_size=1
      --set train.eval_every=0 --set train.warmup_steps=1 --set log.every=1000)
T=("$bin" "${tiny[@]}") # the trainer on a 26k-parameter model: about 1 ms a step

# ------------------------------------------------------------------------------------------------
# The case runner. case_ NAME RC PATTERN CMD...: runs CMD (stdin /dev/null, 30 s limit); passes when
# it exits RC, PATTERN (extended regexes joined by " && ", each matching a line of its stdout or
# stderr) matches, an exit 2 printed exactly one
# "error:" line, and when SAME names a folder, that folder's fingerprint did not change. POST, when
# set, is a shell test run afterwards that must succeed.
fingerprint() {
  [ -e "$1" ] || { echo "absent"; return; }
  (cd "$1" && find . -printf '%p %y %s %T@\n' | sort && find . -type f -print0 | sort -z |
     xargs -0 -r cksum)
}
matches() { # "re1 && re2 ..." files...: every regex matches some line ("-": nothing to match)
  local rest=$1 one
  shift
  [ "$rest" = "-" ] && return 0
  while [ -n "$rest" ]; do
    one=${rest%% && *}
    [ "$one" = "$rest" ] && rest="" || rest=${rest#* && }
    grep -Eq -- "$one" "$@" || return 1
  done
}
judge() { # name want pattern rc out err   (want: a code, or codes joined by "/")
  local name=$1 want=$2 pat=$3 rc=$4 out=$5 err=$6 why=""
  case "/$want/" in */"$rc"/*) want=$rc ;; esac
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$want" != 137 ]; }; then
    hangs=$((hangs + 1)); why="hang (timeout)"
  elif [ "$rc" != "$want" ] && [ "$rc" -ge 128 ]; then
    crashes=$((crashes + 1)); why="crash: exit $rc (signal $((rc - 128)))"
  elif [ "$rc" != "$want" ]; then
    why="exit $rc, expected $want"
  elif ! matches "$pat" "$out" "$err"; then
    why="no match for /$pat/"
  elif [ "$want" = 2 ] && [ "$(grep -Ec '^(\[rank [0-9]+\] )?error: ' "$err")" != 1 ]; then
    why="$(grep -Ec '^(\[rank [0-9]+\] )?error: ' "$err") error lines, expected one"
  fi
  if [ -z "$why" ] && [ -n "${POST:-}" ] && ! eval "$POST"; then why="after: [$POST] failed"; fi
  if [ -z "$why" ] && [ -n "${SAME:-}" ] && [ "$(fingerprint "$SAME")" != "$(cat "$dir/fp.before")" ]; then
    why="$SAME changed"
  fi
  cases=$((cases + 1))
  local took=$(( $(date +%s%N) / 1000000 - t_case ))
  if [ -z "$why" ]; then
    clean=$((clean + 1))
    printf 'ok   %-44s exit %-3s %5d ms %s\n' "$name" "$rc" "$took" \
      "$( [ "$pat" = - ] || grep -Eh -m1 -- "${pat%% && *}" "$err" "$out" | cut -c1-150)"
  else
    wrong=$((wrong + 1))
    printf 'FAIL %-44s %s\n' "$name" "$why"
    tail -n 5 "$err" | sed 's/^/       | /'
  fi
}
case_() {
  local name=$1 want=$2 pat=$3 rc=0
  shift 3
  [ -n "${SAME:-}" ] && fingerprint "$SAME" >"$dir/fp.before"
  t_case=$(( $(date +%s%N) / 1000000 ))
  timeout -k 5 30 "$@" >"$dir/out" 2>"$dir/err" </dev/null || rc=$?
  judge "$name" "$want" "$pat" "$rc" "$dir/out" "$dir/err"
}
# Background runs (kill tests): bg_start CMD...; bg_wait_lines FILE N; bg_judge NAME RC PATTERN.
bg_start() {
  t_case=$(( $(date +%s%N) / 1000000 ))
  "$@" >"$dir/bg.out" 2>"$dir/bg.err" </dev/null &
  bgpid=$!
}
bg_wait_lines() { # the run has written N metrics lines (a step record each), or it ended
  for _ in $(seq 1200); do
    [ "$(cat "$1" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
    kill -0 "$bgpid" 2>/dev/null || return 0
    sleep 0.025
  done
}
bg_judge() {
  local rc=0 t=0
  while kill -0 "$bgpid" 2>/dev/null && [ $t -lt 300 ]; do sleep 0.1; t=$((t + 1)); done
  if kill -0 "$bgpid" 2>/dev/null; then
    kill -9 "$bgpid"
    { wait "$bgpid"; } 2>/dev/null
    rc=124
  else
    { wait "$bgpid"; } 2>/dev/null || rc=$?
  fi
  judge "$1" "$2" "$3" "$rc" "$dir/bg.out" "$dir/bg.err"
}

# ------------------------------------------------------------------------------------------------
# Helpers in Python: an independent xxHash64 (from its specification), state.json rewriting with a
# fresh checksum, byte flips, tensor edits, metadata edits, format checks.
cat >"$dir/tool.py" <<'PY'
import json, math, os, struct, sys
M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)
def rotl(x, r): return ((x << r) | (x >> (64 - r))) & M
def rnd(a, x): return rotl((a + x * P2) & M, 31) * P1 & M
def xxh64(b):
    n, i = len(b), 0
    if n >= 32:
        v = [(P1 + P2) & M, P2, 0, (-P1) & M]
        while i + 32 <= n:
            for k in range(4): v[k] = rnd(v[k], int.from_bytes(b[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4): h = ((h ^ rnd(0, v[k])) * P1 + P4) & M
    else:
        h = P5
    h = (h + n) & M
    while i + 8 <= n:
        h = (rotl(h ^ rnd(0, int.from_bytes(b[i:i + 8], "little")), 27) * P1 + P4) & M; i += 8
    if i + 4 <= n:
        h = (rotl(h ^ (int.from_bytes(b[i:i + 4], "little") * P1 & M), 23) * P2 + P3) & M; i += 4
    while i < n:
        h = rotl(h ^ (b[i] * P5 & M), 11) * P1 & M; i += 1
    h ^= h >> 33; h = h * P2 & M; h ^= h >> 29; h = h * P3 & M; h ^= h >> 32
    return h
assert xxh64(b"") == 0xEF46DB3751D8E999 and xxh64(b"abc") == 0x44BC2CF5AD770999
def write_state(d, s):
    s["checksum"] = "0" * 16
    text = json.dumps(s, indent="\t").replace('": ', '":\t') + "\n"
    text = text.replace('"checksum":\t"' + "0" * 16, '"checksum":\t"' + "%016x" % xxh64(text.encode()))
    open(f"{d}/state.json", "w").write(text)
def tensors(path):
    raw = bytearray(open(path, "rb").read()); n = struct.unpack("<Q", raw[:8])[0]
    return raw, json.loads(raw[8:8 + n]), 8 + n
cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "verify":      # DIR: every recorded hash and the self checksum, recomputed here
    d = a[0]; text = open(f"{d}/state.json").read(); s = json.loads(text)
    zero = text.replace(s["checksum"], "0" * 16)
    assert int(s["checksum"], 16) == xxh64(zero.encode()), "state.json checksum"
    for name, f in s["files"].items():
        b = open(f"{d}/{name}", "rb").read()
        assert len(b) == f["bytes"] and xxh64(b) == int(f["xxh64"], 16), name
elif cmd == "restate":   # DIR key=json ...: edit fields, keep a valid checksum
    d = a[0]; s = json.load(open(f"{d}/state.json"))
    for kv in a[1:]:
        k, v = kv.split("=", 1)
        if v == "DELETE": s.pop(k, None)
        else: s[k] = json.loads(v)
    write_state(d, s)
elif cmd == "rehash":    # DIR FILE: record FILE's current size and hash
    d, name = a; s = json.load(open(f"{d}/state.json")); b = open(f"{d}/{name}", "rb").read()
    s["files"][name] = {"bytes": len(b), "xxh64": "%016x" % xxh64(b)}; write_state(d, s)
elif cmd == "flip":      # FILE OFFSET (negative: from the end)
    p, off = a[0], int(a[1]); b = bytearray(open(p, "rb").read()); b[off] ^= 0x40
    open(p, "wb").write(b)
elif cmd == "setf32":    # FILE TENSOR INDEX VALUE
    raw, h, base = tensors(a[0]); b0 = h[a[1]]["data_offsets"][0]
    struct.pack_into("<f", raw, base + b0 + 4 * int(a[2]), float(a[3])); open(a[0], "wb").write(raw)
elif cmd == "meta":      # FILE OLD NEW: replace header text of the same length
    raw = open(a[0], "rb").read(); assert len(a[1]) == len(a[2]) and raw.count(a[1].encode()) == 1
    open(a[0], "wb").write(raw.replace(a[1].encode(), a[2].encode()))
elif cmd == "dropfile":  # DIR NAME: forget a file in the table
    d, name = a; s = json.load(open(f"{d}/state.json")); del s["files"][name]; write_state(d, s)
elif cmd == "v1":        # DIR: the state.json of a version-1 checkpoint (no checksums)
    d = a[0]; s = json.load(open(f"{d}/state.json"))
    for k in ("run_id", "loss_ema", "loss_ema_steps", "files", "checksum", "global_batch_size"): s.pop(k)
    s["version"] = 1; open(f"{d}/state.json", "w").write(json.dumps(s))
elif cmd == "jsonl":     # FILE: every line is a JSON object
    for i, line in enumerate(open(a[0], "rb").read().split(b"\n")[:-1]):
        assert isinstance(json.loads(line), dict), i
    assert open(a[0], "rb").read().endswith(b"\n")
elif cmd == "finite":    # DIR...: every tensor of every safetensors file is finite
    for d in a:
        for name in os.listdir(d):
            if not name.endswith(".safetensors"): continue
            raw, h, base = tensors(f"{d}/{name}")
            for k, v in h.items():
                if k == "__metadata__": continue
                b0, b1 = v["data_offsets"]
                assert all(math.isfinite(x) for x in struct.unpack(f"<{(b1 - b0) // 4}f", raw[base + b0:base + b1])), k
elif cmd == "shard":     # PATH N VOCAB [BAD]: a token shard of N random tokens
    import random
    n, vocab = int(a[1]), int(a[2]); t = [random.randrange(vocab) for _ in range(n)]
    if len(a) > 3: t[n // 2] = int(a[3])
    w = 2 if vocab <= 65536 else 4
    open(a[0], "wb").write(b"INFLTOK1" + struct.pack("<IIQQ", 1, w, n, vocab) +
                           struct.pack(f"<{n}{'H' if w == 2 else 'I'}", *t))
PY
tool() { python3 "$dir/tool.py" "$@"; }
newest_ok() { [ -f "$1/ckpt/$(cat "$1/ckpt/latest")/state.json" ] && tool verify "$1/ckpt/$(cat "$1/ckpt/latest")"; }
has() { compgen -G "$1" >/dev/null; }

# ------------------------------------------------------------------------------------------------
echo "== configs: files that are not configs, and configs that are not sane"
mkfifo "$dir/fifo.json"
mkdir -p "$dir/folder.json"
head -c $((9 << 20)) /dev/zero | tr '\0' ' ' >"$dir/huge.json"
printf '{}' >>"$dir/huge.json"
: >"$dir/empty.json"
# 4096 random bytes from a fixed seed (fresh ones could begin with a valid JSON number, which
# gets another message)
python3 -c "import random, sys; random.seed(4096); sys.stdout.buffer.write(bytes(random.randrange(256) for _ in range(4096)))" >"$dir/garbage.json"
python3 -c "print('[' * 100000 + ']' * 100000)" >"$dir/deep.json"
printf '[1, 2]' >"$dir/array.json"
printf '{"seed": 1}\0{"x": 2}' >"$dir/nul.json"
printf '{"seed": 1e999}' >"$dir/inf.json"
printf '{"train": {"lr": 1}, "train": {"lr": 2}}' >"$dir/dup.json"
ln -s /dev/zero "$dir/link.json"
long=$(printf 'x%.0s' $(seq 5000))
case_ "config /dev/zero" 2 "/dev/zero: is a character device, expected a regular file" "$bin" /dev/zero --dry-run
case_ "config FIFO (no writer: must not block)" 2 "fifo.json: is a FIFO" "$bin" "$dir/fifo.json" --dry-run
case_ "config folder" 2 "folder.json: cannot read: Is a directory" "$bin" "$dir/folder.json" --dry-run
case_ "config 9 MiB" 2 "huge.json: .* more than the 8 MiB" "$bin" "$dir/huge.json" --dry-run
case_ "config empty" 2 "empty.json: line 1, column 1: malformed JSON" "$bin" "$dir/empty.json" --dry-run
case_ "config random bytes" 2 "garbage.json: line [0-9]+, column [0-9]+: malformed JSON" "$bin" "$dir/garbage.json" --dry-run
case_ "config nested 100000 deep" 2 "deep.json: line 1, column [0-9]+: malformed JSON" "$bin" "$dir/deep.json" --dry-run
case_ "config top-level array" 2 "array.json: expected a JSON object" "$bin" "$dir/array.json" --dry-run
case_ "config NUL byte inside" 2 "nul.json: .*(unexpected text|malformed)" "$bin" "$dir/nul.json" --dry-run
case_ "config number 1e999" 2 "inf.json: .*seed" "$bin" "$dir/inf.json" --dry-run
case_ "config duplicate section" 2 "dup.json: .*train" "$bin" "$dir/dup.json" --dry-run
case_ "config symlink to /dev/zero" 2 "link.json: is a character device" "$bin" "$dir/link.json" --dry-run
case_ "config /proc file (size 0, not JSON)" 2 "/proc/self/status: line 1, column 1: malformed" "$bin" /proc/self/status --dry-run
case_ "config path 5000 bytes" 2 "(File name too long|longer than)" "$bin" "$dir/$long.json" --dry-run
case_ "config missing" 2 "none.json: cannot read: No such file" "$bin" "$dir/none.json" --dry-run
case_ "--set guard.loss_spike -1" 2 "train.guard.loss_spike=-1: expected a number >= 0" "${T[@]}" --dry-run --set train.guard.loss_spike=-1
case_ "--set guard.grad_norm abc" 2 "train.guard.grad_norm=abc: expected a number >= 0" "${T[@]}" --dry-run --set train.guard.grad_norm=abc
case_ "--set without =" 2 "--set x: expected key.path=value" "${T[@]}" --dry-run --set x
case_ "--set =value" 2 "expected key.path=value" "${T[@]}" --dry-run --set =3
case_ "run_dir is /dev/null" 2 "/dev/null: is a character device, expected a folder" "${T[@]}" --set run_dir=/dev/null
case_ "run_dir below a file" 2 "cannot create folder: Not a directory" "${T[@]}" --set run_dir=/etc/hostname/run
case_ "resume names /dev/zero" 2 "/dev/zero/state.json: cannot read: Not a directory" "${T[@]}" --set run_dir="$dir/rz" --set resume=/dev/zero

# ------------------------------------------------------------------------------------------------
echo "== token shards: bad files, and files changed under a training run"
S=("${T[@]}" --set data.source=shards --set train.max_steps=2 --set checkpoint.at_end=false)
files() { printf -- '--set\ndata.train_files=["%s"]\n' "$1"; }
mkfifo "$dir/fifo.tok"
mkdir "$dir/folder.tok"
: >"$dir/empty.tok"
tool shard "$dir/good.tok" 200000 512
tool shard "$dir/short.tok" 100 512
tool shard "$dir/big_token.tok" 5000 512 511
tool shard "$dir/vocab.tok" 5000 70000 60000
cp "$dir/good.tok" "$dir/magic.tok" && printf 'XXXXXXXX' | dd of="$dir/magic.tok" conv=notrunc status=none
cp "$dir/good.tok" "$dir/version.tok" && printf '\7' | dd of="$dir/version.tok" bs=1 seek=8 conv=notrunc status=none
cp "$dir/good.tok" "$dir/width.tok" && printf '\3' | dd of="$dir/width.tok" bs=1 seek=12 conv=notrunc status=none
cp "$dir/good.tok" "$dir/count.tok" && printf '\377\377\377\377\377\377\377\177' | dd of="$dir/count.tok" bs=1 seek=16 conv=notrunc status=none
head -c 1000 "$dir/good.tok" >"$dir/cut.tok"
shard_case() { # name pattern file [extra]
  local name=$1 pat=$2 f=$3
  shift 3
  case_ "$name" 2 "$pat" "${S[@]}" --set run_dir="$dir/shard_run" --set "data.train_files=[\"$f\"]" "$@"
}
shard_case "shard FIFO" "fifo.tok: not a regular file" "$dir/fifo.tok"
shard_case "shard folder" "folder.tok: not a regular file" "$dir/folder.tok"
shard_case "shard /dev/zero" "/dev/zero: not a regular file" /dev/zero
shard_case "shard empty" "empty.tok: file is 0 bytes, shorter than the 32-byte header" "$dir/empty.tok"
shard_case "shard missing" "none.tok: cannot open: No such file" "$dir/none.tok"
shard_case "shard bad magic" 'magic.tok: offset 0: bad magic "XXXXXXXX"' "$dir/magic.tok"
shard_case "shard bad version" "version.tok: offset 8: version 7, expected 1" "$dir/version.tok"
shard_case "shard bad width" "width.tok: offset 12: token width 3 bytes" "$dir/width.tok"
shard_case "shard count 2^63" "count.tok: file is .* bytes, header says" "$dir/count.tok"
shard_case "shard cut short" "cut.tok: file is 1000 bytes, header says 32 \+ 200000" "$dir/cut.tok"
shard_case "shard shorter than a window" "no shard holds data.seq_len \+ 1 = 129 tokens" "$dir/short.tok"
shard_case "shard token >= model vocab" "vocab.tok: token [0-9]+ at offset [0-9]+ is [0-9]+, not below the model vocabulary" "$dir/vocab.tok"
case_ "val shard FIFO" 2 "fifo.tok: not a regular file" "${S[@]}" --set run_dir="$dir/shard_run" \
  --set "data.train_files=[\"$dir/good.tok\"]" --set "data.val_files=[\"$dir/fifo.tok\"]"

# A run on a shard that changes after its second step: a clean stop, nothing saved for it, and the
# checkpoint before it intact and resumable.
changed_shard() { # name pattern how
  local name=$1 pat=$2 how=$3 run="$dir/live_$4"
  cp "$dir/good.tok" "$dir/live.tok"
  bg_start "${T[@]}" --set data.source=shards --set "data.train_files=[\"$dir/live.tok\"]" \
    --set run_dir="$run" --set train.max_steps=100000 --set checkpoint.every=1
  bg_wait_lines "$run/metrics.jsonl" 2
  case $how in
    truncate) truncate -s 50000 "$dir/live.tok" ;;
    grow) head -c 4096 /dev/zero >>"$dir/live.tok" ;;
    replace) cp "$dir/good.tok" "$dir/live2.tok" && mv "$dir/live2.tok" "$dir/live.tok" ;;
    remove) rm "$dir/live.tok" ;;
    token) head -c 399000 /dev/zero | tr '\0' '\377' |
             dd of="$dir/live.tok" bs=1000 seek=1 conv=notrunc status=none ;;
    same) head -c 399000 /dev/zero | dd of="$dir/live.tok" bs=1000 seek=1 conv=notrunc status=none ;;
  esac
  POST="newest_ok $run" bg_judge "$name" 2 "$pat"
}
changed_shard "shard truncated while training" "live.tok: is now 50000 bytes, was 400032 .* the run stops without saving" truncate 1
changed_shard "shard grown while training" "live.tok: is now 404128 bytes, was 400032" grow 2
changed_shard "shard replaced while training" "live.tok: now names another file: the shard was replaced" replace 3
changed_shard "shard removed while training" "live.tok: no longer exists" remove 4
changed_shard "shard rewritten while training" "live.tok: was written to while training .* rewritten in place" token 5
changed_shard "shard rewritten in place, valid tokens" "live.tok: was written to while training .* rewritten in place" same 6

# ------------------------------------------------------------------------------------------------
echo "== checkpoints: the latest pointer"
# base: three checkpoints (steps 1, 2, 3) of one run; every case works on a copy.
"${T[@]}" --set run_dir="$dir/base" --set train.max_steps=3 --set checkpoint.every=1 \
  --set checkpoint.keep_last=0 >/dev/null 2>&1 || { echo "FAIL: the base run"; exit 1; }
tool verify "$dir/base/ckpt/step_00000003" || { echo "FAIL: the C hashes disagree with the spec"; exit 1; }
echo "ok   the xxh64 of every file and state.json's checksum agree with an independent implementation"
mk() { rm -rf "$dir/$1"; cp -a "$dir/base" "$dir/$1"; run="$dir/$1"; ck="$dir/$1/ckpt"; }
R=("${T[@]}" --set train.max_steps=4 --set checkpoint.every=1 --set checkpoint.keep_last=0)
mk l1; rm "$ck/latest"
case_ "latest missing" 0 "ckpt/latest is missing; looking for the newest intact" "${R[@]}" --set run_dir="$run"
mk l2; : >"$ck/latest"
case_ "latest empty" 0 'latest: holds "", expected a step_<N> folder name' "${R[@]}" --set run_dir="$run"
mk l3; echo hello >"$ck/latest"
case_ "latest garbage" 0 'latest: holds "hello"' "${R[@]}" --set run_dir="$run"
mk l4; echo ../../etc >"$ck/latest"
SAME=$ck case_ "latest ../../etc" 2 'latest: names "../../etc", outside the folder it is in' "${R[@]}" --set run_dir="$run"
mk l5; echo /tmp >"$ck/latest"
SAME=$ck case_ "latest absolute path" 2 'latest: names "/tmp", outside' "${R[@]}" --set run_dir="$run"
mk l6; echo step_00000002/../step_00000003 >"$ck/latest"
SAME=$ck case_ "latest with a slash" 2 'names "step_00000002/../step_00000003", outside' "${R[@]}" --set run_dir="$run"
mk l7; rm "$ck/latest"; mkdir "$ck/latest"
case_ "latest is a folder" 0 "latest: is a folder, expected a regular file" "${R[@]}" --set run_dir="$run"
mk l8; rm "$ck/latest"; mkfifo "$ck/latest"
case_ "latest is a FIFO" 0 "latest: is a FIFO \(named pipe\), expected a regular file" "${R[@]}" --set run_dir="$run"
mk l9; head -c 1048576 /dev/zero >"$ck/latest"
case_ "latest 1 MiB" 0 "latest: 1048576 bytes, more than the 4096 bytes" "${R[@]}" --set run_dir="$run"
mk l10; echo step_00000009 >"$ck/latest"
case_ "latest names a missing step" 0 "step_00000009 is not intact: .*state.json: missing" "${R[@]}" --set run_dir="$run"
mk l11; echo step_00000002 >"$ck/latest"
POST='has "$ck/step_00000003.replaced-*/state.json"' \
  case_ "latest rolled back: newer one kept" 0 "resumed from \S*step_00000002 && moved aside" "${R[@]}" --set run_dir="$run"
mk l12; printf 'step_00000003\r\n  ' >"$ck/latest"
case_ "latest with CR and spaces" 0 "resumed from \S*step_00000003" "${R[@]}" --set run_dir="$run"
mk l13; printf 'step_0000\0003\n' >"$ck/latest"
case_ "latest with a NUL byte" 0 "latest: holds a NUL byte" "${R[@]}" --set run_dir="$run"

echo "== checkpoints: corrupt, incomplete and foreign folders (auto falls back, keeps everything)"
fallback() { # name pattern: step_3 is bad -> resumed from step_2, and step_3 is kept (moved aside)
  POST='has "$ck/step_00000003.replaced-*"' case_ "$1" 0 "step_00000003 is not intact: .*$2 && resumed from \S*step_00000002" \
    "${R[@]}" --set run_dir="$run"
}
mk c1; tool flip "$ck/step_00000003/model.safetensors" -100
fallback "flipped byte in weights" "\S*model.safetensors: xxh64 [0-9a-f]+, state.json records [0-9a-f]+: the file is corrupt"
mk c2; tool flip "$ck/step_00000003/optim_00000.safetensors" 20
fallback "flipped byte in optimizer header" "\S*optim_00000.safetensors: xxh64 .* corrupt"
mk c3; truncate -s 5000 "$ck/step_00000003/model.safetensors"
fallback "truncated weights" "model.safetensors: 5000 bytes, state.json records 103904: the file is truncated"
mk c4; rm "$ck/step_00000003/train_config.json"
fallback "missing train_config.json" "train_config.json: missing"
mk c5; rm "$ck/step_00000003/state.json"
fallback "missing state.json" "state.json: missing \(an incomplete checkpoint\)"
mk c6; sed -i 's/"step":\t3/"step":\t4/' "$ck/step_00000003/state.json"
fallback "state.json edited, checksum stale" "state.json: checksum mismatch \(recorded [0-9a-f]+, computed [0-9a-f]+\)"
mk c7; truncate -s 300 "$ck/step_00000003/state.json"
fallback "state.json cut short" "state.json: not a JSON object"
mk c8; printf 'x' >>"$ck/step_00000003/optim_00000.safetensors"
fallback "byte appended to optimizer file" "optim_00000.safetensors: 206033 bytes, state.json records 206032"
mk c9; tool setf32 "$ck/step_00000003/model.safetensors" model.norm.weight 3 nan
tool rehash "$ck/step_00000003" model.safetensors
fallback "NaN weight (valid hashes)" "model.safetensors: tensor \"model.norm.weight\" element 3 is nan"
mk c10; tool setf32 "$ck/step_00000003/optim_00000.safetensors" exp_avg_sq 7 -1
tool rehash "$ck/step_00000003" optim_00000.safetensors
fallback "negative second moment" "the moments of model.embed_tokens.weight hold .* negative second moment"
mk c11; tool setf32 "$ck/step_00000003/optim_00000.safetensors" exp_avg 9 inf
tool rehash "$ck/step_00000003" optim_00000.safetensors
fallback "infinite first moment" "moments of \S+ hold inf"
mk c12; tool meta "$ck/step_00000003/optim_00000.safetensors" '"slice_start":"0"' '"slice_start":"9"'
tool rehash "$ck/step_00000003" optim_00000.safetensors
fallback "optimizer slice with a gap" "slice_start is 9, the slices before it end at 0"
mk c13; tool meta "$ck/step_00000003/optim_00000.safetensors" '"slice_len":"25728"' '"slice_len":"25727"'
tool rehash "$ck/step_00000003" optim_00000.safetensors
fallback "optimizer slice_len disagrees" "exp_avg has 25728 elements, metadata slice_len says 25727"
mk c14; rm -r "$ck/step_00000003"; echo x >"$ck/step_00000003"
case_ "step folder replaced by a file" 0 "state.json: cannot read: Not a directory && resumed from \S*step_00000002" "${R[@]}" --set run_dir="$run"
mk c15; tool restate "$ck/step_00000003" step=-5
fallback "state.json step -5 (auto)" '"step" is -5, expected 1'
mk c16; for s in 1 2 3; do tool flip "$ck/step_0000000$s/model.safetensors" -8; done
SAME=$ck case_ "every checkpoint corrupt" 2 "resume auto: none of the 3 checkpoint folder\(s\) is intact" "${R[@]}" --set run_dir="$run"
mk c17; tool flip "$ck/step_00000003/model.safetensors" -8
SAME=$ck case_ "resume names a corrupt folder" 2 "step_00000003/model.safetensors: xxh64 .* corrupt" "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"
case_ "resume names a missing folder" 2 "nowhere/state.json: missing" "${R[@]}" --set run_dir="$dir/rn" --set resume="$dir/nowhere"
mk c18; mkdir "$ck/step_00000004.tmp"; echo half >"$ck/step_00000004.tmp/model.safetensors"
POST='[ ! -e "$ck/step_00000004.tmp" ] && newest_ok "$run"' \
  case_ "leftover .tmp folder" 0 "resumed from \S*step_00000003" "${R[@]}" --set run_dir="$run"
mk c19; cp -a "$ck/step_00000003" "$ck/step_00000100"
tool restate "$ck/step_00000100" step=100 optimizer_step=100 data_cursor=100 run_id='"0123456789abcdef"'
fingerprint "$ck/step_00000100" >"$dir/fp.foreign"
POST='[ "$(fingerprint "$ck/step_00000100")" = "$(cat "$dir/fp.foreign")" ] && [ "$(ls "$ck" | grep -c "^step_0*[0-9]*$")" = 2 ]' \
  case_ "foreign lineage never pruned" 0 "resumed from \S*step_00000003" "${T[@]}" --set run_dir="$run" \
  --set train.max_steps=6 --set checkpoint.every=1 --set checkpoint.keep_last=1
mk c20
POST='has "$run/ckpt.replaced-*/step_00000003/state.json" && newest_ok "$run"' \
  case_ "resume none keeps old checkpoints" 0 "moved aside to \S*ckpt.replaced-" "${R[@]}" --set run_dir="$run" --set resume=none
mk c21
SAME=$ck case_ "checkpoint of another model shape" 2 'tensor "model.embed_tokens.weight" has shape \[512, 32\], the config makes it \[512, 64\]' \
  "${R[@]}" --set run_dir="$run" --set model.hidden_size=64
mk c22; tool v1 "$ck/step_00000003"
case_ "version-1 checkpoint (no checksums)" 0 "resumed from \S*step_00000003: .*version 1, no checksums" "${R[@]}" --set run_dir="$run"
mk c23
bg_start "${T[@]}" --set run_dir="$run" --set train.max_steps=1000000
bg_wait_lines "$run/metrics.jsonl" 5
case_ "second trainer on the same run_dir" 2 "\.lock: the run folder is in use by another infllm-train \(pid [0-9]+" "${R[@]}" --set run_dir="$run"
kill -TERM "$bgpid"
POST='newest_ok "$run"' bg_judge "first trainer, SIGTERM after that" 0 "stop signal received"

echo "== state.json: every field checked (an explicit resume stops with the reason)"
field() { # name pattern field=value...
  local name=$1 pat=$2
  shift 2
  mk sj; tool restate "$ck/step_00000003" "$@"
  SAME=$ck case_ "state.json $name" 2 "state.json: $pat" "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"
}
field "step -5" '"step" is -5, expected 1 \.\. 9007199254740992' step=-5
field "step 0" '"step" is 0, expected 1' step=0
field "step 1e300" '"step" is 1[.0-9]*e\+300' step=1e300
field "step 3.5" '"step": expected an integer' step=3.5
field 'step "3"' '"step": expected an integer' 'step="3"'
field "step missing" '"step" is missing' step=DELETE
field "step 2 in folder 3" '"step" is 2 but the folder is step_00000003' step=2 optimizer_step=2 data_cursor=2
field "optimizer_step 0" '"optimizer_step" is 0' optimizer_step=0
field "optimizer_step 7" '"optimizer_step" is 7 but "step" is 3' optimizer_step=7
field "world_size 0" '"world_size" is 0, expected 1' world_size=0
field "world_size 1e9" '"world_size" is 1000000000, expected 1 \.\. 1048576' world_size=1e9
field "world_size 2" '"files" lists 3 files, expected 4' world_size=2 dp=2
field "cp 2 x dp 1" 'cp 2 x dp 1 is not world_size 1' cp=2
field "data_cursor 99" '"data_cursor" is 99, expected step 3 x global_batch_size 1' data_cursor=99
field "n_params 5" '"n_params" is 5, its model.safetensors holds 25696' n_params=5
field "version 99" '"version" is 99, expected 1 \.\. 2' version=99
field "format" '"format" is not "infllm-train checkpoint"' 'format="other"'
field "run_id" '"run_id": expected 16 hex digits' 'run_id="xyz"'
field "loss_ema -1" '"loss_ema": expected a finite number >= 0' loss_ema=-1
field "seed -1" '"seed" is -1' seed=-1
field "data_digest alone" '"data_digest" without "data_windows": expected both or neither' 'data_digest="0123456789abcdef"'
field "data_windows -1" '"data_windows" is -1, expected 0' data_windows=-1 'data_digest="0123456789abcdef"'
field "data_digest not hex" '"data_digest": expected 16 hex digits' data_windows=5 'data_digest="0123"'
field "files: extra entry" '"files" lists 4 files, expected 3' 'files={"model.safetensors": {"bytes": 1, "xxh64": "0000000000000000"}, "train_config.json": {"bytes": 1, "xxh64": "0000000000000000"}, "optim_00000.safetensors": {"bytes": 1, "xxh64": "0000000000000000"}, "evil.bin": {"bytes": 1, "xxh64": "0000000000000000"}}'
field "files: bad hash" '"files"."model.safetensors"."xxh64": expected 16 hex digits' 'files={"model.safetensors": {"bytes": 1, "xxh64": "zz"}, "train_config.json": {"bytes": 1, "xxh64": "0000000000000000"}, "optim_00000.safetensors": {"bytes": 1, "xxh64": "0000000000000000"}}'
field "files: wrong name" '"files": unexpected or repeated entry "optim_00001.safetensors"' 'files={"model.safetensors": {"bytes": 1, "xxh64": "0000000000000000"}, "train_config.json": {"bytes": 1, "xxh64": "0000000000000000"}, "optim_00001.safetensors": {"bytes": 1, "xxh64": "0000000000000000"}}'
mk sj2; tool dropfile "$ck/step_00000003" model.safetensors
SAME=$ck case_ "state.json files: entry missing" 2 '"files" lists 2 files, expected 3' "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"
mk sj3; rm "$ck/step_00000003/state.json"; mkfifo "$ck/step_00000003/state.json"
SAME=$ck case_ "state.json is a FIFO" 2 "state.json: is a FIFO" "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"
mk sj4; head -c $((9 << 20)) /dev/zero | tr '\0' ' ' >"$ck/step_00000003/state.json"
SAME=$ck case_ "state.json 9 MiB" 2 "state.json: 9437184 bytes, more than the 8 MiB" "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"
mk sj5; echo '[]' >"$ck/step_00000003/state.json"
SAME=$ck case_ "state.json is an array" 2 "state.json: not a JSON object" "${R[@]}" --set run_dir="$run" --set resume="$ck/step_00000003"

# ------------------------------------------------------------------------------------------------
echo "== divergence: never saved, and stopped by the guard"
POST='[ ! -e "$dir/d1/ckpt/step_00000001" ] && ! has "$dir/d1/ckpt/*.tmp"' \
  case_ "weights blow up (lr 1e39): nothing saved" 3 "step 1: weight [0-9]+ \(in \S+\) is (inf|-inf|nan): training diverged; no checkpoint is written" \
  "${T[@]}" --set run_dir="$dir/d1" --set train.lr=1e39 --set train.warmup_steps=0 --set train.schedule=constant \
  --set train.max_steps=3 --set checkpoint.every=1
POST='[ ! -e "$dir/d2/ckpt" ]' case_ "guard: gradient norm limit" 3 "step 1: .*gradient norm above train.guard.grad_norm = 1e-09: training diverged" \
  "${T[@]}" --set run_dir="$dir/d2" --set train.guard.grad_norm=1e-9 --set train.max_steps=3
POST='[ "$(cat "$dir/d3/ckpt/latest")" = step_00000010 ] && newest_ok "$dir/d3"' \
  case_ "guard: loss spike (armed after 10 steps)" 3 "step 11: .*loss above train.guard.loss_spike = 0.5 x the running mean" \
  "${T[@]}" --set run_dir="$dir/d3" --set train.guard.loss_spike=0.5 --set train.max_steps=30 --set checkpoint.every=1
"${T[@]}" --set run_dir="$dir/d4" --set train.max_steps=6 >/dev/null 2>&1
case_ "guard: running mean restored on resume" 3 "resumed from \S*step_00000006 && step 11: .*loss above train.guard.loss_spike" \
  "${T[@]}" --set run_dir="$dir/d4" --set train.guard.loss_spike=0.5 --set train.max_steps=30
case_ "resume after a guard stop" 0 "resumed from \S*step_00000010" "${T[@]}" --set run_dir="$dir/d3" --set train.max_steps=11

# ------------------------------------------------------------------------------------------------
echo "== export: destinations that would damage a run, arguments, corrupt sources"
mk e; E=("$bin" export)
SAME=$ck case_ "export into the checkpoint itself" 2 "refusing to write into \S*step_00000003: \S*step_00000003 is a checkpoint" \
  "${E[@]}" "$ck/latest" "$ck/step_00000003"
SAME=$ck case_ "export into the ckpt folder" 2 "refusing to write into \S*ckpt/hf: \S*ckpt is the checkpoint folder of a run" \
  "${E[@]}" "$ck/latest" "$ck/hf"
SAME=$ck case_ "export inside another checkpoint" 2 "\S*step_00000001 is a checkpoint" "${E[@]}" "$ck/latest" "$ck/step_00000001/x/y"
SAME=$ck case_ "export via a relative path into ckpt" 2 "is the checkpoint folder of a run" \
  bash -c 'cd "$1/step_00000002" && exec "$2" export ../latest ../out' _ "$ck" "$bin"
mkdir -p "$dir/full"; echo mine >"$dir/full/notes.txt"
SAME="$dir/full" case_ "export into a non-empty folder" 2 "full is not empty \(1 entries\); pass --force" "${E[@]}" "$ck/latest" "$dir/full"
echo stale >"$dir/full/model-00001-of-00009.safetensors"; echo '{}' >"$dir/full/config.json"
POST='[ -f "$dir/full/notes.txt" ] && [ ! -e "$dir/full/model-00001-of-00009.safetensors" ] && [ -f "$dir/full/model.safetensors" ]' \
  case_ "export --force over an earlier export" 0 "exported \S*step_00000003" "${E[@]}" "$ck/latest" "$dir/full" --force
echo x >"$dir/afile"
case_ "export onto a file" 2 "afile is a regular file, expected a folder" "${E[@]}" "$ck/latest" "$dir/afile"
case_ "export onto /dev/null" 2 "/dev/null is a character device, expected a folder" "${E[@]}" "$ck/latest" /dev/null
case_ "export --max-shard-bytes abc" 2 'max-shard-bytes needs a positive integer, got "abc"' "${E[@]}" "$ck/latest" "$dir/x1" --max-shard-bytes abc
case_ "export --max-shard-bytes -5" 2 'got "-5"' "${E[@]}" "$ck/latest" "$dir/x1" --max-shard-bytes -5
case_ "export --max-shard-bytes (no value)" 2 'got ""' "${E[@]}" "$ck/latest" "$dir/x1" --max-shard-bytes
case_ "export unknown option" 2 "export: unknown option --frce" "${E[@]}" "$ck/latest" "$dir/x1" --frce
case_ "export without OUT" 2 "export needs CHECKPOINT and OUT_FOLDER" "${E[@]}" "$ck/latest"
case_ "export extra argument" 2 "unexpected argument" "${E[@]}" "$ck/latest" "$dir/x1" "$dir/x2"
case_ "export of a folder that is no checkpoint" 2 "x0/state.json: missing" bash -c 'mkdir -p "$1/x0" && exec "$2" export "$1/x0" "$1/x1"' _ "$dir" "$bin"
mk e2; tool flip "$ck/step_00000003/model.safetensors" -4
POST='[ ! -e "$dir/x3/config.json" ]' case_ "export of corrupt weights" 2 "model.safetensors: xxh64 .* corrupt" "${E[@]}" "$ck/latest" "$dir/x3"
mk e3; tool flip "$ck/step_00000003/train_config.json" 10
case_ "export of a corrupt train_config.json" 2 "train_config.json: xxh64 .* corrupt" "${E[@]}" "$ck/latest" "$dir/x4"
mk e4; echo ../../x >"$ck/latest"
case_ "export via a latest pointing outside" 2 'names "../../x", outside' "${E[@]}" "$ck/latest" "$dir/x5"
case_ "eval via a latest pointing outside" 2 'names "../../x", outside' "$bin" eval "$ck/latest" configs/quickstart.json
mk e5; tool flip "$ck/step_00000003/model.safetensors" -4
case_ "eval of corrupt weights" 2 "model.safetensors: xxh64 .* corrupt" "$bin" eval "$ck/step_00000003" "${tiny[@]}"
POST='[ -f "$dir/x6/config.json" ]' case_ "export, the normal way" 0 "exported \S*step_00000003" "${E[@]}" "$dir/base/ckpt/latest" "$dir/x6"

# ------------------------------------------------------------------------------------------------
echo "== metrics.jsonl: not a file, a partial line, a full disk, a closed stdout"
mkdir -p "$dir/m1" "$dir/m2/metrics.jsonl"; mkfifo "$dir/m1/metrics.jsonl"
case_ "metrics.jsonl is a FIFO" 2 "metrics.jsonl: is a FIFO" "${T[@]}" --set run_dir="$dir/m1" --set train.max_steps=2
case_ "metrics.jsonl is a folder" 2 "metrics.jsonl: cannot open for append: Is a directory" "${T[@]}" --set run_dir="$dir/m2" --set train.max_steps=2
"${T[@]}" --set run_dir="$dir/m3" --set train.max_steps=2 >/dev/null 2>&1; printf '{"step": 3, "lo' >>"$dir/m3/metrics.jsonl"
POST='tool jsonl "$dir/m3/metrics.jsonl"' case_ "metrics.jsonl ends in a partial line" 0 "removed a partial last line of 15 bytes" \
  "${T[@]}" --set run_dir="$dir/m3" --set train.max_steps=4
POST='tool jsonl "$dir/m4/metrics.jsonl"' case_ "disk full for metrics (ulimit -f)" 2 \
  "cannot write a metrics record \(File too large\) && metrics.jsonl: [0-9]+ metrics record\(s\) could not be written" \
  bash -c 'trap "" XFSZ; ulimit -f 4; exec "$@"' _ "${T[@]}" --set run_dir="$dir/m4" --set train.max_steps=60 --set checkpoint.at_end=false
POST='tool jsonl "$dir/m4/metrics.jsonl"' case_ "the run after a full disk" 0 "done: 3 step" \
  "${T[@]}" --set run_dir="$dir/m4" --set train.max_steps=3
POST='newest_ok "$dir/m5"' case_ "stdout closed early (| head -c 1)" 0 - \
  bash -c '"$@" | head -c 1 >/dev/null; exit ${PIPESTATUS[0]}' _ "${T[@]}" --set run_dir="$dir/m5" --set train.max_steps=20
POST='newest_ok "$dir/m6"' case_ "stdout is /dev/full" 0 - bash -c 'exec "$@" >/dev/full' _ "${T[@]}" --set run_dir="$dir/m6" --set train.max_steps=5

# ------------------------------------------------------------------------------------------------
echo "== signals: while training, while writing checkpoints, at startup, while exporting"
for sig in TERM INT USR1; do
  bg_start "${T[@]}" --set run_dir="$dir/s$sig" --set train.max_steps=1000000
  bg_wait_lines "$dir/s$sig/metrics.jsonl" 3
  kill -s $sig "$bgpid"
  POST='newest_ok "$dir/s'$sig'"' bg_judge "SIG$sig while training" 0 "stop signal received after step [0-9]+: checkpointing and exiting"
done
slow=(--set model.hidden_size=256 --set model.intermediate_size=768 --set model.num_hidden_layers=4
      --set model.num_attention_heads=4 --set model.num_key_value_heads=2 --set data.seq_len=512)
bg_start "${T[@]}" "${slow[@]}" --set run_dir="$dir/sINT2" --set train.max_steps=1000000 --set checkpoint.every=1
bg_wait_lines "$dir/sINT2/metrics.jsonl" 2
kill -INT "$bgpid"; sleep 0.03; kill -INT "$bgpid"
POST='newest_ok "$dir/sINT2"' bg_judge "SIGINT twice: ends at once" 130 "-"
bg_start "${T[@]}" --set run_dir="$dir/sHUP" --set train.max_steps=1000000 --set checkpoint.every=1
bg_wait_lines "$dir/sHUP/metrics.jsonl" 5
kill -HUP "$bgpid"
POST='newest_ok "$dir/sHUP"' bg_judge "SIGHUP (no handler) mid-run" 129 "-"
# SIGKILL at random moments of a run that writes a checkpoint every step: `latest` always names a
# checkpoint whose every byte checks out, and the run resumes from it.
for i in 1 2 3 4; do
  bg_start "${T[@]}" --set run_dir="$dir/kill" --set train.max_steps=1000000 --set checkpoint.every=1 \
    --set checkpoint.keep_last=2
  bg_wait_lines "$dir/kill/metrics.jsonl" $((i * 4 + RANDOM % 8))
  kill -9 "$bgpid"
  POST='newest_ok "$dir/kill"' bg_judge "SIGKILL $i while checkpointing" 137 "-"
done
case_ "resume after the kills" 0 "resumed from \S*step_" "${T[@]}" --set run_dir="$dir/kill" \
  --set train.max_steps=1000000 --set train.exit_after_steps=1
bg_start "${T[@]}" --set run_dir="$dir/early" --set train.max_steps=5
sleep 0.02; kill -TERM "$bgpid" 2>/dev/null
bg_judge "SIGTERM at startup" 143/0 "-"
case_ "the run after a startup kill" 0 "done: [0-9]+ step|nothing to do" "${T[@]}" --set run_dir="$dir/early" --set train.max_steps=5
mk ld
bg_start "${R[@]}" --set run_dir="$run" --set train.max_steps=1000000
sleep 0.15; kill -9 "$bgpid"
bg_judge "SIGKILL while resuming" 137 "-"
# (on a fast machine the killed run may have got past its resume and saved later steps: the next
# run must resume from whichever checkpoint is newest and intact)
case_ "the run after that" 0 "resumed from \S*step_" "${R[@]}" --set run_dir="$run" \
  --set train.max_steps=1000000 --set train.exit_after_steps=1
# An export stopped part way leaves no config.json: nothing that looks like a complete model.
"${T[@]}" --set run_dir="$dir/bigx" --set model.hidden_size=256 --set model.intermediate_size=768 \
  --set model.num_hidden_layers=4 --set model.num_attention_heads=4 --set model.num_key_value_heads=2 \
  --set model.vocab_size=8192 --set train.max_steps=1 >/dev/null 2>&1
for delay in 0.12 0.2 0.28; do
  rm -rf "$dir/bigx_out"
  bg_start "$bin" export "$dir/bigx/ckpt/latest" "$dir/bigx_out" --max-shard-bytes 2000000
  sleep $delay; kill -TERM "$bgpid" 2>/dev/null
  POST='[ ! -e "$dir/bigx_out/config.json" ] || [ -f "$dir/bigx_out/model.safetensors.index.json" ]' \
    bg_judge "SIGTERM during export ($delay s)" 143/0 "-"
done
# --force over an earlier export: its config.json goes first, so a stop leaves the old folder
# untouched, or no config.json, or the complete new export; never new weights beside an old config.
mkdir -p "$dir/bigx_again"; echo '{}' >"$dir/bigx_again/config.json"
bg_start "$bin" export "$dir/bigx/ckpt/latest" "$dir/bigx_again" --force --max-shard-bytes 2000000
sleep 0.15; kill -TERM "$bgpid" 2>/dev/null
POST='c=$(cat "$dir/bigx_again/config.json" 2>/dev/null); [ -z "$c" ] || { [ "$c" = "{}" ] && ! has "$dir/bigx_again/model*"; } || [ -f "$dir/bigx_again/model.safetensors.index.json" ]' \
  bg_judge "SIGTERM during export --force" 143/0 "-"

# ------------------------------------------------------------------------------------------------
echo "== Hugging Face folders that are not files, and side files on export"
"$bin" export "$dir/base/ckpt/latest" "$dir/hf" >/dev/null 2>&1
hfcase() { # name pattern prepare-command: a copy of the exported folder, altered, imported
  rm -rf "$dir/hfx"; cp -a "$dir/hf" "$dir/hfx"
  eval "$3"
  case_ "$1" 2 "$2" "${T[@]}" --set run_dir="$dir/hfrun" --set model.init_from="$dir/hfx" --set resume=none \
    --set train.max_steps=1
}
hfcase "config.json is a FIFO" "hfx/config.json: is a FIFO" 'rm "$dir/hfx/config.json"; mkfifo "$dir/hfx/config.json"'
hfcase "config.json is a folder" "hfx/config.json: cannot read: Is a directory" 'rm "$dir/hfx/config.json"; mkdir "$dir/hfx/config.json"'
hfcase "config.json 9 MiB" "hfx/config.json: 94[0-9]+ bytes, more than the 8 MiB" \
  'head -c $((9 << 20)) /dev/zero | tr "\0" " " >>"$dir/hfx/config.json"'
hfcase "index.json is a FIFO" "model.safetensors.index.json: is a FIFO" 'mkfifo "$dir/hfx/model.safetensors.index.json"'
hfcase "weights are /dev/zero" "model.safetensors: .*(not a regular file|regular)" 'rm "$dir/hfx/model.safetensors"; ln -s /dev/zero "$dir/hfx/model.safetensors"'
rm -rf "$dir/hfy"; cp -a "$dir/hf" "$dir/hfy"; mkfifo "$dir/hfy/tokenizer.json"
"${T[@]}" --set run_dir="$dir/hfyrun" --set model.init_from="$dir/hfy" --set train.max_steps=1 >/dev/null 2>&1
case_ "export copies a FIFO tokenizer.json" 2 "hfy/tokenizer.json: is a FIFO" "$bin" export "$dir/hfyrun/ckpt/latest" "$dir/hfy_out"

# ------------------------------------------------------------------------------------------------
echo "== sizes: overflowing and absurd values (--set, a JSON config, config.json), huge budgets"
# Each size derived from user numbers is computed in 64 bits with an overflow check; what cannot be
# held is refused at validation naming the key (docs/CONFIG.md, "Sizes"), never wrapped.
D=("${T[@]}" --dry-run --set run_dir="$dir/sz")
case_ "--set layers 2^31 - 1" 2 "model.num_hidden_layers=2147483647: expected a positive integer <= 65536" "${D[@]}" --set model.num_hidden_layers=2147483647
case_ "--set layers 65537" 2 "expected a positive integer <= 65536, got 65537" "${D[@]}" --set model.num_hidden_layers=65537
case_ "--set heads x head_dim = 2^31" 2 "model.head_dim: num_attention_heads 2 x head_dim 1073741824 = 2147483648 values in a row of q; expected at most 2\^31 - 1" "${D[@]}" --set model.head_dim=1073741824
case_ "--set head_dim 2^31 - 2" 2 "model.head_dim: .* = 4294967292 values in a row of q" "${D[@]}" --set model.head_dim=2147483646
case_ "--set heads 2^31 - 1 (x head_dim)" 2 "model.num_attention_heads: num_attention_heads 2147483646 x head_dim 16" "${D[@]}" --set model.num_attention_heads=2147483646 --set model.num_key_value_heads=1 --set model.head_dim=16
case_ "--set kernel_size 2^30 (4x wraps)" 2 "attention.kernel_size: 1073741824: with lse_approx the coarse keys K2 use windows of 4 x kernel_size = 4294967296" "${D[@]}" --set attention.kernel_size=1073741824
case_ "--set micro_batch 2^31 - 1 (tokens wrap)" 2 "train.micro_batch_size: 2147483647 sequences x data.seq_len 128 = 274877906816 tokens in one micro-batch" "${D[@]}" --set train.micro_batch_size=2147483647
case_ "--set max_steps 2^53 x batch 2^31 - 1" 2 "train.max_steps: 9007199254740992 steps x global_batch_size 2147483647 x data.seq_len 128 = over 9.22e\+18 tokens" "${D[@]}" --set train.max_steps=9007199254740992 --set train.global_batch_size=2147483647
case_ "--set vocab x hidden > 2^62 bytes" 2 "model.vocab_size: the model has 4.61e\+18 parameters .* over 9.22e\+18 bytes .* beyond the limit of 2\^62 bytes" "${D[@]}" --set model.vocab_size=2147483647 --set model.hidden_size=2147483646 --set model.head_dim=64
case_ "--set hidden x intermediate > 2^62 bytes" 2 "model.intermediate_size: the model has .* parameters .* beyond the limit of 2\^62 bytes" "${D[@]}" --set model.hidden_size=2147483646 --set model.intermediate_size=2147483647 --set model.head_dim=64
case_ "--set 65536 layers of 2^20 > 2^62 bytes" 2 "model.hidden_size: the model has .* 65536 layer\(s\) of .* beyond the limit" "${D[@]}" --set model.num_hidden_layers=65536 --set model.hidden_size=1048576 --set model.intermediate_size=1048576 --set model.head_dim=64
case_ "--set activations > 2^62 bytes" 2 "data.seq_len: the activations of one micro-batch come to about 16 bytes x \(65536 layer\(s\) \+ 4\) x 2147483584 tokens" "${D[@]}" --set model.num_hidden_layers=65536 --set data.seq_len=2147483584 --set model.hidden_size=1048576 --set model.head_dim=64
case_ "--set selection > 2^62 bytes (KV heads x blocks)" 2 "attention.topk: the activations of one micro-batch .* selected blocks x KV heads" "${D[@]}" --set data.seq_len=1048576 --set attention.block_size=16 --set attention.kernel_stride=16 --set attention.kernel_size=16 --set attention.window_size=0 --set attention.topk=2147483647 --set attention.dense_len=-1 --set model.num_attention_heads=1048576 --set model.num_key_value_heads=1048576 --set model.head_dim=2 --set model.num_hidden_layers=65536
case_ "--set init_blocks 2^31 - 1 (+1 wraps)" 2 "attention.topk: 64 cannot hold the 2147483647 forced init block\(s\)" "${D[@]}" --set attention.init_blocks=2147483647
case_ "--set cp 2^30 (2 x cp wraps)" 2 "parallel.cp: 1073741824 does not divide the number of ranks 1" "${D[@]}" --set parallel.cp=1073741824
case_ "--set seq_len 2^31" 2 "data.seq_len=2147483648: expected a positive integer <= 2147483647" "${D[@]}" --set data.seq_len=2147483648
case_ "--set vocab 2^31" 2 "model.vocab_size=2147483648: expected a positive integer <= 2147483647" "${D[@]}" --set model.vocab_size=2147483648
case_ "--set hidden 2^31" 2 "model.hidden_size=2147483648: expected a positive integer <= 2147483647" "${D[@]}" --set model.hidden_size=2147483648
case_ "--set max_steps 2^53 + 2" 2 "train.max_steps=9007199254740994: expected a positive integer <= 9007199254740992" "${D[@]}" --set train.max_steps=9007199254740994
case_ "--set hidden 1e300" 2 "model.hidden_size=1e300: expected a positive integer <= 2147483647, got 1e\+300" "${D[@]}" --set model.hidden_size=1e300
case_ "--set layers 1.5" 2 "model.num_hidden_layers=1.5: expected a positive integer <= 65536, got 1.5" "${D[@]}" --set model.num_hidden_layers=1.5
case_ "--set hidden \"128\" (a string)" 2 'model.hidden_size="128": expected a positive integer, got "128"' "${D[@]}" --set 'model.hidden_size="128"'
case_ "--set topk -1" 2 "attention.topk=-1: expected a non-negative integer, got -1" "${D[@]}" --set attention.topk=-1
case_ "--set lr nan" 2 'train.lr=nan: expected a number >= 0, got "nan"' "${D[@]}" --set train.lr=nan
case_ "--set plan beyond the machine (CPU)" 2 "the run needs about [0-9.]+ GiB of host memory per rank .* but this machine has [0-9.]+ GiB available" "${D[@]}" --set model.intermediate_size=2147483647
case_ "--set vocab 2^31 - 1 beyond the machine" 2 "GiB of host memory per rank" "${D[@]}" --set model.vocab_size=2147483647
json_case() { # name pattern JSON-text: a config file holding the text, checked (--dry-run)
  printf '%s' "$3" >"$dir/sz.json"
  case_ "JSON $1" 2 "sz.json: $2" "$bin" "$dir/sz.json" --dry-run
}
json_case "layers 1e300" "model.num_hidden_layers: expected a positive integer <= 65536, got 1e\+300" \
  '{"model": {"num_hidden_layers": 1e300}}'
json_case "hidden 2^31" "model.hidden_size: expected a positive integer <= 2147483647, got 2147483648" \
  '{"model": {"hidden_size": 2147483648}}'
json_case "vocab x hidden > 2^62 bytes" "model.vocab_size: the model has 4.61e\+18 parameters" \
  '{"model": {"vocab_size": 2147483647, "hidden_size": 2147483646, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64}}'
json_case "heads x head_dim = 2^32" "model.num_attention_heads: num_attention_heads 65536 x head_dim 65536 = 4294967296" \
  '{"model": {"num_attention_heads": 65536, "num_key_value_heads": 1, "head_dim": 65536}}'
json_case "run tokens > 2^62" "train.max_steps: 9007199254740992 steps x global_batch_size 2147483647" \
  '{"train": {"max_steps": 9007199254740992, "global_batch_size": 2147483647, "micro_batch_size": 1}}'
json_case "layers -1" "model.num_hidden_layers: expected a positive integer <= 65536, got -1" \
  '{"attention": {"kernel_size": 1073741824}, "model": {"num_hidden_layers": -1}}'
# A budget larger than the sequence's blocks ("keep every block") is dense attention: the selection
# is sized by the sequence (128 tokens: 2 blocks), and step 1's loss equals the dense run's.
printf '%s\n' '{"run_dir": "'"$dir"'/topk_dense", "data": {"seq_len": 128},' \
  ' "train": {"micro_batch_size": 1, "global_batch_size": 1, "eval_every": 0, "warmup_steps": 1, "max_steps": 1},' \
  ' "model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,' \
  '  "num_key_value_heads": 1}, "checkpoint": {"at_end": false}}' >"$dir/topk.json"
"$bin" "$dir/topk.json" >/dev/null 2>&1
first_loss() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['loss'])" "$1/metrics.jsonl"; }
same_loss() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(a - b) > 1e-5 * abs(b))" "$(first_loss "$1")" "$(first_loss "$dir/topk_dense")"; }
POST='same_loss "$dir/topk_all"' case_ "topk 2^31 - 1: the loss of dense attention" 0 "InfLLM-V2 sparse attention" \
  "$bin" "$dir/topk.json" --set run_dir="$dir/topk_all" --set attention.dense_len=-1 --set attention.topk=2147483647
POST='same_loss "$dir/topk_all2"' case_ "topk 2^31 - 1 + window 2^31 - 64 (the sum wraps int)" 0 "InfLLM-V2 sparse attention" \
  "$bin" "$dir/topk.json" --set run_dir="$dir/topk_all2" --set attention.dense_len=-1 --set attention.topk=2147483647 \
  --set attention.window_size=2147483584
case_ "topk 2^31 - 1: selection sized by 128 tokens" 0 "selected blocks \(int32\) +0\.00 MiB" \
  "$bin" "$dir/topk.json" --dry-run --set attention.dense_len=-1 --set attention.topk=2147483647
case_ "topk 2^31 - 1 at 2^16 tokens: 1024 blocks, not 2^31" 0 "selected blocks \(int32\) +256\.00 MiB" \
  "$bin" "$dir/topk.json" --dry-run --set attention.dense_len=-1 --set attention.topk=2147483647 --set data.seq_len=65536 --set model.num_hidden_layers=1
case_ "one step: its time, not the run's" 0 "done: 1 step\(s\) in [0-9.]+ s, [0-9]+ ms for the one step" \
  "$bin" "$dir/topk.json" --set run_dir="$dir/onestep"

echo "== config.json: every field checked like our own config, one error naming config.json and the field"
printf '%s\n' '{"run_dir": "'"$dir"'/hfj_run", "data": {"seq_len": 128},' \
  ' "train": {"micro_batch_size": 1, "global_batch_size": 1, "eval_every": 0, "warmup_steps": 1, "max_steps": 1}}' >"$dir/hfbase.json"
hfjson() { # name pattern python-statement(s) on j: the exported config.json, edited, imported
  rm -rf "$dir/hfj"; cp -a "$dir/hf" "$dir/hfj"
  python3 -c 'import json, sys; p = sys.argv[1]; j = json.load(open(p)); exec(sys.argv[2]); open(p, "w").write(json.dumps(j))' \
    "$dir/hfj/config.json" "$3"
  case_ "config.json $1" 2 "hfj/config.json: $2" "$bin" "$dir/hfbase.json" --set model.init_from="$dir/hfj" --dry-run
}
hfjson "num_attention_heads 0" "num_attention_heads: expected a positive integer, got 0" "j['num_attention_heads'] = 0"
hfjson "num_attention_heads -2" "num_attention_heads: expected a positive integer, got -2" "j['num_attention_heads'] = -2"
hfjson "num_key_value_heads 0" "num_key_value_heads: expected a positive integer, got 0" "j['num_key_value_heads'] = 0"
hfjson "num_key_value_heads 3 (does not divide)" "num_key_value_heads: 3 does not divide num_attention_heads = 2" "j['num_key_value_heads'] = 3"
hfjson "hidden_size 0" "hidden_size: expected a positive integer, got 0" "j['hidden_size'] = 0"
hfjson "intermediate_size 0" "intermediate_size: expected a positive integer, got 0" "j['intermediate_size'] = 0"
hfjson "vocab_size 0" "vocab_size: expected a positive integer <= 2147483647, got 0" "j['vocab_size'] = 0"
hfjson "rms_norm_eps 0" "rms_norm_eps: expected a number in \(0, 1\], got 0" "j['rms_norm_eps'] = 0"
hfjson "rms_norm_eps -1e-5" "rms_norm_eps: expected a number in \(0, 1\], got -1e-05" "j['rms_norm_eps'] = -1e-5"
hfjson "rms_norm_eps a string" 'rms_norm_eps: expected a number in \(0, 1\], got "1e-5"' "j['rms_norm_eps'] = '1e-5'"
hfjson "rms_norm_eps NaN (not JSON)" "line 1, column [0-9]+: malformed JSON near 'NaN" "j['rms_norm_eps'] = float('nan')"
hfjson "rope_theta 0" "rope_theta: expected a positive number, got 0" "j['rope_theta'] = 0"
hfjson "rope_theta -10000" "rope_theta: expected a positive number, got -10000" "j['rope_theta'] = -10000"
hfjson "rope_theta Infinity (not JSON)" "line 1, column [0-9]+: malformed JSON near 'Infinity" "j['rope_theta'] = float('inf')"
hfjson "tie_word_embeddings \"true\"" 'tie_word_embeddings: expected true or false, got "true"' "j['tie_word_embeddings'] = 'true'"
hfjson "tie_word_embeddings 1" "tie_word_embeddings: expected true or false, got 1" "j['tie_word_embeddings'] = 1"
hfjson "architectures Qwen2" 'architectures: "Qwen2ForCausalLM" is not implemented for model_type "llama"; expected "LlamaForCausalLM"' "j['architectures'] = ['Qwen2ForCausalLM']"
hfjson "architectures not a list" "architectures: expected a list of names" "j['architectures'] = 'LlamaForCausalLM'"
hfjson "architectures of another model_type" 'architectures: "MiniCPMForCausalLM" is not implemented for model_type "llama"' "j['architectures'] = ['MiniCPMForCausalLM']"
hfjson "model_type mistral" 'model_type: expected one of "llama", "minicpm", "qwen2", "qwen3", got "mistral"' "j['model_type'] = 'mistral'; del j['architectures']"
hfjson "model_type missing" '"model_type" is missing' "del j['model_type']"
hfjson "hidden_size 32.5" "hidden_size: expected a positive integer, got 32.5" "j['hidden_size'] = 32.5"
hfjson "num_hidden_layers \"1\"" 'num_hidden_layers: expected a positive integer <= 65536, got "1"' "j['num_hidden_layers'] = '1'"
hfjson "vocab_size 1e30" "vocab_size: expected a positive integer <= 2147483647, got 1e\+30" "j['vocab_size'] = 1e30"
hfjson "num_hidden_layers 10^9" "num_hidden_layers: expected a positive integer <= 65536, got 1000000000" "j['num_hidden_layers'] = 10**9"
hfjson "vocab x hidden > 2^62 bytes" "vocab_size: the model has .* beyond the limit of 2\^62 bytes" "j.update(vocab_size=2**31 - 1, hidden_size=2**31 - 2, head_dim=64)"
hfjson "head_dim 0" "head_dim: expected a positive integer \(or no head_dim" "j['head_dim'] = 0"
hfjson "head_dim 2^30 (x heads wraps int)" "head_dim: num_attention_heads 2 x head_dim 1073741824 = 2147483648" "j['head_dim'] = 2**30"
hfjson "head_dim 7 (odd)" "head_dim: 7 is odd" "j['head_dim'] = 7"
hfjson "hidden_act gelu" 'hidden_act: expected "silu" \(the only one implemented\), got "gelu"' "j['hidden_act'] = 'gelu'"
hfjson "attention_bias \"yes\"" 'attention_bias: expected true or false, got "yes"' "j['attention_bias'] = 'yes'"
hfjson "mlp_bias true" "mlp_bias: expected false \(the only one implemented\), got true" "j['mlp_bias'] = True"
hfjson "rope_scaling mrope" 'rope_scaling.rope_type: expected one of .*"llama3", got "mrope"' "j['rope_scaling'] = {'rope_type': 'mrope', 'factor': 2.0}"
hfjson "max_position_embeddings -1" "max_position_embeddings: expected a non-negative integer, got -1" "j['max_position_embeddings'] = -1"
hfjson "heads as a list" "num_attention_heads: expected a positive integer, got \[2\]" "j['num_attention_heads'] = [2]"

echo "== several ranks: a config error is printed once, by rank 0, and every rank exits 2"
case_ "2 ranks: --set error printed once" 2 "^error: --set model.hidden_size=0: expected a positive integer" \
  mpiexec --oversubscribe -n 2 "${D[@]}" --set model.hidden_size=0
case_ "2 ranks: validation error printed once" 2 "^error: .*model.head_dim: 7 is odd" \
  mpiexec --oversubscribe -n 2 "${D[@]}" --set model.head_dim=7
rm -rf "$dir/hfj"; cp -a "$dir/hf" "$dir/hfj"; sed -i 's/"rms_norm_eps":[^,]*/"rms_norm_eps": 0/' "$dir/hfj/config.json"
case_ "2 ranks: config.json error printed once" 2 "^error: \S*hfj/config.json: rms_norm_eps: expected a number" \
  mpiexec --oversubscribe -n 2 "$bin" "$dir/hfbase.json" --set model.init_from="$dir/hfj" --set train.global_batch_size=2 --dry-run

# ------------------------------------------------------------------------------------------------
echo "== several ranks: fallback and refusal agree on every rank"
M=(mpiexec --oversubscribe -n 2)
R2=("${R[@]}" --set train.global_batch_size=2)
mk mp1; tool flip "$ck/step_00000003/model.safetensors" -4
case_ "2 ranks: corrupt newest, fall back" 0 "resumed from \S*step_00000002: step 2, 1 rank\(s\) then, 2 now" \
  "${M[@]}" "${R2[@]}" --set run_dir="$run"
mk mp2; for s in 1 2 3; do tool flip "$ck/step_0000000$s/optim_00000.safetensors" -4; done
SAME=$ck case_ "2 ranks: every checkpoint corrupt" 2 "none of the 3 checkpoint folder\(s\) is intact" "${M[@]}" "${R2[@]}" --set run_dir="$run"
mk mp3; echo ../x >"$ck/latest"
SAME=$ck case_ "2 ranks: latest outside" 2 'names "../x", outside' "${M[@]}" "${R2[@]}" --set run_dir="$run"
case_ "2 ranks: divergence stops every rank" 3 "training diverged" "${M[@]}" "${T[@]}" --set run_dir="$dir/mp4" \
  --set train.guard.grad_norm=1e-9 --set train.max_steps=3 --set train.global_batch_size=2

# ------------------------------------------------------------------------------------------------
echo "== prepare.py: output paths, empty input, signals"
if python3 -c "import tokenizers" 2>/dev/null; then
  python3 - "$dir" <<'PY'
import sys
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20,
                        trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False))
tok.save(f"{sys.argv[1]}/tok.json")
PY
  P=(python3 data/prepare.py --tokenizer "$dir/tok.json")
  echo "the quick brown fox" >"$dir/ok.txt"
  : >"$dir/empty.txt"; printf '\n\n' >"$dir/blank.jsonl"; printf '{"text": ""}\n{"text": ""}\n' >"$dir/nothing.jsonl"
  mkfifo "$dir/fifo.txt"; mkdir "$dir/dir.txt"
  case_ "prepare: output is a file" 2 "afile: exists and is not a folder" "${P[@]}" --input "$dir/ok.txt" --output "$dir/afile"
  case_ "prepare: output is /dev/null" 2 "/dev/null: exists and is not a folder" "${P[@]}" --input "$dir/ok.txt" --output /dev/null
  case_ "prepare: output cannot be made" 2 "^error: /proc/\S+: " "${P[@]}" --input "$dir/ok.txt" --output /proc/self/nope/out
  case_ "prepare: output below a file" 2 "afile is not a folder" "${P[@]}" --input "$dir/ok.txt" --output "$dir/afile/sub"
  POST='[ ! -e "$dir/p1" ] || [ -z "$(ls -A "$dir/p1")" ]' \
    case_ "prepare: empty .txt" 2 "no text in 1 input file\(s\) \(1 empty document\(s\)\): nothing to write" "${P[@]}" --input "$dir/empty.txt" --output "$dir/p1"
  case_ "prepare: blank .jsonl" 2 "no text in 1 input file\(s\) \(0 empty" "${P[@]}" --input "$dir/blank.jsonl" --output "$dir/p2"
  case_ "prepare: .jsonl of empty strings" 2 "2 empty document\(s\)" "${P[@]}" --input "$dir/nothing.jsonl" --output "$dir/p3"
  case_ "prepare: input FIFO" 2 "fifo.txt: not a regular file" "${P[@]}" --input "$dir/fifo.txt" --output "$dir/p4"
  case_ "prepare: input folder" 2 "dir.txt: not a regular file" "${P[@]}" --input "$dir/dir.txt" --output "$dir/p4"
  case_ "prepare: tokenizer is a folder" 2 "no such tokenizer file" python3 data/prepare.py --tokenizer "$dir/hf" --input "$dir/ok.txt" --output "$dir/p4"
  "${P[@]}" --input "$dir/ok.txt" --output "$dir/p5" >/dev/null 2>&1
  SAME="$dir/p5" case_ "prepare: --overwrite with empty input keeps the old shards" 2 "no text" \
    "${P[@]}" --input "$dir/empty.txt" --output "$dir/p5" --overwrite
  python3 -c "
import random
w = 'the quick brown fox jumps over the lazy dog'.split()
with open('$dir/big.jsonl', 'w') as f:
    for i in range(40000): f.write('{\"text\": \"' + ' '.join(random.choice(w) for _ in range(60)) + '\"}\n')"
  bg_start "${P[@]}" --input "$dir/big.jsonl" --output "$dir/p6" --shard-tokens 5000
  for _ in $(seq 200); do has "$dir/p6/.prepare-*/train_*.tok" && break; sleep 0.02; done
  kill -TERM "$bgpid" 2>/dev/null
  POST='[ -z "$(ls -A "$dir/p6")" ]' bg_judge "prepare: SIGTERM while writing shards" 143 "-"
  POST='[ -z "$(ls -A "$dir/p6")" ]' case_ "prepare: a disk that fills up" 2 "^error: \S+: File too large \(writing the shards; --output is as it was\)" \
    bash -c 'trap "" XFSZ; ulimit -f 50; exec "$@"' _ "${P[@]}" --input "$dir/big.jsonl" --output "$dir/p6" --shard-tokens 50000
else
  echo "prepare.py cases skipped: the Python package tokenizers is not importable"
fi

# ------------------------------------------------------------------------------------------------
echo "hostile: $cases cases, $clean clean, $crashes crashes, $hangs hangs, $wrong wrong"
[ "$wrong" = 0 ] && [ "$crashes" = 0 ] && [ "$hangs" = 0 ]
