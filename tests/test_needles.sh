#!/usr/bin/env bash
# test_needles.sh: real text to needle retrieval, end to end on the CPU with a tiny model.
#   data/text_corpus.py   this repository's .py and .md files -> one JSONL document per folder
#                         (files in name order, a `# file:` header each; every file in exactly once)
#   data/prepare.py       -> shards with EOS after each document (a byte-level BPE trained here)
#   bench/needles.py      single / multikey / multivalue at 3 depths, 1024 tokens: each answer span
#                         decodes to a value its sequence's needles hold (all four, in text order,
#                         for multivalue); the question closes the sequence
#   infllm-train eval     with data.val_answer_files and train.eval_buckets: the answer spans per
#                         file are exactly the masks' spans, whole <= spans, the token-level answers
#                         equal the masks' ones, the position buckets hold exactly the expected
#                         targets; bad answer files stop with exit 2 naming the key.
# Usage (CTest): test_needles.sh BUILD_DIR TRAINER; exit 77 (skipped) without `tokenizers`.
set -euo pipefail
bin=$2
cd "$(dirname "$0")/.."
python3 -c "import tokenizers" 2>/dev/null || { echo "test_needles: skipped: no tokenizers"; exit 77; }
tmp=$(mktemp -d /tmp/infllm_test_needles_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=2

python3 data/text_corpus.py data bench tests docs --ext .py .md --output "$tmp/corpus.jsonl" \
  --doc-chars 20000 2>"$tmp/corpus.log" || { cat "$tmp/corpus.log"; exit 1; }
python3 - "$tmp" <<'EOF'
import json, os, sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
tmp = sys.argv[1]
docs = [json.loads(l)["text"] for l in open(f"{tmp}/corpus.jsonl")]
heads = [l[len("# file: "):] for d in docs for l in d.split("\n") if l.startswith("# file: ")]
want = sorted(os.path.join(r, f)[len(t) + 1:] for t in ("data", "bench", "tests", "docs")
              for r, _, fs in os.walk(t) for f in fs if f.endswith((".py", ".md")))
got = sorted(h for h in heads if any(h == w for w in want))
assert got == want, f"corpus files {len(got)} != {len(want)}"
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              show_progress=False)
tok.train_from_iterator(docs, trainer)
tok.save(f"{tmp}/tokenizer.json")
print(f"corpus: {len(docs)} documents, {len(want)} files; tokenizer of {tok.get_vocab_size()}")
EOF
python3 data/prepare.py --tokenizer "$tmp/tokenizer.json" --input "$tmp/corpus.jsonl" \
  --output "$tmp/shards" --append-eos --bos-token "" --eos-token "<|endoftext|>" \
  --val-fraction 0.3 >"$tmp/prepare.json" 2>"$tmp/prepare.log" || { cat "$tmp/prepare.log"; exit 1; }
python3 bench/needles.py --tokenizer "$tmp/tokenizer.json" --haystack "$tmp/shards/val_000000.tok" \
  --seq-len 1024 --samples 2 --output "$tmp/needles" >"$tmp/needles.json" 2>"$tmp/needles.log" ||
  { cat "$tmp/needles.log"; exit 1; }

# --- the files: spans decode to the needles' values
python3 - "$tmp" <<'EOF'
import array, json, re, sys
from tokenizers import Tokenizer
tmp = sys.argv[1]
tok = Tokenizer.from_file(f"{tmp}/tokenizer.json")
cfg = json.load(open(f"{tmp}/needles.json"))
files, masks = cfg["data"]["val_files"], cfg["data"]["val_answer_files"]
assert len(files) == 9 and cfg["train"]["eval_batches"] == 18, cfg
def read(p):
    b = open(p, "rb").read()
    a = array.array("H"); a.frombytes(b[32:]); return a
for f, m in zip(files, masks):
    t, a = read(f), read(m)
    assert len(t) == len(a) == 2 * 1024 + 1, (f, len(t), len(a))
    for s in range(2):
        seq, mk = t[s * 1024:(s + 1) * 1024], a[s * 1024:(s + 1) * 1024]
        text = tok.decode(list(seq))
        spans, i = [], 0
        while i < 1024:
            if mk[i]:
                j = i
                while j < 1024 and mk[j]: j += 1
                spans.append(tok.decode(list(seq[i:j])).strip()); i = j
            else:
                i += 1
        key = re.search(r"special magic numbers? for (\S+) mentioned", text).group(1)
        values = re.findall(rf"special magic numbers for {re.escape(key)} is: (\d+)\.", text)
        n = 4 if "multivalue" in f else 1
        assert len(spans) == n and len(values) == n, (f, s, spans, values)
        assert spans == values, (f, s, spans, values)
        if "multikey" in f:
            assert len(re.findall(r"special magic numbers for \S+ is:", text)) == 4, (f, s)
        assert text.rstrip().endswith(spans[-1] + "."), (f, s, text[-80:])
print("needles: 9 files, every answer span is its key's value")
EOF

# --- eval: spans per file, token answers, position buckets
sets=(--set device=cpu --set data.source=shards --set data.seq_len=1024 --set data.eod_token=0
      --set "data.train_files=[\"$tmp/shards/train_000000.tok\"]" --set model.vocab_size=400)
"$bin" configs/quickstart.json "${sets[@]}" --set run_dir="$tmp/run" --set resume=none \
  --set train.max_steps=1 --set train.warmup_steps=0 --set train.eval_every=0 >/dev/null
vf=$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['data']['val_files']))" "$tmp/needles.json")
af=$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['data']['val_answer_files']))" "$tmp/needles.json")
"$bin" eval "$tmp/run/ckpt/latest" configs/quickstart.json "${sets[@]}" --set train.eval_batches=18 \
  --set "data.val_files=$vf" --set "data.val_answer_files=$af" \
  --set "train.eval_buckets=[64,512,1024]" >"$tmp/eval.out"
sed -n 's/^eval_json: //p' "$tmp/eval.out" >"$tmp/eval.json"
python3 - "$tmp" <<'EOF'
import array, json, sys
tmp = sys.argv[1]
r = json.load(open(f"{tmp}/eval.json"))
def read(p):
    b = open(p, "rb").read()
    a = array.array("H"); a.frombytes(b[32:]); return a
ones = 0
for f in r["files"]:
    n = 4 if "multivalue" in f["file"] else 1
    assert f["spans"] == 2 * n and 0 <= f["whole"] <= f["spans"], f
    m = read(f["file"][:-4] + ".ans.tok")
    ones += sum(m[1:2049])  # targets of the two windows: tokens 1 .. 1024 of each
assert r["answers"] == ones and 0 <= r["correct"] <= ones, (r["answers"], r["correct"], ones)
b = [(x["from"], x["to"], x["targets"]) for x in r["buckets"]]
assert b == [(0, 64, 18 * 63), (64, 512, 18 * 448), (512, 1024, 18 * 512)], b
print(f"eval: spans per file as the masks, {ones} answer tokens, buckets {b}")
EOF

# --- the same evaluation over 2 cp ranks (spans cross the ranks' chunks): the same counts
mpiexec --oversubscribe -n 2 "$bin" eval "$tmp/run/ckpt/latest" configs/quickstart.json \
  "${sets[@]}" --set parallel.cp=2 --set train.eval_batches=18 --set "data.val_files=$vf" \
  --set "data.val_answer_files=$af" --set "train.eval_buckets=[64,512,1024]" >"$tmp/eval_cp2.out"
sed -n 's/^eval_json: //p' "$tmp/eval_cp2.out" >"$tmp/eval_cp2.json"
python3 - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
a, b = (json.load(open(f"{tmp}/{n}.json")) for n in ("eval", "eval_cp2"))
fa = [(f["file"], f["spans"], f["whole"]) for f in a["files"]]
fb = [(f["file"], f["spans"], f["whole"]) for f in b["files"]]
assert fa == fb, (fa, fb)
for k in ("answers", "correct"):
    assert a[k] == b[k], (k, a[k], b[k])
assert [x["targets"] for x in a["buckets"]] == [x["targets"] for x in b["buckets"]]
rel = abs(a["loss"] - b["loss"]) / a["loss"]
assert rel < 1e-5, (a["loss"], b["loss"])  # fp32 sums in another order
whole = sum(f[2] for f in fa)
print(f"eval cp 2: {len(fa)} files, {whole} whole spans, {a['correct']} of {a['answers']} answer "
      f"tokens, as one rank; loss relative difference {rel:.1e}")
EOF

# --- real text mixed with the synthetic retrieval task: a quarter of the training sequences
"$bin" configs/quickstart.json "${sets[@]}" --set run_dir="$tmp/mix" --set resume=none \
  --set train.max_steps=2 --set train.warmup_steps=0 --set train.eval_every=0 \
  --set data.synthetic.fraction=0.25 --set data.synthetic.answers_only=true >"$tmp/mix.out"
grep -q "^data: 1 shard(s), .*25% of the sequences are the synthetic retrieval task" "$tmp/mix.out" ||
  { echo "FAIL: mix: no data line"; cat "$tmp/mix.out"; exit 1; }
grep -q "^step 2/2 | loss [0-9.]* | retrieval [0-9.]*%" "$tmp/mix.out" ||
  { echo "FAIL: mix: no retrieval accuracy on the step lines"; cat "$tmp/mix.out"; exit 1; }
echo "ok   mix: $(grep '^data: ' "$tmp/mix.out")"

# --- bad answer files: one line naming the key, exit 2
bad() { # WHAT EXPECTED-TEXT SETS...
  local what=$1 want=$2; shift 2
  set +e
  "$bin" eval "$tmp/run/ckpt/latest" configs/quickstart.json "${sets[@]}" "$@" \
    >/dev/null 2>"$tmp/err"
  local rc=$?
  set -e
  if [ $rc -ne 2 ] || ! grep -q "$want" "$tmp/err"; then
    echo "FAIL: $what: exit $rc"; cat "$tmp/err"; exit 1
  fi
  echo "ok   $what: $(head -c 160 "$tmp/err")"
}
one=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])[:1]))" "$vf")
ans2=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])[1:2]))" "$af")
bad "answer files of another count" "data.val_answer_files" --set "data.val_files=$vf" \
  --set "data.val_answer_files=$ans2"
bad "an answer file of another length" "data.val_answer_files" \
  --set "data.val_files=[\"$tmp/shards/val_000000.tok\"]" --set "data.val_answer_files=$ans2"
bad "an answer file with other values than 0 and 1" "data.val_answer_files" \
  --set "data.val_files=$one" --set "data.val_answer_files=$one"
bad "a bucket edge not ascending" "train.eval_buckets" --set "train.eval_buckets=[64,32]"
echo "test_needles: passed"
