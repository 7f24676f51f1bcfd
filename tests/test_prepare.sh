#!/usr/bin/env bash
# test_prepare.sh: data/prepare.py end to end, offline.
#
# Trains a tiny byte-level BPE tokenizer with the `tokenizers` package (no download), tokenises a
# .txt and a .jsonl file into several train and val shards, and checks: every header field and the
# file size against shard.h's table, the val split rule, that decoding each stored document gives
# back its text exactly (unicode, \r\n, a literal "<s>" inside a document), the no-separator mode,
# --overwrite, and the error lines for a missing file, a bad JSON line and a missing key. The C
# side then validates the shards with token_shard_check() (test_data --check-shards).
#
# Usage (CTest): test_prepare.sh BUILD_DIR [TRAINER]; exit 77 (skipped) without `tokenizers`.
set -euo pipefail

build=${1:-build}
cd "$(dirname "$0")/.."

if ! python3 -c "import tokenizers" 2>/dev/null; then
    python3 -m pip install --quiet --retries 1 --timeout 15 tokenizers >/dev/null 2>&1 || true
    if ! python3 -c "import tokenizers" 2>/dev/null; then
        echo "test_prepare: skipped: Python package tokenizers not importable, pip cannot install it"
        exit 77
    fi
fi

tmp=$(mktemp -d /tmp/infllm_test_prepare_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# --- inputs: a tokenizer, a .txt document and a .jsonl file of documents (docs.json = expected)
python3 - "$tmp" <<'EOF'
import json, random, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
tmp = sys.argv[1]
rng = random.Random()
words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "naïve", "café", "☃", "𝄞",
         "long", "context", "attention", "sparse", "block", "token", "shard", "42,", "x\ty", "<s>"]
def doc(n):
    return " ".join(rng.choice(words) for _ in range(n))
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator([doc(30) for _ in range(50)], trainer)
tok.save(f"{tmp}/tokenizer.json")
txt = doc(40) + "\r\nsecond line\n\n" + doc(25) + "\n"
with open(f"{tmp}/a.txt", "w", encoding="utf-8", newline="") as f:
    f.write(txt)
docs = [txt]
with open(f"{tmp}/b.jsonl", "w", encoding="utf-8") as f:
    for i in range(rng.randint(9, 14)):
        d = doc(rng.randint(1, 30))
        docs.append(d)
        f.write(json.dumps({"id": i, "text": d}, ensure_ascii=i % 2 == 0) + "\n")
        if i == 3:
            f.write("\n")  # blank lines are skipped
with open(f"{tmp}/docs.json", "w") as f:
    json.dump({"docs": docs, "vocab": tok.get_vocab_size(with_added_tokens=True)}, f)
EOF

# --- run 1: BOS + EOS, a val split, shards of 40 tokens
python3 data/prepare.py --tokenizer "$tmp/tokenizer.json" --input "$tmp/a.txt" "$tmp/b.jsonl" \
    --output "$tmp/out" --val-fraction 0.34 --shard-tokens 40 --append-eos \
    >"$tmp/config.json" 2>"$tmp/log" ||
    { cat "$tmp/log"; fail "prepare.py run 1 exited $?"; }
grep -q "tokens/s" "$tmp/log" || fail "no progress line on stderr"

# --- the shard checker (Python): header table of shard.h, sizes, split, exact round trip.
# verify.py TMP sep|nosep: "sep" = BOS/EOS around each document and val fraction 0.34, "nosep" = none.
cat >"$tmp/verify.py" <<'EOF'
import glob, json, struct, sys
from tokenizers import Tokenizer
tmp, mode = sys.argv[1], sys.argv[2]
tok = Tokenizer.from_file(f"{tmp}/tokenizer.json")
exp = json.load(open(f"{tmp}/docs.json"))
vocab, docs, bos, eos = exp["vocab"], exp["docs"], tok.token_to_id("<s>"), tok.token_to_id("</s>")
cfg = json.load(open(f"{tmp}/config.json"))["data"]
bad = []
def read_stream(prefix):
    paths = sorted(glob.glob(f"{tmp}/out/{prefix}_*.tok"))
    ids = []
    for i, p in enumerate(paths):
        if not p.endswith(f"{prefix}_{i:06d}.tok"): bad.append(f"{p}: shards not numbered from 0")
        b = open(p, "rb").read()
        magic, ver, width, n, v = struct.unpack("<8sIIQQ", b[:32])
        if (magic, ver, width, v) != (b"INFLTOK1", 1, 2, vocab):
            bad.append(f"{p}: header {magic, ver, width, v}")
        if len(b) != 32 + 2 * n: bad.append(f"{p}: {len(b)} bytes for {n} tokens")
        if mode == "sep" and i + 1 < len(paths) and n != 40: bad.append(f"{p}: {n} tokens, expected 40")
        t = list(struct.unpack(f"<{n}H", b[32:]))
        if t and max(t) >= vocab: bad.append(f"{p}: token {max(t)} >= {vocab}")
        ids += t
    return paths, ids
def split_docs(ids):
    if not ids or ids[0] != bos: bad.append("stream does not start with BOS"); return []
    out, cur = [], None
    for t in ids:
        if t == bos:
            if cur is not None: out.append(cur)
            cur = []
        else: cur.append(t)
    out.append(cur)
    for d in out:
        if not d or d[-1] != eos: bad.append("document without EOS")
    return [tok.decode(d[:-1], skip_special_tokens=False) for d in out]
f = 0.34 if mode == "sep" else 0.0
want = {"train": [d for i, d in enumerate(docs) if not int((i + 1) * f) > int(i * f)],
        "val": [d for i, d in enumerate(docs) if int((i + 1) * f) > int(i * f)]}
if cfg.get("eod_token") != (eos if mode == "sep" else None):
    bad.append(f"config's eod_token is {cfg.get('eod_token')}, expected {eos if mode == 'sep' else None}")
for s in ("train", "val"):
    paths, ids = read_stream(s)
    if cfg[f"{s}_files"] != paths:
        bad.append(f"{s}: config lists {cfg[s + '_files']}, folder holds {paths}")
    if mode == "sep":
        got = split_docs(ids)
        if got != want[s]: bad.append(f"{s}: decoded documents differ: {got!r} vs {want[s]!r}")
        if s == "train" and len(paths) < 3: bad.append(f"{s}: only {len(paths)} shards")
    else:
        got = tok.decode(ids, skip_special_tokens=False)
        if got != "".join(want[s]): bad.append(f"{s}: decoded stream differs")
        if bos in ids or eos in ids: bad.append(f"{s}: separators present")
for b in bad: print("  " + b)
sys.exit(1 if bad else 0)
EOF
python3 "$tmp/verify.py" "$tmp" sep || fail "shard contents (run 1)"

# --- C side: token_shard_check() on every shard with the tokenizer's vocabulary as the model's
vocab=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['vocab'])" "$tmp/docs.json")
if [ -x "$build/tests/test_data" ]; then
    "$build/tests/test_data" --check-shards "$vocab" "$tmp"/out/*.tok >"$tmp/check.log" ||
        { cat "$tmp/check.log"; fail "token_shard_check rejects prepare.py's shards"; }
    max=$(python3 -c "import sys; print(max(max(memoryview(open(p, 'rb').read()[32:]).cast('H'))
                                              for p in sys.argv[1:]))" "$tmp"/out/*.tok)
    "$build/tests/test_data" --check-shards "$max" "$tmp"/out/*.tok >/dev/null &&
        fail "token_shard_check accepts token $max with a model vocabulary of $max"
else
    fail "$build/tests/test_data not built: cannot check the shards from C"
fi

# --- run 2: an existing output folder, then --overwrite without separators and no val split
python3 data/prepare.py --tokenizer "$tmp/tokenizer.json" --input "$tmp/a.txt" --output "$tmp/out" \
    2>"$tmp/err" >/dev/null && fail "prepare.py overwrote existing shards without --overwrite"
grep -q "already holds shards" "$tmp/err" || fail "existing shards: $(cat "$tmp/err")"
python3 data/prepare.py --tokenizer "$tmp/tokenizer.json" --input "$tmp/a.txt" "$tmp/b.jsonl" \
    --output "$tmp/out" --overwrite --bos-token "" --val-fraction 0 >"$tmp/config.json" 2>"$tmp/log" ||
    { cat "$tmp/log"; fail "prepare.py run 2"; }
python3 "$tmp/verify.py" "$tmp" nosep || fail "shard contents (run 2: no separators)"

# --- user errors: exit code 2 and one line naming the file (and line)
expect_error() { # what, expected text, prepare.py arguments...
    local what=$1 text=$2
    shift 2
    local rc=0
    python3 data/prepare.py --tokenizer "$tmp/tokenizer.json" --output "$tmp/err_out" "$@" \
        >/dev/null 2>"$tmp/err" || rc=$?
    if [ "$rc" != 2 ] || ! grep -qF "$text" "$tmp/err"; then
        fail "$what: exit $rc, stderr: $(cat "$tmp/err")"
    fi
}
printf '{"text": "ok"}\n{"text": "ok"}\n{"text": broken\n' >"$tmp/bad.jsonl"
printf '{"text": "ok"}\n{"body": "no text key"}\n' >"$tmp/nokey.jsonl"
expect_error "missing input" "$tmp/missing.txt: no such input file" --input "$tmp/missing.txt"
expect_error "bad JSON line" "$tmp/bad.jsonl:3: bad JSON" --input "$tmp/bad.jsonl"
expect_error "missing key" "$tmp/nokey.jsonl:2: no key 'text'" --input "$tmp/nokey.jsonl"
expect_error "unknown extension" "expected a .txt or .jsonl file" --input "$tmp/docs.json"
expect_error "missing tokenizer" "no such tokenizer file" --input "$tmp/a.txt" \
    --tokenizer "$tmp/none.json"

if [ "$failures" -ne 0 ]; then
    echo "test_prepare: $failures checks FAILED"
    exit 1
fi
echo "test_prepare: all checks passed ($(grep -c '^ok' "$tmp/check.log") shards pass token_shard_check)"
