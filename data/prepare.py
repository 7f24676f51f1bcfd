#!/usr/bin/env python3
"""prepare.py: tokenise text into infllm-train token shards (format: data/shard.h, docs/DATA.md).

    python3 data/prepare.py --tokenizer model/tokenizer.json --input a.txt b.jsonl \\
        --output data/mycorpus [--jsonl-key text] [--val-fraction 0.01] \\
        [--shard-tokens 100000000] [--append-eos]

Documents: a .txt file is one document (the whole file); a .jsonl file holds one document per line,
the string under --jsonl-key ("text"); blank lines are skipped. Other extensions are refused.
Separators: every document starts with the tokenizer's BOS token when it has one, and ends with
its EOS token when --append-eos is given (and it has one). BOS/EOS are read from
tokenizer_config.json next to tokenizer.json when present, else looked up among common names
(<s>, <|begin_of_text|>, ...); --bos-token / --eos-token override, "" disables. Text is encoded
without the tokenizer's own post-processor specials, and special-token text inside a document
(a literal "<s>") is encoded as ordinary text, so separators are exactly the ones above.
Split: document i (counting every non-empty document of every input, in order) goes to
validation when floor((i + 1) * f) > floor(i * f), f = --val-fraction: an even, deterministic
spread of round(n f) documents. Each stream is cut into shards of --shard-tokens tokens (a document may continue in the
next shard): train_000000.tok, ..., val_000000.tok, ... Documents that encode to no tokens (empty
text) are skipped; input with no text at all is an error.
Failures: every error is one line on stderr and exit code 2 (an output path that is a file or
cannot be written, an unreadable input, a disk that fills up), never a traceback; SIGINT or
SIGTERM exit 130 / 143. Shards are first written (fsynced) into a hidden staging folder inside
--output and moved into place together at the end, after --overwrite has removed the old ones: a
failure or a signal before that leaves --output as it was. Nothing here touches the network.
"""
import argparse
import array
import json
import os
import shutil
import signal
import sys
import time

MAGIC = b"INFLTOK1"
VERSION = 1
HEADER_BYTES = 32
BOS_NAMES = ["<s>", "<|begin_of_text|>", "<bos>", "[BOS]", "<|startoftext|>"]
EOS_NAMES = ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]", "<|im_end|>"]
ENCODE_BATCH_DOCS = 256      # documents per encode_batch call
ENCODE_BATCH_CHARS = 1 << 24  # or fewer when they are long


def fail(msg):
    """One line on stderr, exit code 2 (the project's user-error code)."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Tokenise .txt / .jsonl files into infllm-train token shards.")
    p.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer.json")
    p.add_argument("--input", required=True, nargs="+", help=".txt (one document each) or .jsonl files")
    p.add_argument("--output", required=True, help="folder for train_*.tok and val_*.tok")
    p.add_argument("--jsonl-key", default="text", help="key of the document text in .jsonl lines")
    p.add_argument("--val-fraction", type=float, default=0.01,
                   help="fraction of documents for validation")
    p.add_argument("--shard-tokens", type=int, default=100_000_000,
                   help="tokens per shard (last one fewer)")
    p.add_argument("--append-eos", action="store_true", help="end every document with the EOS token")
    p.add_argument("--bos-token", default=None, help="BOS token text (default: detected; \"\" = none)")
    p.add_argument("--eos-token", default=None, help="EOS token text (default: detected; \"\" = none)")
    p.add_argument("--overwrite", action="store_true", help="delete shards already in --output first")
    a = p.parse_args(argv)
    if not 0.0 <= a.val_fraction < 1.0:
        fail(f"--val-fraction {a.val_fraction}: expected 0 <= f < 1")
    if a.shard_tokens < 1:
        fail(f"--shard-tokens {a.shard_tokens}: expected >= 1")
    return a


def load_tokenizer(path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        fail("the Python package 'tokenizers' is missing: pip install tokenizers")
    if not os.path.isfile(path):
        fail(f"{path}: no such tokenizer file")
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # the library raises plain Exception subclasses
        fail(f"{path}: cannot load tokenizer: {e}")


def config_token(tokenizer_path, key):
    """bos_token / eos_token from tokenizer_config.json next to tokenizer.json, or None."""
    cfg = os.path.join(os.path.dirname(os.path.abspath(tokenizer_path)), "tokenizer_config.json")
    if not os.path.isfile(cfg):
        return None
    try:
        with open(cfg, encoding="utf-8") as f:
            v = json.load(f).get(key)
    except (OSError, ValueError):
        return None
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) and v else None


def special_id(tok, tokenizer_path, explicit, key, names, what):
    """Id of the BOS/EOS token: explicit text, else tokenizer_config.json, else a common name."""
    if explicit is not None:
        if explicit == "":
            return None, None
        i = tok.token_to_id(explicit)
        if i is None:
            fail(f"--{what}-token {explicit!r}: not in the tokenizer's vocabulary")
        return i, explicit
    for name in [config_token(tokenizer_path, key)] + names:
        if name is not None and tok.token_to_id(name) is not None:
            return tok.token_to_id(name), name
    return None, None


def jsonl_documents(path, key):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                fail(f"{path}:{lineno}: not UTF-8 text: {e}")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                fail(f"{path}:{lineno}: bad JSON: {e}")
            if not isinstance(obj, dict) or key not in obj:
                fail(f"{path}:{lineno}: no key {key!r} (use --jsonl-key to name the text field)")
            if not isinstance(obj[key], str):
                fail(f"{path}:{lineno}: key {key!r} is {type(obj[key]).__name__}, expected a string")
            yield obj[key]


def documents(paths, key):
    """Every document of every input, in order."""
    for path in paths:
        if path.endswith(".jsonl"):
            yield from jsonl_documents(path, key)
        else:
            try:
                with open(path, encoding="utf-8", newline="") as f:  # keep \r\n as written
                    text = f.read()
            except UnicodeDecodeError as e:
                fail(f"{path}: not UTF-8 text: {e}")
            yield text


def check_inputs(paths):
    for path in paths:
        if not (path.endswith(".txt") or path.endswith(".jsonl")):
            fail(f"{path}: unknown input type, expected a .txt or .jsonl file")
        if not os.path.exists(path):
            fail(f"{path}: no such input file")
        if not os.path.isfile(path):
            fail(f"{path}: not a regular file, expected a .txt or .jsonl file")
        if not os.access(path, os.R_OK):
            fail(f"{path}: not readable")


def check_output(out_dir):
    """--output must be a folder (or creatable as one) we can write into."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        fail(f"{out_dir}: exists and is not a folder; --output names the folder for the shards")
    parent = out_dir
    while not os.path.exists(parent):
        parent = os.path.dirname(os.path.abspath(parent))
    if not os.path.isdir(parent):
        fail(f"{out_dir}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{out_dir}: cannot write into {parent}")


def batches(docs):
    """Lists of documents, bounded in count and characters, for encode_batch."""
    batch, chars = [], 0
    for d in docs:
        batch.append(d)
        chars += len(d)
        if len(batch) >= ENCODE_BATCH_DOCS or chars >= ENCODE_BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def write_shard(path, tokens, vocab_size, width):
    """One shard: header (shard.h) then tokens, little-endian; temporary file, fsync, rename."""
    if sys.byteorder != "little":
        tokens = array.array(tokens.typecode, tokens)
        tokens.byteswap()
    header = (MAGIC + VERSION.to_bytes(4, "little") + width.to_bytes(4, "little")
              + len(tokens).to_bytes(8, "little") + vocab_size.to_bytes(8, "little"))
    assert len(header) == HEADER_BYTES
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header)
        tokens.tofile(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ShardWriter:
    """Cuts one token stream (train or val) into shards of shard_tokens tokens."""

    def __init__(self, out_dir, prefix, vocab_size, shard_tokens):
        self.out_dir, self.prefix = out_dir, prefix
        self.vocab_size, self.shard_tokens = vocab_size, shard_tokens
        self.width = 2 if vocab_size <= 65536 else 4
        self.typecode = "H" if self.width == 2 else "I"
        assert array.array(self.typecode).itemsize == self.width
        self.buf = array.array(self.typecode)
        self.paths = []
        self.total = 0

    def add(self, ids):
        self.buf.extend(ids)
        self.total += len(ids)
        while len(self.buf) >= self.shard_tokens:
            self._flush(self.buf[: self.shard_tokens])
            del self.buf[: self.shard_tokens]

    def finish(self):
        if len(self.buf) > 0:
            self._flush(self.buf)
        self.buf = array.array(self.typecode)

    def _flush(self, tokens):
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self.prefix}_{len(self.paths):06d}.tok")
        write_shard(path, tokens, self.vocab_size, self.width)
        self.paths.append(path)


def old_shards(out_dir):
    return sorted(n for n in os.listdir(out_dir)
                  if (n.startswith("train_") or n.startswith("val_")) and n.endswith(".tok"))


def prepare_output(out_dir, overwrite):
    """Refuses old shards without --overwrite; returns the staging folder, made (with --output)
    only when the first shard is written."""
    old = old_shards(out_dir) if os.path.isdir(out_dir) else []
    if old and not overwrite:
        fail(f"{out_dir}: already holds shards ({old[0]} ...); "
             "pass --overwrite or choose another folder")
    return os.path.join(out_dir, f".prepare-{os.getpid()}")


def publish(out_dir, staging, streams):
    """Removes the old shards (--overwrite), moves the new ones into place, syncs the folder."""
    for n in old_shards(out_dir):
        os.remove(os.path.join(out_dir, n))
    for s in streams.values():
        for i, p in enumerate(s.paths):
            final = os.path.join(out_dir, os.path.basename(p))
            os.replace(p, final)
            s.paths[i] = final
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_val(i, f):
    return int((i + 1) * f) > int(i * f)


class Progress:
    """A line on stderr at most every 2 seconds, and a final one."""

    def __init__(self):
        self.t0 = self.last = time.time()

    def report(self, docs, tokens, final=False):
        now = time.time()
        if not final and now - self.last < 2.0:
            return
        self.last = now
        rate = tokens / max(now - self.t0, 1e-9)
        done = " (done)" if final else ""
        print(f"prepare: {docs} documents, {tokens} tokens, {rate:,.0f} tokens/s{done}",
              file=sys.stderr, flush=True)


def main(argv):
    a = parse_args(argv)
    check_inputs(a.input)
    check_output(a.output)
    tok = load_tokenizer(a.tokenizer)
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    if vocab_size < 1 or vocab_size > 1 << 32:
        fail(f"{a.tokenizer}: vocabulary size {vocab_size}, expected 1 .. 2^32")
    bos, bos_name = special_id(tok, a.tokenizer, a.bos_token, "bos_token", BOS_NAMES, "bos")
    eos, eos_name = special_id(tok, a.tokenizer, a.eos_token, "eos_token", EOS_NAMES, "eos")
    if not a.append_eos:
        eos = None
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True  # a literal "<s>" in a document is text, not a separator
    else:
        print("prepare: warning: this tokenizers version splits special-token text out of documents",
              file=sys.stderr)
    print(f"prepare: vocabulary {vocab_size}, BOS {bos_name!r} ({bos}) "
          f"{'before each document' if bos is not None else 'absent'}, EOS "
          f"{repr(eos_name) + ' after each document' if eos is not None else 'not appended'}",
          file=sys.stderr)
    if bos is None and eos is None:
        print("prepare: warning: documents are concatenated without any separator", file=sys.stderr)
    staging = prepare_output(a.output, a.overwrite)
    try:
        streams = tokenize(a, tok, bos, eos, vocab_size, staging)
        publish(a.output, staging, streams)
    except OSError as e:
        fail(f"{e.filename or a.output}: {e.strerror or e} (writing the shards; --output is as it was)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name, s in streams.items():
        print(f"prepare: {name}: {s.total} tokens in {len(s.paths)} shard(s)", file=sys.stderr)
    # The config lines to paste (stdout, so it can be redirected); with EOS after every document,
    # data.eod_token too, which turns on document masking (docs/DATA.md).
    data = {"source": "shards", "train_files": streams["train"].paths,
            "val_files": streams["val"].paths}
    if eos is not None:
        data["eod_token"] = eos
    print(json.dumps({"data": data}, indent=2))


def tokenize(a, tok, bos, eos, vocab_size, staging):
    """Every document into the train / val shard writers (in the staging folder)."""
    streams = {s: ShardWriter(staging, s, vocab_size, a.shard_tokens) for s in ("train", "val")}
    progress, n_docs, empty = Progress(), 0, 0
    for batch in batches(documents(a.input, a.jsonl_key)):
        for enc in tok.encode_batch(batch, add_special_tokens=False):
            if not enc.ids:  # an empty document: no separators of its own either
                empty += 1
                continue
            ids = ([bos] if bos is not None else []) + enc.ids + ([eos] if eos is not None else [])
            streams["val" if is_val(n_docs, a.val_fraction) else "train"].add(ids)
            n_docs += 1
        progress.report(n_docs, streams["train"].total + streams["val"].total)
    if streams["train"].total == 0:
        fail(f"no text in {len(a.input)} input file(s) ({empty} empty document(s)): nothing to "
             "write")
    for s in streams.values():
        s.finish()
    progress.report(n_docs, streams["train"].total + streams["val"].total, final=True)
    if empty:
        print(f"prepare: skipped {empty} empty document(s)", file=sys.stderr)
    return streams


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the cleanup of the staging folder


def run(argv):
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        main(argv)
    except KeyboardInterrupt:
        print("prepare: interrupted; --output is as it was", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        where = e.filename if e.filename else "prepare"
        fail(f"{where}: {e.strerror or e}")
    except MemoryError:
        fail("out of memory (a single .txt input is read whole: split it, or use .jsonl)")


if __name__ == "__main__":
    run(sys.argv[1:])
