#!/usr/bin/env python3
"""text_corpus.py: real text built offline, as long documents, for data/prepare.py.

    python3 data/text_corpus.py ROOT... --output corpus.jsonl [--ext .py .h ...]
        [--exclude NAME ...] [--doc-chars 400000] [--max-chars N]

Walks each ROOT (sorted, so the output is the same on every run over the same files) and writes
one JSONL document per folder: the folder's files with one of the extensions (non-recursive), in
name order, each after a header line `# file: PATH` (PATH relative to its ROOT). A folder whose
files pass --doc-chars characters goes on in a next document (a file is never split; a single
file longer than --doc-chars is a document of its own). Repository-level concatenation of this
kind is how long-context training data is commonly made from code: a folder of a library is one
long document with real long-range references (imports, names defined files earlier).

Folders named by --exclude (any path component) are skipped, and so are files that are not UTF-8
text. --max-chars stops after that many characters in all (0: no limit). Prints one line on
stderr: documents, files, characters. Errors (a missing ROOT, an unwritable output, no text at
all) print one line and exit with code 2.

Then: python3 data/prepare.py --tokenizer TOKENIZER.json --input corpus.jsonl --output DIR
          --append-eos ... (docs/DATA.md, "Real text built offline").
"""
import argparse
import json
import os
import sys


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Folders of text files -> JSONL documents.")
    p.add_argument("roots", nargs="+", help="folders to walk")
    p.add_argument("--output", required=True, help="JSONL file to write")
    p.add_argument("--ext", nargs="+", default=[".py"], help="file name endings to take")
    p.add_argument("--exclude", nargs="*", default=[], help="folder names to skip")
    p.add_argument("--doc-chars", type=int, default=400_000, help="characters per document (about)")
    p.add_argument("--max-chars", type=int, default=0, help="stop after this many characters (0: all)")
    a = p.parse_args(argv)
    if a.doc_chars < 1 or a.max_chars < 0:
        fail("--doc-chars must be >= 1 and --max-chars >= 0")
    for r in a.roots:
        if not os.path.isdir(r):
            fail(f"{r}: not a folder")
    return a


def read_text(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except (UnicodeDecodeError, OSError):
        return None


def folder_documents(root, a):
    """(text, n_files) of each document under root, in a fixed order."""
    skip = set(a.exclude)
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        parts, size, count = [], 0, 0
        for name in sorted(files):
            if not name.endswith(tuple(a.ext)):
                continue
            path = os.path.join(here, name)
            text = read_text(path) if os.path.isfile(path) else None
            if not text:
                continue
            piece = f"# file: {os.path.relpath(path, root)}\n{text}"
            if parts and size + len(piece) > a.doc_chars:
                yield "".join(parts), count
                parts, size, count = [], 0, 0
            parts.append(piece if piece.endswith("\n") else piece + "\n")
            size += len(piece)
            count += 1
        if parts:
            yield "".join(parts), count


def main(argv):
    a = parse_args(argv)
    docs = files = chars = 0
    tmp = f"{a.output}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for root in a.roots:
                for text, n in folder_documents(root, a):
                    if a.max_chars and chars >= a.max_chars:
                        break
                    out.write(json.dumps({"text": text}) + "\n")
                    docs, files, chars = docs + 1, files + n, chars + len(text)
        if docs == 0:
            os.remove(tmp)
            fail(f"no {' '.join(a.ext)} text under {' '.join(a.roots)}")
        os.replace(tmp, a.output)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"{e.filename or a.output}: {e.strerror or e}")
    print(f"text_corpus: {docs} documents, {files} files, {chars} characters -> {a.output}",
          file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
