#!/usr/bin/env python3
"""needles.py: a small RULER-like needle-in-a-haystack suite, as token shards with answer masks.

    python3 bench/needles.py --tokenizer TOKENIZER.json --haystack VAL.tok [VAL.tok ...]
        --seq-len 32768 --output DIR [--tasks single multikey multivalue]
        [--depths 0.1 0.5 0.9] [--samples 4] [--eod-token 0] [--seed 1]

Writes, for each task and depth, DIR/needle_TASK_LEN_dDEPTH.tok (--samples sequences of --seq-len
tokens, and one token more: consecutive windows of a shard share a token, docs/DATA.md) and
DIR/needle_TASK_LEN_dDEPTH.ans.tok (its answer mask: 1 at every answer token, else 0), then writes
the config lines that evaluate them (`data.val_files`, `data.val_answer_files`,
`train.eval_batches`) to DIR/needles.json and stdout. `infllm-train eval MODEL CONFIG` with them reports per file the
answer spans whose every token is the model's argmax under teacher forcing.

Haystack: real text, the tokens of the given shards (e.g. data/prepare.py's validation shard of
text the model is not trained on) in order, the end-of-document token (--eod-token, -1 = keep
all) dropped, each sample starting further on. Needles (RULER's wording) are whole lines put at a
line start nearest their depth (the fraction of the haystack before them):
  single      one needle "One of the special magic numbers for KEY is: VALUE." at the depth;
              the question asks for KEY's number.
  multikey    four needles of different keys; the asked one at the depth, the other three (the
              distractors) at random depths.
  multivalue  four needles of the same key with different values; the first at the depth, the
              other three at random depths after it; the question asks for all of them, and the
              answer lists them in the order of the text: four answer spans.
Keys are two random words (`bright-harbor`), values random 7-digit numbers. The question closes
the sequence: "What is the special magic number for KEY mentioned in the provided text? The
special magic number for KEY mentioned in the provided text is: VALUE." Every piece is encoded
apart and the ids concatenated, so a value is the same ids in its needle and in the answer.
Needs the `tokenizers` package; deterministic for a seed.
"""
import argparse
import array
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
import prepare  # noqa: E402  (the shard format's writer)

WORDS_A = ("bright quiet amber silver hollow gentle rapid frozen golden hidden narrow ancient "
           "crimson patient distant humble velvet scarlet rustic lucky").split()
WORDS_B = ("harbor meadow lantern falcon orchard canyon violin compass glacier thimble "
           "beacon willow pepper saddle marble ribbon anchor pillow basket tunnel").split()
TASKS = ("single", "multikey", "multivalue")
N_NEEDLES = 4  # needles of multikey (1 asked + 3 distractors) and values of multivalue


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Needle retrieval shards with answer masks.")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--haystack", required=True, nargs="+", help="token shards of real text")
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--depths", nargs="+", type=float, default=[0.1, 0.5, 0.9])
    p.add_argument("--samples", type=int, default=4, help="sequences per task and depth")
    p.add_argument("--eod-token", type=int, default=0, help="token dropped from the haystack")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if a.seq_len < 256 or a.samples < 1 or any(not 0 <= d <= 1 for d in a.depths):
        fail("expected --seq-len >= 256, --samples >= 1 and depths in [0, 1]")
    return a


def read_shard(path):
    """The tokens of a shard (data/prepare.py's format), checked against its header."""
    try:
        with open(path, "rb") as f:
            head = f.read(prepare.HEADER_BYTES)
            if len(head) != prepare.HEADER_BYTES or head[:8] != prepare.MAGIC:
                fail(f"{path}: not a token shard (magic {head[:8]!r})")
            width = int.from_bytes(head[12:16], "little")
            n = int.from_bytes(head[16:24], "little")
            tokens = array.array("H" if width == 2 else "I")
            tokens.fromfile(f, n)
    except (OSError, EOFError) as e:
        fail(f"{path}: {e}")
    if sys.byteorder != "little":
        tokens.byteswap()
    return tokens


class Encoder:
    def __init__(self, path):
        try:
            from tokenizers import Tokenizer
            self.tok = Tokenizer.from_file(path)
        except Exception as e:  # ImportError, or the library's own exceptions
            fail(f"{path}: cannot load the tokenizer: {e}")
        self.vocab = self.tok.get_vocab_size(with_added_tokens=True)
        self.line_ends = {i for i in range(self.vocab)  # byte-level BPE writes \n as Ċ
                          if "\n" in self.decode1(i)}

    def decode1(self, i):
        return self.tok.decode([i], skip_special_tokens=False)

    def ids(self, text):
        return self.tok.encode(text, add_special_tokens=False).ids


def needle(enc, key, value):
    """(ids, where the value's ids start, how many) of one needle line."""
    head = enc.ids(f"One of the special magic numbers for {key} is:")
    val = enc.ids(f" {value}")
    return head + val + enc.ids(".\n"), len(head), len(val)


def question(enc, task, key, values):
    """(ids, [(start, length)] of the answer spans) of the closing question and its answer."""
    if task == "multivalue":
        ids = enc.ids(f"\nWhat are all the special magic numbers for {key} mentioned in the "
                      f"provided text? The special magic numbers for {key} mentioned in the "
                      f"provided text are:")
        sep = enc.ids(",")
    else:
        ids = enc.ids(f"\nWhat is the special magic number for {key} mentioned in the provided "
                      f"text? The special magic number for {key} mentioned in the provided text "
                      f"is:")
        sep = []
    spans = []
    for i, v in enumerate(values):
        if i:
            ids += sep
        val = enc.ids(f" {v}")
        spans.append((len(ids), len(val)))
        ids += val
    return ids + enc.ids("."), spans


def line_start(enc, hay, at):
    """The first position at or after `at` that follows a token holding a line end (or `at`)."""
    for p in range(at, min(len(hay), at + 4096)):
        if p > 0 and hay[p - 1] in enc.line_ends:
            return p
    return at


def sample(enc, rng, task, depth, hay, seq_len):
    """(tokens, mask) of one sequence: seq_len tokens."""
    words = [f"{a}-{b}" for a in WORDS_A for b in WORDS_B]
    keys = rng.sample(words, N_NEEDLES)
    values = [str(rng.randrange(1_000_000, 10_000_000)) for _ in range(N_NEEDLES)]
    if task == "single":
        plan = [(depth, keys[0], values[0])]
        asked = [values[0]]
    elif task == "multikey":
        plan = [(depth, keys[0], values[0])] + [(rng.random(), k, v)
                                                for k, v in zip(keys[1:], values[1:])]
        asked = [values[0]]
    else:
        later = sorted(depth + (1 - depth) * rng.random() for _ in range(N_NEEDLES - 1))
        plan = [(d, keys[0], v) for d, v in zip([depth] + later, values)]
        asked = values
    q_ids, q_spans = question(enc, task, keys[0], asked)
    needles = [(d, needle(enc, k, v)) for d, k, v in plan]
    room = seq_len - len(q_ids) - sum(len(n[0]) for _, n in needles)
    if room < seq_len // 2:
        fail(f"--seq-len {seq_len}: the needles and the question take {seq_len - room} tokens, "
             "more than half of it; expected a longer sequence")
    body = list(hay[:room])
    inserts = sorted((line_start(enc, body, int(d * room)), i, n) for i, (d, n) in enumerate(needles))
    tokens = []
    prev = 0
    for at, _, (ids, _, _) in inserts:
        tokens += body[prev:at] + ids
        prev = at
    tokens += body[prev:]
    mask = [0] * len(tokens)
    base = len(tokens)
    tokens += q_ids
    mask += [0] * len(q_ids)
    for start, length in q_spans:
        for i in range(length):
            mask[base + start + i] = 1
    assert len(tokens) == seq_len, (len(tokens), seq_len)
    return tokens, mask


def main(argv):
    a = parse_args(argv)
    enc = Encoder(a.tokenizer)
    hay = array.array("I")
    for path in a.haystack:
        hay.extend(t for t in read_shard(path) if t != a.eod_token)
    if len(hay) < a.seq_len:
        fail(f"the haystack holds {len(hay)} tokens; --seq-len {a.seq_len} needs at least as many")
    os.makedirs(a.output, exist_ok=True)
    files, answers, n_seq = [], [], 0
    for task in a.tasks:
        for depth in a.depths:
            rng = random.Random(f"{a.seed}/{task}/{depth}/{a.seq_len}")
            toks, mask = [], []
            for s in range(a.samples):
                start = (s * 7919 * 64) % max(1, len(hay) - a.seq_len)
                t, m = sample(enc, rng, task, depth, hay[start:start + a.seq_len], a.seq_len)
                toks += t
                mask += m
            toks.append(enc.ids("\n")[0])  # the last window's final target (not scored)
            mask.append(0)
            name = os.path.join(a.output, f"needle_{task}_{a.seq_len}_d{round(depth * 100)}")
            width = 2 if enc.vocab <= 65536 else 4
            prepare.write_shard(name + ".tok", array.array("H" if width == 2 else "I", toks),
                                enc.vocab, width)
            prepare.write_shard(name + ".ans.tok", array.array("H", mask), 2, 2)
            files.append(name + ".tok")
            answers.append(name + ".ans.tok")
            n_seq += a.samples
    lines = json.dumps({"data": {"val_files": files, "val_answer_files": answers},
                        "train": {"eval_batches": n_seq}}, indent=2)
    with open(os.path.join(a.output, "needles.json"), "w") as f:
        f.write(lines + "\n")
    print(lines)
    print(f"needles: {len(files)} files, {n_seq} sequences of {a.seq_len} tokens in {a.output}",
          file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
