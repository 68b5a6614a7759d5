"""Writes tests/fixtures/safetensors/small.safetensors and its expected values (small.expected.json).

The Python `safetensors` package is not installable here, so the file is written with torch + struct
directly from the format spec (huggingface/safetensors README): u64 LE header length, JSON header
(compact, like the Rust serializer, padded with spaces to an 8-byte boundary), contiguous data.
Tensor data comes from torch so the bytes are an independent producer of each dtype's encoding.
Run: /usr/bin/python3 scripts/dev/make_safetensors_fixture.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "safetensors")

torch.manual_seed(1234)
tensors = {
    # Deliberately not in alphabetical order in the data section (the Rust writer sorts by dtype
    # alignment then name); offsets in the header are what matter.
    "model.layers.0.self_attn.q_proj.weight": torch.randn(4, 3, dtype=torch.float32),
    "half": torch.randn(2, 5).to(torch.float16),
    "brain": torch.randn(3).to(torch.bfloat16),
    "double": torch.randn(2, 2, dtype=torch.float64),
    "ids": torch.arange(-3, 3, dtype=torch.int64),
    "flags": torch.tensor([1, 0, 1], dtype=torch.uint8),
    "scalar": torch.tensor(3.5, dtype=torch.float32),
    "empty": torch.zeros(0, 4, dtype=torch.float32),
}
DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.uint8: "U8",
}


def raw(t: torch.Tensor) -> bytes:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()  # little-endian on every machine we run on


header = {"__metadata__": {"format": "pt", "producer": "make_safetensors_fixture.py"}}
data = b""
for name, t in tensors.items():
    b = raw(t)
    header[name] = {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(b)]}
    data += b
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
with open(os.path.join(OUT, "small.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)

expected = {
    name: {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "values": [float(v) for v in t.flatten().to(torch.float64).tolist()]}
    for name, t in tensors.items()
}
with open(os.path.join(OUT, "small.expected.json"), "w") as f:
    json.dump({"metadata": header["__metadata__"], "tensors": expected}, f, indent=1)
print("wrote", OUT)
