#!/usr/bin/env python3
"""PyTorch side of bench/train.ts: LoRA training speed of the same llama on the CPU.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/lora_torch.py MODEL.gguf BATCH SEQ STEPS

Loads the GGUF (scripts/dev/make_logits_fixture.py's reader; q/k rows converted back to Hugging
Face's rotate-half order), builds the HF LlamaForCausalLM math in plain torch (float32), adds LoRA
(r=8, alpha=16, no dropout, PEFT init: A kaiming-uniform, B zero) on q_proj and v_proj, freezes the
base, and runs STEPS optimizer steps of forward + backward + grad-norm clip (1.0) + AdamW
(lr 2e-4) on seeded random token ids, each step's batch BATCH x SEQ. Prints one JSON line:
median step time over the steps after the first (warm-up), tokens/s, peak RSS, and the bytes
of parameters / LoRA / gradients / optimizer state.
"""
import json, math, os, resource, sys, time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "dev"))
from make_logits_fixture import read_gguf, unpermute  # noqa: E402


class Lora(torch.nn.Module):
    def __init__(self, w, r, alpha):
        super().__init__()
        self.w = torch.nn.Parameter(w, requires_grad=False)
        out_f, in_f = w.shape
        self.A = torch.nn.Parameter(torch.empty(r, in_f))
        torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = torch.nn.Parameter(torch.zeros(out_f, r))
        self.s = alpha / r

    def forward(self, x):
        return F.linear(x, self.w) + self.s * F.linear(F.linear(x, self.A), self.B)


class Llama(torch.nn.Module):
    def __init__(self, meta, W, r=8, alpha=16):
        super().__init__()
        a = "llama."
        self.dim = meta[a + "embedding_length"]
        self.nl = meta[a + "block_count"]
        self.nh = meta[a + "attention.head_count"]
        self.nkv = meta.get(a + "attention.head_count_kv", self.nh)
        self.eps = meta[a + "attention.layer_norm_rms_epsilon"]
        self.base = meta.get(a + "rope.freq_base", 10000.0)
        self.hd = self.dim // self.nh
        P = lambda t: torch.nn.Parameter(t.float().contiguous(), requires_grad=False)
        self.embed = P(W["token_embd.weight"])
        self.norm = P(W["output_norm.weight"])
        self.head = P(W.get("output.weight", W["token_embd.weight"]))
        self.layers = torch.nn.ModuleList()
        for l in range(self.nl):
            p = f"blk.{l}."
            m = torch.nn.Module()
            m.attn_norm = P(W[p + "attn_norm.weight"])
            m.ffn_norm = P(W[p + "ffn_norm.weight"])
            m.q = Lora(unpermute(W[p + "attn_q.weight"], self.nh).float().contiguous(), r, alpha)
            m.k = P(unpermute(W[p + "attn_k.weight"], self.nkv))
            m.v = Lora(W[p + "attn_v.weight"].float().contiguous(), r, alpha)
            m.o = P(W[p + "attn_output.weight"])
            m.gate = P(W[p + "ffn_gate.weight"])
            m.up = P(W[p + "ffn_up.weight"])
            m.down = P(W[p + "ffn_down.weight"])
            self.layers.append(m)

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def forward(self, ids):
        B, T = ids.shape
        hd = self.hd
        inv = 1.0 / (self.base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        fr = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat((fr, fr), -1)
        cos, sin = emb.cos(), emb.sin()
        rot = lambda x: torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), -1)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed[ids]
        for m in self.layers:
            h = self.rms(x, m.attn_norm)
            q = m.q(h).view(B, T, self.nh, hd).transpose(1, 2)
            k = F.linear(h, m.k).view(B, T, self.nkv, hd).transpose(1, 2)
            v = m.v(h).view(B, T, self.nkv, hd).transpose(1, 2)
            q = q * cos + rot(q) * sin
            k = k * cos + rot(k) * sin
            if self.nkv != self.nh:
                k = k.repeat_interleave(self.nh // self.nkv, 1)
                v = v.repeat_interleave(self.nh // self.nkv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
            x = x + F.linear(att.transpose(1, 2).reshape(B, T, -1), m.o)
            h = self.rms(x, m.ffn_norm)
            x = x + F.linear(F.silu(F.linear(h, m.gate)) * F.linear(h, m.up), m.down)
        return F.linear(self.rms(x, self.norm), self.head)


def main():
    path, batch, seq, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    meta, W = read_gguf(path)
    model = Llama(meta, W)
    del W
    vocab = model.embed.shape[0]
    lora = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(lora, lr=2e-4, weight_decay=0.0, eps=1e-8)
    g = torch.Generator().manual_seed(1)
    times, losses = [], []
    for step in range(steps + 1):
        ids = torch.randint(3, min(vocab, 512), (batch, seq + 1), generator=g)
        t0 = time.perf_counter()
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step > 0:
            times.append(dt)
        losses.append(loss.item())
    times.sort()
    step_s = times[len(times) // 2]
    nbytes = lambda ps: sum(p.numel() * p.element_size() for p in ps)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    state = [t for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0]
    print(json.dumps({
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "stepMs": step_s * 1000, "tokS": batch * seq / step_s, "steps": steps, "losses": losses,
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "weightsBytes": nbytes(frozen), "loraBytes": nbytes(lora), "gradBytes": nbytes([p.grad for p in lora]),
        "optimizerBytes": nbytes(state), "trainable": sum(p.numel() for p in lora),
    }))


if __name__ == "__main__":
    main()
