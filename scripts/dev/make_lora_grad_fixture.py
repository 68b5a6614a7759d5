#!/usr/bin/env python3
"""Independent LoRA gradients for stories260K, computed with PyTorch autograd (float64).

Dev-only: /usr/bin/python3 scripts/dev/make_lora_grad_fixture.py
Writes tests/fixtures/stories260K_lora_grads.{json,bin}; the tests read them (CI needs no torch).

LoRA on every block linear (all-linear), r=2, alpha=4 (scale 2), no dropout, A and B initialised
non-zero by a closed formula (so no gradient is trivially zero) that the test reproduces:
  A[i] = 0.05*sin(0.7*i + 1.3*layer + 0.31*m),  B[i] = 0.05*cos(0.5*i + 0.9*layer + 0.17*m)
where m is the module's index in MODULES and i the flat index; B rows are in GGUF (adjacent
pair) order, the order our model uses, and go through the same q/k unpermute as the weights.
Loss: mean cross-entropy over targets != -100 of a fixed batch (B=2, T=16).
"""
import json, os, struct, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_logits_fixture import read_gguf, unpermute, rotate_half, GGUF, ROOT  # noqa: E402

MODULES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
R, ALPHA = 2, 4.0
SCALE = ALPHA / R

def init(n, layer, m, kind):
    i = torch.arange(n, dtype=torch.float64)
    if kind == "A":
        return 0.05 * torch.sin(0.7 * i + 1.3 * layer + 0.31 * m)
    return 0.05 * torch.cos(0.5 * i + 0.9 * layer + 0.17 * m)

meta, W = read_gguf(GGUF)
a = "llama."
dim = meta[a + "embedding_length"]; nl = meta[a + "block_count"]
nh = meta[a + "attention.head_count"]; nkv = meta[a + "attention.head_count_kv"]
eps = meta[a + "attention.layer_norm_rms_epsilon"]; base = meta.get(a + "rope.freq_base", 10000.0)
hd = dim // nh
lora = {}
for l in range(nl):
    for m, mod in enumerate(MODULES):
        out_f, in_f = W[f"blk.{l}.{mod}.weight"].shape
        A = init(R * in_f, l, m, "A").reshape(R, in_f).requires_grad_(True)
        B = init(out_f * R, l, m, "B").reshape(out_f, R).requires_grad_(True)
        lora[(l, mod)] = (A, B)

def eff(l, mod):
    A, B = lora[(l, mod)]
    w = W[f"blk.{l}.{mod}.weight"] + SCALE * (B @ A)
    if mod == "attn_q": w = unpermute(w, nh)
    if mod == "attn_k": w = unpermute(w, nkv)
    return w

g = torch.Generator().manual_seed(11)
Bsz, T = 2, 16
ids = torch.randint(3, 512, (Bsz, T + 1), generator=g)
ids[:, 0] = 1
inputs, targets = ids[:, :-1].clone(), ids[:, 1:].clone()
targets[0, :3] = -100  # masked positions (e.g. a prompt) carry no loss
targets[1, 10] = -100

inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
emb = torch.cat((freqs, freqs), dim=-1)
cos, sin = emb.cos(), emb.sin()
def norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

x = W["token_embd.weight"][inputs]  # [B, T, dim]
for l in range(nl):
    p = f"blk.{l}."
    h = norm(x, W[p + "attn_norm.weight"])
    q = (h @ eff(l, "attn_q").T).view(Bsz, T, nh, hd).transpose(1, 2)
    k = (h @ eff(l, "attn_k").T).view(Bsz, T, nkv, hd).transpose(1, 2)
    v = (h @ eff(l, "attn_v").T).view(Bsz, T, nkv, hd).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(nh // nkv, dim=1); v = v.repeat_interleave(nh // nkv, dim=1)
    s = (q @ k.transpose(-1, -2)) / hd ** 0.5
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bsz, T, dim)
    x = x + att @ eff(l, "attn_output").T
    h = norm(x, W[p + "ffn_norm.weight"])
    x = x + (torch.nn.functional.silu(h @ eff(l, "ffn_gate").T) * (h @ eff(l, "ffn_up").T)) @ eff(l, "ffn_down").T
x = norm(x, W["output_norm.weight"])
logits = x @ W.get("output.weight", W["token_embd.weight"]).T
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
loss.backward()

entries, blob = [], bytearray()
for (l, mod), (A, B) in lora.items():
    for part, t in (("A", A), ("B", B)):
        entries.append({"layer": l, "module": mod, "part": part, "shape": list(t.shape), "offset": len(blob) // 4})
        blob += struct.pack(f"<{t.numel()}f", *t.grad.reshape(-1).tolist())
dst = os.path.join(ROOT, "tests", "fixtures", "stories260K_lora_grads")
json.dump({"source": "scripts/dev/make_lora_grad_fixture.py (PyTorch float64 autograd)", "r": R, "lora_alpha": ALPHA,
           "modules": MODULES, "inputs": inputs.tolist(), "targets": targets.tolist(), "loss": loss.item(), "grads": entries},
          open(dst + ".json", "w"))
open(dst + ".bin", "wb").write(bytes(blob))
print("loss", loss.item(), "wrote", len(blob), "bytes of gradients")
