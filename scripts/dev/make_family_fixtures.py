#!/usr/bin/env python3
"""Independent reference logits for the tiny random-weight model of each family, in PyTorch (float64).

Dev-only: run with Debian's python3 + python3-torch:
    /usr/bin/python3 scripts/dev/make_family_fixtures.py
It reads tests/fixtures/families/specs.json and writes tests/fixtures/families/<name>.logits.bin
(f32 logits [T, vocab] of each prompt, concatenated), which tests/model/families.test.ts reads.

Independence: the weights are generated here from the same integer hash as
bench/lib/random_family.ts (no weights are shared or committed), in Hugging Face's layout and
names, and the forward pass is written from transformers' modeling code of each family:
  llama   LlamaForCausalLM: rotate_half RoPE, repeat_kv GQA, causal softmax attention, SiLU MLP;
          rope_scaling type llama3 as transformers' _compute_llama3_parameters rescales inv_freq
  mistral MistralForCausalLM: the llama block with the sliding-window causal mask
          (key j is masked for query i when i - j >= sliding_window)
  qwen2   Qwen2ForCausalLM: the llama block with q/k/v biases (bias=True on q_proj/k_proj/v_proj)
  phi3    Phi3ForCausalLM: qkv_proj split [q | k | v], partial rotary (the first
          int(head_dim * partial_rotary_factor) dims rotate), gate_up_proj chunked (gate, up),
          sliding-window mask
"""
import json, math, os, struct
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIR = os.path.join(ROOT, "tests", "fixtures", "families")
M32 = 0xFFFFFFFF


def fnv1a(s):
    h = 0x811C9DC5
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & M32
    return h


def mix32(x):
    x = (x ^ (x >> 16)) & M32
    x = (x * 0x7FEB352D) & M32
    x = (x ^ (x >> 15)) & M32
    x = (x * 0x846CA68B) & M32
    return (x ^ (x >> 16)) & M32


def hash_tensor(seed, name, shape, scale, offset):
    h = fnv1a(f"{seed}:{name}")
    n = 1
    for d in shape:
        n *= d
    vals = []
    for i in range(n):
        x = mix32((h ^ (((i + 1) * 0x9E3779B1) & M32)) & M32)
        vals.append(offset + scale * (((x >> 8) / 16777216) * 2 - 1))
    # rounded to f32 like the TypeScript Float32Array, then computed in f64
    return torch.tensor(vals, dtype=torch.float32).reshape(shape).double()


def value_range(name):
    if name.endswith("norm.weight"):
        return 0.25, 1.0
    if name.endswith(".bias"):
        return 0.5, 0.0
    if name == "model.embed_tokens.weight":
        return 1.0, 0.0
    return 0.25, 0.0


def hf_tensors(s):
    hd = s["dim"] // s["nHeads"]
    q, kv = s["nHeads"] * hd, s["nKvHeads"] * hd
    shapes = [("model.embed_tokens.weight", [s["vocab"], s["dim"]])]
    for l in range(s["nLayers"]):
        p = f"model.layers.{l}."
        shapes += [(p + "input_layernorm.weight", [s["dim"]]), (p + "post_attention_layernorm.weight", [s["dim"]])]
        if s["family"] == "phi3":
            shapes += [(p + "self_attn.qkv_proj.weight", [q + 2 * kv, s["dim"]]), (p + "mlp.gate_up_proj.weight", [2 * s["hiddenDim"], s["dim"]])]
        else:
            shapes += [(p + "self_attn.q_proj.weight", [q, s["dim"]]), (p + "self_attn.k_proj.weight", [kv, s["dim"]]), (p + "self_attn.v_proj.weight", [kv, s["dim"]])]
            shapes += [(p + "mlp.gate_proj.weight", [s["hiddenDim"], s["dim"]]), (p + "mlp.up_proj.weight", [s["hiddenDim"], s["dim"]])]
            if s["family"] == "qwen2":
                shapes += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]), (p + "self_attn.v_proj.bias", [kv])]
        shapes += [(p + "self_attn.o_proj.weight", [s["dim"], q]), (p + "mlp.down_proj.weight", [s["dim"], s["hiddenDim"]])]
    shapes.append(("model.norm.weight", [s["dim"]]))
    if not s["tied"]:
        shapes.append(("lm_head.weight", [s["vocab"], s["dim"]]))
    return {name: hash_tensor(s["seed"], name, shape, *value_range(name)) for name, shape in shapes}


def inv_freq(s):
    rot = s["ropeDim"]
    f = 1.0 / (s["ropeBase"] ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot))
    r = s["llama3"]
    if r is None:
        return f
    # transformers' _compute_llama3_parameters
    factor, low, high, old = r["factor"], r["lowFreqFactor"], r["highFreqFactor"], r["originalMaxPositionEmbeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / f
    llama = torch.where(wavelen > low_wavelen, f / factor, f)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * llama / factor + smooth * llama
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, llama)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def forward(s, W, ids):
    T, nh, nkv = len(ids), s["nHeads"], s["nKvHeads"]
    hd = s["dim"] // nh
    rot, eps, fam = s["ropeDim"], s["normEps"], s["family"]
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq(s))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rope(x):  # [heads, T, hd]: the first `rot` dims rotate (partial rotary), the rest pass
        xr, xp = x[..., :rot], x[..., rot:]
        return torch.cat((xr * cos + rotate_half(xr) * sin, xp), dim=-1)

    def norm(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    masked = j > i
    window = s["slidingWindow"] if fam in ("mistral", "phi3") else 0
    if window:
        masked = masked | (i - j >= window)

    x = W["model.embed_tokens.weight"][torch.tensor(ids)]
    for l in range(s["nLayers"]):
        p = f"model.layers.{l}."
        h = norm(x, W[p + "input_layernorm.weight"])
        if fam == "phi3":
            qkv = h @ W[p + "self_attn.qkv_proj.weight"].T
            q, k, v = qkv[:, : nh * hd], qkv[:, nh * hd : (nh + nkv) * hd], qkv[:, (nh + nkv) * hd :]
        else:
            q = h @ W[p + "self_attn.q_proj.weight"].T
            k = h @ W[p + "self_attn.k_proj.weight"].T
            v = h @ W[p + "self_attn.v_proj.weight"].T
            if fam == "qwen2":
                q, k, v = q + W[p + "self_attn.q_proj.bias"], k + W[p + "self_attn.k_proj.bias"], v + W[p + "self_attn.v_proj.bias"]
        q = rope(q.view(T, nh, hd).transpose(0, 1))
        k = rope(k.view(T, nkv, hd).transpose(0, 1))
        v = v.view(T, nkv, hd).transpose(0, 1)
        k = k.repeat_interleave(nh // nkv, dim=0)
        v = v.repeat_interleave(nh // nkv, dim=0)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(masked, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v
        x = x + att.transpose(0, 1).reshape(T, nh * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = norm(x, W[p + "post_attention_layernorm.weight"])
        if fam == "phi3":
            gate, up = (h @ W[p + "mlp.gate_up_proj.weight"].T).chunk(2, dim=-1)
        else:
            gate, up = h @ W[p + "mlp.gate_proj.weight"].T, h @ W[p + "mlp.up_proj.weight"].T
        x = x + (up * torch.nn.functional.silu(gate)) @ W[p + "mlp.down_proj.weight"].T
    x = norm(x, W["model.norm.weight"])
    head = W["model.embed_tokens.weight"] if s["tied"] else W["lm_head.weight"]
    return x @ head.T


def main():
    specs = json.load(open(os.path.join(DIR, "specs.json")))
    for s in specs["models"]:
        W = hf_tensors(s)
        out = bytearray()
        for ids in specs["prompts"]:
            logits = forward(s, W, ids).float().contiguous()
            out += struct.pack(f"<{logits.numel()}f", *logits.flatten().tolist())
        path = os.path.join(DIR, f"{s['name']}.logits.bin")
        open(path, "wb").write(bytes(out))
        print("wrote", path, len(out), "bytes; torch", torch.__version__)


if __name__ == "__main__":
    main()
