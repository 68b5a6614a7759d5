"""Writes tests/fixtures/safetensors/llamacpp_permute.safetensors: inputs and outputs of llama.cpp's
q/k permutation (convert_hf_to_gguf.py `LlamaModel.permute`, copied verbatim below), for a q-like
[2 heads * 8, 3] matrix and a k-like matrix with fewer kv heads, so our permuteQK / loraBToGguf are
checked against the converter's own formula rather than a re-derivation.
Run: /usr/bin/python3 scripts/dev/make_permute_fixture.py
"""
import json
import os
import struct

import torch


def permute(weights, n_head: int, n_head_kv: int | None):
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


torch.manual_seed(7)
q = torch.randn(16, 3)  # 2 heads, head_dim 8, r = 3 (a lora_B)
k = torch.randn(8, 5)  # 1 kv head of 8 (n_head 2, n_head_kv 1)
mag = torch.randn(16)  # a DoRA magnitude vector of q
tensors = {
    "q_hf": q, "q_gguf": permute(q, 2, 2),
    "k_hf": k, "k_gguf": permute(k, 2, 1),
    "mag_hf": mag, "mag_gguf": permute(mag, 2, 2),
}
header, data = {}, b""
for name, t in tensors.items():
    b = t.contiguous().numpy().astype("<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(b)]}
    data += b
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - (8 + len(h)) % 8) % 8)
out = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "safetensors", "llamacpp_permute.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print("wrote", out)
