#!/usr/bin/env bash
# test_safetensors_py.sh: cross-checks our safetensors reader and writer (src/safetensors*.c) against
# the reference implementation, the Python `safetensors` package (Rust underneath), with numpy.
#
# Usage: tests/test_safetensors_py.sh BUILD_DIR [TRAINER]   (CTest passes both; TRAINER is unused)
#
# The C side is tests/test_safetensors.c's two modes:
#   --write-sample DIR   writes DIR/sample_all.safetensors (every dtype, 0-dim and empty tensors,
#                        metadata), DIR/sample_np.safetensors (the same without BF16 and metadata) and
#                        DIR/<name>.src per tensor: its fp32 source (floats) or raw bytes (ints);
#   --read-check FILE SPEC...   checks FILE holds exactly the SPECs (meta:KEY=VALUE,
#                        tensor:NAME:DTYPE:SHAPE:EXPECTED, SHAPE like 2x3, EXPECTED a file of fp32
#                        values for floats or raw bytes for ints); exit 0 when all hold.
#
# 1. C -> Python: Python opens the samples with safetensors.safe_open and
#    safetensors.numpy.load_file and checks names, dtypes, shapes, metadata and values: F32 and ints
#    byte for byte against the .src files, F16 bit for bit against numpy's float32 -> float16 cast
#    of the source, BF16 against a round-to-nearest-even done here by comparing distances in
#    float64. numpy has no bfloat16, so BF16 tensors are decoded from the raw bytes, located through
#    the header, which is parsed here too; that also checks the writer's layout: H a multiple of 8
#    (JSON padded with spaces), "__metadata__" first, tensors in the order written, contiguous.
# 2. Python -> C: the reference writer (safetensors.numpy.save_file for F32, F16, I64, I32; its
#    low-level serialize_file with raw bfloat16 bytes for BF16) writes files of fresh random values,
#    0-dim and empty tensors and metadata; `test_safetensors --read-check` must accept each and find
#    every name, dtype, shape, metadata entry and value (exact fp32 bits, raw int bytes).
# 3. Hand-made malformed files (overlap, gap, trailing bytes, shape/offsets mismatch, offsets past
#    the end, negative shape, header length past the end): both readers must reject each.
#
# Exit 0 on success, 1 on a mismatch, 77 (skipped) when safetensors/numpy cannot be imported or
# installed.
set -euo pipefail

build=${1:?usage: test_safetensors_py.sh BUILD_DIR [TRAINER]}
exe=$build/tests/test_safetensors
if [ ! -x "$exe" ]; then
    echo "test_safetensors_py: $exe is not built" >&2
    exit 1
fi
if ! python3 -c "import safetensors, numpy" 2>/dev/null; then
    if ! python3 -m pip install --quiet safetensors numpy || ! python3 -c "import safetensors, numpy"; then
        echo "test_safetensors_py: skipped: python3 cannot import or install safetensors and numpy"
        exit 77
    fi
fi

tmp=$(mktemp -d /tmp/infllm_test_safetensors_py_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$exe" --write-sample "$tmp" >/dev/null

python3 - "$exe" "$tmp" <<'PYEOF'
import json, math, os, struct, subprocess, sys
import numpy as np
import safetensors
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

exe, tmp = sys.argv[1], sys.argv[2]
failures, checks = [], 0


def check(ok, msg):
    global checks
    checks += 1
    if not ok:
        failures.append(msg)
        print("FAIL " + msg)
    return ok


NP_DTYPE = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
DTYPE_OF = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.int32: "I32"}

# What test_safetensors --write-sample writes: name, dtype, shape, in the order written.
SAMPLE = [("w.f32", "F32", [3, 4, 5]), ("w.f16", "F16", [129]), ("ids.i64", "I64", [2, 3]),
          ("ids.i32", "I32", [5]), ("scalar", "F32", []), ("empty", "F16", [0, 3]),
          ("w.bf16", "BF16", [7, 9])]
SAMPLE_META = {"format": "pt", "producer": "infllm-train test", "quote": "a \"b\" \\ \u00e9"}


def read_raw(path):
    """Our own parse: header (dict in file order), H, header text, data section bytes."""
    with open(path, "rb") as f:
        blob = f.read()
    (h,) = struct.unpack("<Q", blob[:8])
    text = blob[8:8 + h].decode("utf-8")
    return json.loads(text), h, text, blob[8 + h:]


def tensor_bytes(info, data):
    b, e = info["data_offsets"]
    return data[b:e]


def bf16_round_bits(x):
    """float32 -> bfloat16 bits, nearest with ties to even, chosen by comparing the distances to
    the two neighbours in float64 (not the bit trick of the C code). NaN -> -1 (checked apart)."""
    u = x.view(np.uint32).astype(np.int64)
    out = np.zeros(len(x), dtype=np.int64)
    for j in range(len(x)):
        xv, sign, mag = float(x[j]), int(u[j]) & 0x80000000, int(u[j]) & 0x7FFFFFFF
        lo = mag >> 16
        if math.isnan(xv):
            out[j] = -1
            continue
        if math.isinf(xv) or (lo << 16) == mag:
            out[j] = (sign >> 16) | lo
            continue
        vlo = float(np.array([lo << 16], np.uint32).view(np.float32)[0])
        vhi = 2.0 ** 128 if lo + 1 == 0x7F80 else float(np.array([(lo + 1) << 16], np.uint32).view(np.float32)[0])
        a = abs(xv)
        dlo, dhi = a - vlo, vhi - a
        pick = lo if dlo < dhi else lo + 1 if dhi < dlo else (lo if lo % 2 == 0 else lo + 1)
        out[j] = (sign >> 16) | pick
    return out


def expected_stored(dt, src_bytes):
    """(bits the file must hold, NaN mask) for a float tensor from its fp32 source."""
    src = np.frombuffer(src_bytes, dtype="<f4").astype(np.float32)
    nan = np.isnan(src)
    if dt == "F32":
        return src.view(np.uint32).astype(np.int64), nan
    if dt == "F16":
        with np.errstate(over="ignore", invalid="ignore"):
            return src.astype(np.float16).view(np.uint16).astype(np.int64), nan
    return bf16_round_bits(src), nan


def stored_bits(dt, raw):
    return np.frombuffer(raw, dtype="<u4" if dt == "F32" else "<u2").astype(np.int64)


def is_nan_bits(dt, bits):
    if dt == "F32":
        return ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x7FFFFF) != 0)
    if dt == "F16":
        return ((bits & 0x7C00) == 0x7C00) & ((bits & 0x3FF) != 0)
    return ((bits & 0x7F80) == 0x7F80) & ((bits & 0x7F) != 0)


# ------------------------------------------------------------------------------------------------
# 1. C -> Python

def check_c_file(fname, sample, meta):
    path = os.path.join(tmp, fname)
    if not check(os.path.exists(path), "%s was not written by --write-sample" % fname):
        return
    header, hlen, text, data = read_raw(path)
    names = [k for k in header if k != "__metadata__"]
    check(hlen % 8 == 0 and text.rstrip(" ").endswith("}") and len(text) - len(text.rstrip(" ")) < 8,
          "%s: H %d is a multiple of 8, the JSON padded with fewer than 8 spaces" % (fname, hlen))
    if meta:
        check(list(header)[0] == "__metadata__", "%s: __metadata__ comes first" % fname)
    check(names == [n for n, _, _ in sample], "%s: tensors in the order written: %s" % (fname, names))
    end = 0
    for n in names:
        check(header[n]["data_offsets"][0] == end, "%s: %s starts where the previous ended" % (fname, n))
        end = header[n]["data_offsets"][1]
    check(end == len(data), "%s: the tensors end at the end of the file" % fname)

    with safe_open(path, framework="numpy") as f:
        check((f.metadata() or {}) == meta, "%s: safe_open metadata %r" % (fname, f.metadata()))
        check(sorted(f.keys()) == sorted(names), "%s: safe_open keys" % fname)
        for name, dt, shape in sample:
            if name not in header:
                continue
            sl = f.get_slice(name)
            check(sl.get_dtype() == dt and list(sl.get_shape()) == shape,
                  "%s/%s: safe_open says %s %s, want %s %s" % (fname, name, sl.get_dtype(), sl.get_shape(), dt, shape))
            raw = tensor_bytes(header[name], data)
            check(len(raw) == int(np.prod(shape, dtype=np.int64)) * (2 if dt in ("F16", "BF16") else 4 if dt in ("F32", "I32") else 8),
                  "%s/%s: %d bytes" % (fname, name, len(raw)))
            with open(os.path.join(tmp, name + ".src"), "rb") as fh:
                src = fh.read()
            if dt in ("I64", "I32"):
                check(raw == src, "%s/%s: raw bytes differ from the source" % (fname, name))
            else:
                got, (want, nan) = stored_bits(dt, raw), expected_stored(dt, src)
                bad = int(np.sum(got[~nan] != want[~nan]))
                check(bad == 0 and bool(np.all(is_nan_bits(dt, got[nan]))),
                      "%s/%s: %d of %d values round differently from the Python reference" % (fname, name, bad, len(got)))
            if dt != "BF16":
                t = f.get_tensor(name)
                check(t.dtype == NP_DTYPE[dt] and list(t.shape) == shape and t.tobytes() == raw,
                      "%s/%s: get_tensor gives %s %s and other bytes" % (fname, name, t.dtype, t.shape))
    try:
        loaded = load_file(path)
        check(sorted(loaded) == sorted(names), "%s: load_file keys" % fname)
        print("C -> Python: %s: load_file read all %d tensors" % (fname, len(loaded)))
    except Exception as exc:
        has_bf16 = any(header[n]["dtype"] == "BF16" for n in names)
        check(has_bf16, "%s: load_file failed without BF16: %s" % (fname, exc))
        print("C -> Python: %s: load_file: %s (numpy has no bfloat16; BF16 read from raw bytes)" % (fname, exc))
    print("C -> Python: %s: %d tensors checked" % (fname, len(names)))


check_c_file("sample_all.safetensors", SAMPLE, SAMPLE_META)
check_c_file("sample_np.safetensors", [s for s in SAMPLE if s[1] != "BF16"], {})

# ------------------------------------------------------------------------------------------------
# 2. Python -> C

seed = int.from_bytes(os.urandom(4), "little")
print("Python -> C: seed %d" % seed)
rng = np.random.default_rng(seed)


def spread(shape):
    """float32 values over many binades: f16 subnormals and values past 65504 included."""
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-26, 18, size=shape))
    return x.astype(np.float32)


def to_f16(x):
    with np.errstate(over="ignore"):  # past 65504 becomes inf, as intended
        return x.astype(np.float16)


def write_bf16(path, tensors, metadata):
    """BF16 through the reference's low-level writer: raw bfloat16 bits, dtype name 'bfloat16'."""
    from safetensors import _safetensors_rust as rs
    keep, spec = [], {}
    for name, bits in tensors.items():
        a = np.ascontiguousarray(bits.astype("<u2"))
        keep.append(a)
        if hasattr(rs, "TensorSpec"):
            spec[name] = rs.TensorSpec(dtype="bfloat16", shape=list(bits.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
        else:
            spec[name] = {"dtype": "bfloat16", "shape": list(bits.shape), "data": a.tobytes()}
    rs.serialize_file(spec, path, metadata=metadata)


def read_check(path, specs):
    p = subprocess.run([exe, "--read-check", path] + specs, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


def spec_args(fname, tensors, meta):
    """--read-check SPECs; expected values go to files: fp32 values (floats), raw bytes (ints)."""
    args = ["meta:%s=%s" % kv for kv in (meta or {}).items()]
    for i, (name, (dt, arr)) in enumerate(tensors.items()):
        exp = os.path.join(tmp, "%s.%d.expected" % (fname, i))
        if dt == "BF16":
            vals = (arr.astype(np.uint32) << 16).view(np.float32)
        elif dt in ("F32", "F16"):
            vals = arr.astype(np.float32)
        else:
            vals = arr
        with open(exp, "wb") as fh:
            fh.write(np.ascontiguousarray(vals).astype(vals.dtype.newbyteorder("<")).tobytes())
        args.append("tensor:%s:%s:%s:%s" % (name, dt, "x".join(str(d) for d in arr.shape), exp))
    return args


py_meta = {"format": "np", "source": "python \u2713"}
files = {
    "py_mixed.safetensors": {
        "model.embed_tokens.weight": spread((37, 19)),
        "model.norm.weight": spread((19,)),
        "scalar_f32": np.array(rng.standard_normal(), dtype=np.float32),
        "half.3d": to_f16(spread((3, 5, 7))),
        "half.scalar": np.array(1.5, dtype=np.float16),
        "empty_f32": np.zeros((4, 0), dtype=np.float32),
        "empty_i64": np.zeros((0,), dtype=np.int64),
        "step": np.array(rng.integers(-2**62, 2**62), dtype=np.int64),
        "ids": rng.integers(-2**31, 2**31, size=(5, 3)).astype(np.int32),
        "longs": rng.integers(-2**62, 2**62, size=(11,)).astype(np.int64),
    },
    "py_f16_only.safetensors": {"w%d" % i: to_f16(spread((i + 1, 2 * i + 3))) for i in range(6)},
}
bf16 = {name: (spread(shape).view(np.uint32) >> 16).astype(np.uint16).reshape(shape)
        for name, shape in {"b.2d": (6, 9), "b.scalar": (), "b.empty": (0, 4), "b.1d": (131,)}.items()}
jobs = []
for fname, tensors in files.items():
    save_file(tensors, os.path.join(tmp, fname), metadata=py_meta)
    jobs.append((fname, {n: (DTYPE_OF[a.dtype.type], a) for n, a in tensors.items()}, py_meta))
write_bf16(os.path.join(tmp, "py_bf16.safetensors"), bf16, {"format": "pt"})
jobs.append(("py_bf16.safetensors", {n: ("BF16", a) for n, a in bf16.items()}, {"format": "pt"}))
for fname, tensors, meta in jobs:
    rc, out = read_check(os.path.join(tmp, fname), spec_args(fname, tensors, meta))
    check(rc == 0, "read-check %s (rc %d):\n%s" % (fname, rc, out))
    print("Python -> C: %s: %d tensors; read-check: %s" % (fname, len(tensors), out.splitlines()[-1] if out else ""))

# ------------------------------------------------------------------------------------------------
# 3. Malformed files: both readers must reject each.


def blob(hdr, data_len, hlen=None):
    h = json.dumps(hdr, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + bytes(data_len)


def ent(dt, shape, b, e):
    return {"dtype": dt, "shape": shape, "data_offsets": [b, e]}


bad = {
    "overlap": blob({"a": ent("F32", [4], 0, 16), "b": ent("F32", [2], 8, 16)}, 16),
    "gap": blob({"a": ent("F32", [2], 0, 8), "b": ent("F32", [1], 12, 16)}, 16),
    "trailing": blob({"a": ent("F32", [2], 0, 8)}, 12),
    "mismatch": blob({"a": ent("F32", [2, 3], 0, 20)}, 20),
    "past_end": blob({"a": ent("F32", [2], 8, 16)}, 8),
    "negative_shape": blob({"a": ent("F32", [-1], 0, 0)}, 0),
    "hlen_past_end": blob({"a": ent("F32", [1], 0, 4)}, 4, hlen=1000),
}
for name, b in bad.items():
    p = os.path.join(tmp, "bad_" + name + ".safetensors")
    with open(p, "wb") as fh:
        fh.write(b)
    try:
        with safe_open(p, framework="numpy") as f:
            [f.get_tensor(k) for k in f.keys()]
        ref_rejects = False
    except Exception:
        ref_rejects = True
    rc, out = read_check(p, [])
    check(ref_rejects and rc != 0 and p in out,
          "malformed %s: the reference rejects it: %s; ours: rc %d, %s" % (name, ref_rejects, rc, out))
print("malformed: %d files, both readers reject each" % len(bad))

print("test_safetensors_py: safetensors %s, numpy %s: %s" % (
    safetensors.__version__, np.__version__,
    "all %d checks passed" % checks if not failures else "%d of %d checks FAILED" % (len(failures), checks)))
sys.exit(1 if failures else 0)
PYEOF
