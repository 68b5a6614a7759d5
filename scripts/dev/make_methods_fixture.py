#!/usr/bin/env python3
"""Independent references for the PEFT methods beyond LoRA on stories260K, with PyTorch autograd (float64).

Dev-only: /usr/bin/python3 scripts/dev/make_methods_fixture.py
Writes tests/fixtures/methods/<method>/ for dora, ia3, bitfit, ln_tuning, prompt_tuning, prefix_tuning and houlsby:
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
  prompt   P learned embeddings before the token embeddings; positions 0..P-1 for them, text after;
           labels -100 on them (PEFT PeftModelForCausalLM.forward + transformers)
  prefix   prefix_projection: Embedding(P, kv_dim) -> Linear -> Tanh -> Linear(L*2*kv_dim), viewed
           (P, L*2, kv_heads, head_dim) as PEFT's get_prompt; keys/values before the text's in every
           layer, never rotated; text positions P.. (transformers' cache_position after a P-long cache)
  houlsby  AdapterHub double_seq_bn on llama: h' = h + up(silu(down(h))) after attention and after the FFN
For prompt and prefix tuning the directory is PEFT's saved form (prompt_embeddings, inference_mode
true) and expected.json also holds 8 greedy ids; prefix tuning's trained tensors (the projection)
are in train_params.safetensors, HF order.
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
        if method == "houlsby":
            for j, branch in enumerate(["attention_adapters", "output_adapters"]):
                pre = f"model.layers.{l}.{branch}.adapters.houlsby."
                d = dim // 16
                p[pre + "adapter_down.0.weight"] = 0.1 * wave(d * dim, l, j, torch.sin, 0.37).reshape(d, dim)
                p[pre + "adapter_down.0.bias"] = 0.05 * wave(d, l, j, torch.cos, 0.3)
                p[pre + "adapter_up.weight"] = 0.1 * wave(dim * d, l, j, torch.cos, 0.23).reshape(dim, d)
                p[pre + "adapter_up.bias"] = 0.05 * wave(dim, l, j, torch.sin, 0.11)
        if method == "ln_tuning":
            for j, n in enumerate(["attn_norm", "ffn_norm"]):
                w = W[f"blk.{l}.{n}.weight"]
                p[f"base_model.model.model.layers.{l}.{NORM_PATH[n]}.ln_tuning_layers.weight"] = w * (1 + 0.1 * wave(dim, l, j, torch.sin, 0.4))
    if method == "ln_tuning":
        p["base_model.model.model.norm.ln_tuning_layers.weight"] = W["output_norm.weight"] * (1 + 0.1 * wave(dim, nl, 0, torch.sin, 0.4))
    if method == "prompt_tuning":
        p["prompt_embeddings"] = 0.5 * wave(NV * dim, 0, 0, torch.sin, 0.13).reshape(NV, dim)
    if method == "prefix_tuning":
        kv = nkv * hd
        p["prompt_encoder.embedding.weight"] = wave(NV * kv, 0, 0, torch.sin, 0.41).reshape(NV, kv)
        p["prompt_encoder.transform.0.weight"] = 0.2 * wave(ENC * kv, 0, 1, torch.cos, 0.29).reshape(ENC, kv)
        p["prompt_encoder.transform.0.bias"] = 0.1 * wave(ENC, 0, 2, torch.sin, 0.7)
        p["prompt_encoder.transform.2.weight"] = 0.3 * wave(nl * 2 * kv * ENC, 0, 3, torch.sin, 0.17).reshape(nl * 2 * kv, ENC)
        p["prompt_encoder.transform.2.bias"] = 0.1 * wave(nl * 2 * kv, 0, 4, torch.cos, 0.53)
    return {k: v.clone().requires_grad_(True) for k, v in p.items()}

NV, ENC = 6, 24  # virtual tokens; prefix projection width

def prefix_kv(p):
    """PEFT's get_prompt: the projected prefix viewed (P, L*2, kv_heads, head_dim) -> per layer (k, v) [kv_heads, P, head_dim]."""
    e = p["prompt_encoder.embedding.weight"]
    x = torch.tanh(e @ p["prompt_encoder.transform.0.weight"].T + p["prompt_encoder.transform.0.bias"])
    pre = x @ p["prompt_encoder.transform.2.weight"].T + p["prompt_encoder.transform.2.bias"]
    return pre, pre.view(NV, nl * 2, nkv, hd).permute(1, 2, 0, 3)

def bottleneck(p, l, branch, h):
    pre = f"model.layers.{l}.{branch}.adapters.houlsby."
    z = torch.nn.functional.silu(h @ p[pre + "adapter_down.0.weight"].T + p[pre + "adapter_down.0.bias"])
    return h + z @ p[pre + "adapter_up.weight"].T + p[pre + "adapter_up.bias"]

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
    x = W["token_embd.weight"][inputs]
    P = NV if method in ("prompt_tuning", "prefix_tuning") else 0
    if method == "prompt_tuning":
        x = torch.cat([p["prompt_embeddings"].unsqueeze(0).expand(Bsz, -1, -1), x], dim=1)
    S = x.shape[1]  # rows through the blocks
    pos0 = P if method == "prefix_tuning" else 0
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    emb = torch.cat([torch.outer(torch.arange(pos0, pos0 + S, dtype=torch.float64), inv_freq)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    if method == "prefix_tuning": _, kvs = prefix_kv(p)
    def norm(x, w): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    for l in range(nl):
        h = norm(x, norm_weight(method, p, l, "attn_norm"))
        q = linear(method, p, l, "q_proj", h).view(Bsz, S, nh, hd).transpose(1, 2)
        k = linear(method, p, l, "k_proj", h).view(Bsz, S, nkv, hd).transpose(1, 2)
        v = linear(method, p, l, "v_proj", h).view(Bsz, S, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        mask = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)
        if method == "prefix_tuning":
            k = torch.cat([kvs[2 * l].unsqueeze(0).expand(Bsz, -1, -1, -1), k], dim=2)
            v = torch.cat([kvs[2 * l + 1].unsqueeze(0).expand(Bsz, -1, -1, -1), v], dim=2)
            mask = torch.cat([torch.zeros(S, NV, dtype=torch.bool), mask], dim=1)
        k = k.repeat_interleave(nh // nkv, dim=1); v = v.repeat_interleave(nh // nkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / hd ** 0.5
        s = s.masked_fill(mask, float("-inf"))
        att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(Bsz, S, dim)
        o = linear(method, p, l, "o_proj", att)
        if method == "houlsby": o = bottleneck(p, l, "attention_adapters", o)
        x = x + o
        h = norm(x, norm_weight(method, p, l, "ffn_norm"))
        f = linear(method, p, l, "down_proj", torch.nn.functional.silu(linear(method, p, l, "gate_proj", h)) * linear(method, p, l, "up_proj", h))
        if method == "houlsby": f = bottleneck(p, l, "output_adapters", f)
        x = x + f
    x = norm(x, norm_weight(method, p, nl, "output_norm"))
    if method == "prompt_tuning": x = x[:, P:]  # the loss and the logits are the text's
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
    "prompt_tuning": {"peft_type": "PROMPT_TUNING", "num_virtual_tokens": NV, "token_dim": dim, "num_transformer_submodules": 1,
                      "num_attention_heads": nh, "num_layers": nl, "prompt_tuning_init": "RANDOM"},
    "prefix_tuning": {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": NV, "token_dim": nkv * hd, "num_transformer_submodules": 1,
                      "num_attention_heads": nkv, "num_layers": nl, "prefix_projection": True, "encoder_hidden_size": ENC},
    "houlsby": None,  # AdapterHub's format, below
}

g = torch.Generator().manual_seed(11)
Bsz, T = 2, 16
ids = torch.randint(3, 512, (Bsz, T + 1), generator=g)
ids[:, 0] = 1
inputs, targets = ids[:, :-1].clone(), ids[:, 1:].clone()
targets[0, :3] = -100
targets[1, 10] = -100
prompt = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298]

def greedy(method, p, ids, n):
    ids = list(ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(forward(method, p, torch.tensor([ids]))[0, -1].argmax()))
    return ids[-n:]

HOULSBY_CONFIG = {"config": {"architecture": "bottleneck", "mh_adapter": True, "output_adapter": True, "reduction_factor": 16,
                             "non_linearity": "swish", "original_ln_before": False, "original_ln_after": True, "residual_before_ln": True,
                             "adapter_residual_before_ln": False, "ln_before": False, "ln_after": False, "init_weights": "bert",
                             "is_parallel": False, "scaling": 1.0, "use_gating": False, "dropout": 0.0, "leave_out": [], "phm_layer": False},
                  "name": "houlsby", "model_type": "llama", "hidden_size": dim, "model_class": "LlamaForCausalLM", "version": "adapters.1.2.0"}

for method, cfg in CONFIGS.items():
    p = make_params(method)
    logits = forward(method, p, inputs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss.backward()
    with torch.no_grad():
        prompt_logits = forward(method, p, torch.tensor([prompt]))[0]
    d = os.path.join(OUT, method)
    os.makedirs(d, exist_ok=True)
    expected = {"source": "scripts/dev/make_methods_fixture.py (PyTorch float64 autograd)", "torch": torch.__version__,
                "inputs": inputs.tolist(), "targets": targets.tolist(), "loss": loss.item(), "prompt": prompt,
                "logits": [[float(f"{v:.9g}") for v in row] for row in prompt_logits.tolist()]}
    if method == "houlsby":
        json.dump(HOULSBY_CONFIG, open(os.path.join(d, "adapter_config.json"), "w"), indent=2)
        write_safetensors(os.path.join(d, "adapter.safetensors"), p)
    elif method == "prefix_tuning":
        # PEFT's saved form: the projected prefix; the projection's tensors for the gradient check.
        json.dump({**cfg, **COMMON}, open(os.path.join(d, "adapter_config.json"), "w"), indent=2)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), {"prompt_embeddings": prefix_kv(p)[0]})
        write_safetensors(os.path.join(d, "train_params.safetensors"), p)
    else:
        json.dump({**cfg, **COMMON}, open(os.path.join(d, "adapter_config.json"), "w"), indent=2)
        write_safetensors(os.path.join(d, "adapter_model.safetensors"), p)
    if method in ("prompt_tuning", "prefix_tuning"): expected["greedy"] = greedy(method, p, prompt, 8)
    write_safetensors(os.path.join(d, "grads.safetensors"), {k: v.grad for k, v in p.items()})
    json.dump(expected, open(os.path.join(d, "expected.json"), "w"))
    print(method, "loss", loss.item(), "params", sum(v.numel() for v in p.values()))
