#!/usr/bin/env python3
"""Independent references for the PEFT methods beyond LoRA on stories260K, with PyTorch autograd (float64).

Dev-only: /usr/bin/python3 scripts/dev/make_methods_fixture.py
Writes tests/fixtures/methods/<method>/ for dora, ia3, bitfit and ln_tuning:
  adapter_config.json + adapter_model.safetensors  a PEFT-format adapter (PEFT's key names, HF q/k
                                                   row order, F32), written here from the format spec
  grads.safetensors                                d(loss)/d(param) under the same keys (HF order)
  expected.json                                    the batch, the loss, and logits for one prompt
The tests load each directory with the runtime, compare the logits (1e-4), the loss and every
gradient (1e-4 relative). CI needs no torch.

Independence: the model is the Hugging Face llama math of make_logits_fixture.py (its own GGUF
parser, q/k rows unpermuted to HF order); each method is written from PEFT's layer code:
  DoRA     y = (m / ||W + s B A||_row) (W x + s B A x), the norm detached (PEFT DoraLinearLayer)
  (IA)^3   y = (W x) * l for ordinary targets; y = W (x * l) for feedforward_modules (PEFT ia3.Linear)
  BitFit   y = W x + b (zero-initialised biases added to bias-less llama linears; ours, PEFT has none)
  LN tun.  the RMSNorm weights replaced by trained copies (PEFT LNTuningLayer)
Parameters are set to non-trivial values by closed formulas so no gradient is trivially zero.
"""
import json, math, os, struct, sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_logits_fixture import read_gguf, unpermute, rotate_half, GGUF, ROOT  # noqa: E402

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAME = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
PARENT = {m: ("self_attn" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp") for m in MODULES}
OUT = os.path.join(ROOT, "tests", "fixtures", "methods")

meta, W = read_gguf(GGUF)
a = "llama."
dim = meta[a + "embedding_length"]; nl = meta[a + "block_count"]
nh = meta[a + "attention.head_count"]; nkv = meta[a + "attention.head_count_kv"]
eps = meta[a + "attention.layer_norm_rms_epsilon"]; base = meta.get(a + "rope.freq_base", 10000.0)
hd = dim // nh

def hf_weight(l, mod):
    w = W[f"blk.{l}.{GGUF_NAME[mod]}.weight"]
    if mod == "q_proj": return unpermute(w, nh)
    if mod == "k_proj": return unpermute(w, nkv)
    return w

def wave(n, l, m, f, a, b=0.0):
    i = torch.arange(n, dtype=torch.float64)
    return f(a * i + 1.3 * l + 0.31 * m + b)

def path(l, mod): return f"base_model.model.model.layers.{l}.{PARENT[mod]}.{mod}"
NORM_PATH = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}

# ------------------------------------------------------------------ the methods' parameters

R, ALPHA = 2, 4.0
S = ALPHA / R
IA3_TARGETS, IA3_FF = ["k_proj", "v_proj", "down_proj"], ["down_proj"]

def make_params(method):
    """{peft key: tensor (requires grad)} in HF order."""
    p = {}
    for l in range(nl):
        for m, mod in enumerate(MODULES):
            out_f, in_f = hf_weight(l, mod).shape
            if method == "dora":
                A = 0.05 * wave(R * in_f, l, m, torch.sin, 0.7).reshape(R, in_f)
                B = 0.05 * wave(out_f * R, l, m, torch.cos, 0.5).reshape(out_f, R)
                n0 = torch.linalg.norm(hf_weight(l, mod) + S * (B @ A), dim=1)
                p[path(l, mod) + ".lora_A.weight"] = A
                p[path(l, mod) + ".lora_B.weight"] = B
                p[path(l, mod) + ".lora_magnitude_vector"] = n0 * (1 + 0.1 * wave(out_f, l, m, torch.sin, 0.9))
            elif method == "ia3" and mod in IA3_TARGETS:
                shape = (1, in_f) if mod in IA3_FF else (out_f, 1)
                p[path(l, mod) + ".ia3_l"] = (1 + 0.2 * wave(shape[0] * shape[1], l, m, torch.sin, 0.3)).reshape(shape)
            elif method == "bitfit":
                p[path(l, mod) + ".bias"] = 0.05 * wave(out_f, l, m, torch.cos, 0.7)
        if method == "ln_tuning":
            for j, n in enumerate(["attn_norm", "ffn_norm"]):
                w = W[f"blk.{l}.{n}.weight"]
                p[f"base_model.model.model.layers.{l}.{NORM_PATH[n]}.ln_tuning_layers.weight"] = w * (1 + 0.1 * wave(dim, l, j, torch.sin, 0.4))
    if method == "ln_tuning":
        p["base_model.model.model.norm.ln_tuning_layers.weight"] = W["output_norm.weight"] * (1 + 0.1 * wave(dim, nl, 0, torch.sin, 0.4))
    return {k: v.clone().requires_grad_(True) for k, v in p.items()}

def linear(method, p, l, mod, h):
    Wt = hf_weight(l, mod)
    k = path(l, mod)
    if method == "dora":
        A, B, m = p[k + ".lora_A.weight"], p[k + ".lora_B.weight"], p[k + ".lora_magnitude_vector"]
        n = torch.linalg.norm(Wt + S * (B @ A).detach(), dim=1).detach()
        return (m / n) * (h @ Wt.T + S * ((h @ A.T) @ B.T))
    if method == "ia3" and mod in IA3_TARGETS:
        l_ = p[k + ".ia3_l"]
        return (h * l_.reshape(-1)) @ Wt.T if mod in IA3_FF else (h @ Wt.T) * l_.reshape(-1)
    if method == "bitfit":
        return h @ Wt.T + p[k + ".bias"]
    return h @ Wt.T

def norm_weight(method, p, l, n):
    if method == "ln_tuning":
        key = ("base_model.model.model.norm" if n == "output_norm" else f"base_model.model.model.layers.{l}.{NORM_PATH[n]}") + ".ln_tuning_layers.weight"
        return p[key]
    return W["output_norm.weight"] if n == "output_norm" else W[f"blk.{l}.{n}.weight"]

def forward(method, p, inputs):
    Bsz, T = inputs.shape
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    emb = torch.cat([torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    def norm(x, w): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    x = W["token_embd.weight"][inputs]
    for l in range(nl):
        h = norm(x, norm_weight(method, p, l, "attn_norm"))
        q = linear(method, p, l, "q_proj", h).view(Bsz, T, nh, hd).transpose(1, 2)
        k = linear(method, p, l, "k_proj", h).view(Bsz, T, nkv, hd).transpose(1, 2)
        v = linear(method, p, l, "v_proj", h).view(Bsz, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1); v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / hd ** 0.5
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bsz, T, dim)
        x = x + linear(method, p, l, "o_proj", att)
        h = norm(x, norm_weight(method, p, l, "ffn_norm"))
        x = x + linear(method, p, l, "down_proj", torch.nn.functional.silu(linear(method, p, l, "gate_proj", h)) * linear(method, p, l, "up_proj", h))
    x = norm(x, norm_weight(method, p, nl, "output_norm"))
    return x @ W.get("output.weight", W["token_embd.weight"]).T

# ------------------------------------------------------------------ files

def write_safetensors(dst, tensors):
    header, blob = {}, bytearray()
    for k in sorted(tensors):
        t = tensors[k].detach().to(torch.float32).contiguous()
        data = t.numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(h)) + h + bytes(blob))

COMMON = {"task_type": "CAUSAL_LM", "base_model_name_or_path": "stories260K", "inference_mode": True, "revision": None}
CONFIGS = {
    "dora": {"peft_type": "LORA", "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.0, "target_modules": MODULES, "use_dora": True,
             "use_rslora": False, "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "modules_to_save": None},
    "ia3": {"peft_type": "IA3", "target_modules": IA3_TARGETS, "feedforward_modules": IA3_FF, "init_ia3_weights": True,
            "fan_in_fan_out": False, "modules_to_save": None},
    "bitfit": {"peft_type": "BITFIT", "target_modules": "all-linear", "bias": "all"},
    "ln_tuning": {"peft_type": "LN_TUNING", "target_modules": ["input_layernorm", "post_attention_layernorm", "norm"], "modules_to_save": None},
}

g = torch.Generator().manual_seed(11)
Bsz, T = 2, 16
ids = torch.randint(3, 512, (Bsz, T + 1), generator=g)
ids[:, 0] = 1
inputs, targets = ids[:, :-1].clone(), ids[:, 1:].clone()
targets[0, :3] = -100
targets[1, 10] = -100
prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298]

for method, cfg in CONFIGS.items():
    p = make_params(method)
    logits = forward(method, p, inputs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    with torch.no_grad():
        prompt_logits = forward(method, p, torch.tensor([prompt]))[0]
    d = os.path.join(OUT, method)
    os.makedirs(d, exist_ok=True)
    json.dump({**cfg, **COMMON}, open(os.path.join(d, "adapter_config.json"), "w"), indent=2)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), p)
    write_safetensors(os.path.join(d, "grads.safetensors"), {k: v.grad for k, v in p.items()})
    json.dump({"source": "scripts/dev/make_methods_fixture.py (PyTorch float64 autograd)", "torch": torch.__version__,
               "inputs": inputs.tolist(), "targets": targets.tolist(), "loss": loss.item(), "prompt": prompt,
               "logits": [[float(f"{v:.9g}") for v in row] for row in prompt_logits.tolist()]},
              open(os.path.join(d, "expected.json"), "w"))
    print(method, "loss", loss.item(), "params", sum(v.numel() for v in p.values()))
