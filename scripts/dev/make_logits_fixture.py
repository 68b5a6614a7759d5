#!/usr/bin/env python3
"""Independent reference logits for stories260K, computed with PyTorch (float64).

Dev-only: run with Debian's python3 + python3-torch:
    /usr/bin/python3 scripts/dev/make_logits_fixture.py
It writes tests/fixtures/stories260K_logits.json, which the tests read (CI needs no torch).

Independence: this script parses the GGUF itself, converts q/k rows back to Hugging Face's
rotate-half order (the inverse of llama.cpp's convert permute) and runs the Hugging Face
LlamaForCausalLM math (rotate_half RoPE, repeat_kv GQA, SDPA with causal mask) in torch.
"""
import json, struct, sys, os
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = os.path.join(ROOT, "..", "shared", "models", "stories260K", "stories260K.gguf")

def read_gguf(path):
    b = open(path, "rb").read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos); pos += struct.calcsize("<" + fmt); return v[0]
    def string():
        nonlocal pos
        n = take("Q"); s = b[pos:pos + n].decode("utf-8", "replace"); pos += n; return s
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def value(t):
        if t == 8: return string()
        if t == 9:
            at = take("I"); n = take("Q"); return [value(at) for _ in range(n)]
        return take(scalar[t])
    assert take("I") == 0x46554747
    version = take("I"); nt = take("Q"); nkv = take("Q")
    meta = {}
    for _ in range(nkv):
        k = string(); t = take("I"); meta[k] = value(t)
    infos = []
    for _ in range(nt):
        name = string(); nd = take("I"); dims = [take("Q") for _ in range(nd)]; typ = take("I"); off = take("Q")
        infos.append((name, dims, typ, off))
    align = meta.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    tensors = {}
    for name, dims, typ, off in infos:
        assert typ == 0, "F32 only"
        n = 1
        for d in dims: n *= d
        arr = torch.frombuffer(bytearray(b[start + off:start + off + 4 * n]), dtype=torch.float32).clone()
        tensors[name] = arr.reshape(list(reversed(dims))).double()
    return meta, tensors

def unpermute(w, n_head):
    # inverse of llama.cpp convert_hf_to_gguf.py permute(): GGUF adjacent pairs -> HF halves
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)

def forward(meta, W, ids):
    a = "llama."
    dim = meta[a + "embedding_length"]; nl = meta[a + "block_count"]
    nh = meta[a + "attention.head_count"]; nkv = meta[a + "attention.head_count_kv"]
    eps = meta[a + "attention.layer_norm_rms_epsilon"]; base = meta.get(a + "rope.freq_base", 10000.0)
    hd = dim // nh
    T = len(ids)
    x = W["token_embd.weight"][torch.tensor(ids)]
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    for l in range(nl):
        p = f"blk.{l}."
        h = norm(x, W[p + "attn_norm.weight"])
        q = h @ unpermute(W[p + "attn_q.weight"], nh).T
        k = h @ unpermute(W[p + "attn_k.weight"], nkv).T
        v = h @ W[p + "attn_v.weight"].T
        q = q.view(T, nh, hd).transpose(0, 1); k = k.view(T, nkv, hd).transpose(0, 1); v = v.view(T, nkv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=0); v = v.repeat_interleave(nh // nkv, dim=0)
        scores = (q @ k.transpose(-1, -2)) / hd ** 0.5
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v
        x = x + att.transpose(0, 1).reshape(T, dim) @ W[p + "attn_output.weight"].T
        h = norm(x, W[p + "ffn_norm.weight"])
        g = h @ W[p + "ffn_gate.weight"].T; u = h @ W[p + "ffn_up.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ W[p + "ffn_down.weight"].T
    x = norm(x, W["output_norm.weight"])
    head = W.get("output.weight", W["token_embd.weight"])
    return x @ head.T

def main():
    meta, W = read_gguf(GGUF)
    prompts = [
        [1],
        [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298],
        [1, 300, 45, 500, 12, 77, 260, 399, 2, 101, 102, 17, 511, 0, 260, 261, 262, 263, 264, 265, 266],
    ]
    g = torch.Generator().manual_seed(7)
    prompts.append([1] + torch.randint(3, 512, (60,), generator=g).tolist())
    out = {"source": "scripts/dev/make_logits_fixture.py (PyTorch float64, HF rotate-half llama)", "torch": torch.__version__, "cases": []}
    for ids in prompts:
        logits = forward(meta, W, ids)
        out["cases"].append({"ids": ids, "logits": [[float(f"{v:.9g}") for v in row] for row in logits.tolist()]})
    dst = os.path.join(ROOT, "tests", "fixtures", "stories260K_logits.json")
    json.dump(out, open(dst, "w"))
    print("wrote", dst, os.path.getsize(dst), "bytes")

if __name__ == "__main__":
    main()
