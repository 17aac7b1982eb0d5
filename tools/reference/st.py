"""st.py - read and write safetensors files with numpy only (no safetensors package).

Format: 8-byte little-endian header length N, then N bytes of JSON
{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 "__metadata__": {"key": "string value", ...}}, then the raw little-endian tensor data
(offsets relative to the end of the header). Supported dtypes: F32, F16, BF16 (and, for
reading, F64, I64, I32, U8 so unexpected files still load).

BF16 has no numpy dtype: on reading it is widened to float32 (exact), on writing float32 is
rounded to nearest even and stored as the upper 16 bits.
"""
import json
import os
import struct

import numpy as np

_NP = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
    "BF16": np.dtype("<u2"),
}


def bf16_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """float32 -> uint16 bfloat16 bit patterns, round to nearest even (NaN stays NaN)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("%s: shorter than the 8-byte header length" % path)
        (n,) = struct.unpack("<Q", raw)
        if n > 100 << 20:
            raise ValueError("%s: header length %d is implausible" % (path, n))
        hdr = json.loads(f.read(n).decode("utf-8"))
    meta = hdr.pop("__metadata__", None) or {}
    return hdr, meta, 8 + n


def load(path, keep_bf16_bits=False):
    """Returns ({name: numpy array}, {metadata}). BF16 becomes float32 unless keep_bf16_bits."""
    hdr, meta, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in hdr.items():
        dt = info["dtype"]
        if dt not in _NP:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        b, e = info["data_offsets"]
        shape = tuple(int(s) for s in info["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if e - b != count * _NP[dt].itemsize or e > len(data) or b < 0:
            raise ValueError("%s: tensor %s has bad data_offsets" % (path, name))
        a = np.frombuffer(data, dtype=_NP[dt], count=count, offset=b).reshape(shape).copy()
        if dt == "BF16" and not keep_bf16_bits:
            a = bf16_to_f32(a)
        out[name] = a
    return out, meta


def load_metadata(path):
    return read_header(path)[1]


def save(path, tensors, metadata=None, dtype="F32"):
    """Writes {name: array} (any float/int numpy or torch tensors) as safetensors.

    dtype: "F32", "F16" or "BF16" applies to floating tensors; integer arrays keep their type
    (I64/I32/U8). metadata: {str: str}. As the safetensors library does, the header is padded
    with spaces to a multiple of 8 and the data has no holes: tensors are sorted by element size
    (largest first) then name, so every tensor is aligned to its element size.
    """
    if dtype not in ("F32", "F16", "BF16"):
        raise ValueError("dtype must be F32, F16 or BF16")
    hdr = {}
    blobs = []
    off = 0
    arrays = {}
    for name, a in tensors.items():
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        arrays[name] = np.asarray(a)

    def size_key(name):
        a = arrays[name]
        size = 4 if a.dtype.kind == "f" and dtype == "F32" else 2 if a.dtype.kind == "f" else a.dtype.itemsize
        return (-size, name)

    for name in sorted(arrays, key=size_key):
        a = arrays[name]
        if a.dtype.kind == "f":
            if dtype == "F32":
                raw, dt = a.astype("<f4").tobytes(), "F32"
            elif dtype == "F16":
                raw, dt = a.astype("<f2").tobytes(), "F16"
            else:
                raw, dt = f32_to_bf16(a.astype(np.float32)).astype("<u2").tobytes(), "BF16"
        elif a.dtype == np.int64:
            raw, dt = a.astype("<i8").tobytes(), "I64"
        elif a.dtype == np.int32:
            raw, dt = a.astype("<i4").tobytes(), "I32"
        elif a.dtype == np.uint8:
            raw, dt = a.tobytes(), "U8"
        else:
            raise ValueError("tensor %s: unsupported numpy dtype %s" % (name, a.dtype))
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("metadata must map str to str (%r)" % (k,))
        hdr["__metadata__"] = dict(metadata)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)
