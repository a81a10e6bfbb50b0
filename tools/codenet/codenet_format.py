"""The project's CoDeNet model format: <name>.json (architecture, see
codenet_arch.py and tools/codenet/README.md) + a safetensors weights file.

safetensors (written here without the safetensors package): 8-byte
little-endian header length N, N bytes of JSON header
{name: {"dtype": "F32"|"I32"|"I8", "shape": [...], "data_offsets": [begin, end]},
 "__metadata__": {str: str}}, padded with spaces to a multiple of 8, then the
raw little-endian data; offsets are relative to the start of the data.
Tensors are written in sorted name order, contiguous and non-overlapping.
"""
import json
import os
import struct

import numpy as np
import torch

import codenet_arch as ca

DT = {"F32": np.float32, "I32": np.int32, "I8": np.int8}
NP2DT = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.int8): "I8"}


def write_safetensors(path, tensors, metadata=None):
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name]
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        a = np.ascontiguousarray(a)
        dt = NP2DT[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data[base + b:base + en], dtype=DT[e["dtype"]]).reshape(e["shape"]).copy())
    return out


def save_model(json_path, arch_json, tensors):
    """Writes <json_path> and the weights file named by arch_json["weights"]
    (relative to the JSON file's directory)."""
    ca.check_arch(arch_json)
    d = os.path.dirname(os.path.abspath(json_path))
    write_safetensors(os.path.join(d, arch_json["weights"]), tensors,
                      {"format": "codenet", "quantization": arch_json["quantization"]})
    with open(json_path, "w") as f:
        json.dump(arch_json, f, indent=1)
        f.write("\n")


def load_model(json_path):
    aj = ca.load_arch(json_path)
    A = ca.check_arch(aj)
    d = os.path.dirname(os.path.abspath(json_path))
    return aj, A, read_safetensors(os.path.join(d, aj["weights"]))
