#!/usr/bin/env python3
"""Writes tests/fixtures/nf4/fixtures.json: expected bitsandbytes 4-bit quantization outputs.

bitsandbytes cannot be installed here, so this script re-implements, in torch and independently
of our TypeScript/WASM code, the published algorithm of bitsandbytes:
  * functional.py get_4bit_type("nf4"/"fp4")  -> the 16-entry code tables (fp4 divided by 12)
  * functional.py create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
  * backends/default/ops.py quantize_4bit / quantize_blockwise: per-block absmax = max|x|,
    scaled = clamp(x * (1/absmax), -1, 1) in f32 (trailing partial block with its own absmax),
    code = bucketize on the midpoints of the sorted table, a value on a midpoint takes the
    lower code (torch.bucketize right=False; the CUDA kernels' strict `>` thresholds agree).
    FP4 is sign-magnitude like the CUDA dQuantizeFP4: sign bit 8 if x < 0, magnitude
    bucketized on |x| (so 0 -> code 0, and a negative value on a midpoint keeps the smaller
    magnitude, as CUDA does).
    An all-zero block (absmax 0) gives 0 * inf = NaN in bitsandbytes; both its backends then
    emit code 0 (argmin over NaNs returns index 0; CUDA's comparisons are all false).
  * pack: two codes per byte, first element in the high nibble, odd length padded with code 0.
  * functional.py quantize_4bit(compress_statistics=True): offset = absmax.mean() (torch f32),
    (absmax - offset) quantized blockwise (blocksize 256) with the dynamic map.
  * dequantize: code[q] * absmax in f32; nested: dmap[q] * nested_absmax + offset (two f32 ops).
Inputs are a deterministic LCG sequence that the tests regenerate bit-for-bit, plus a few
hand-picked edge cases (values exactly on midpoints, an all-zero block) stored as f32.
Run: /usr/bin/python3 scripts/dev/make_nf4_fixtures.py
"""
import base64
import json
import os

import torch

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]


def get_4bit_type(typename):
    data = torch.tensor(NF4 if typename == "nf4" else FP4_RAW, dtype=torch.float32)
    return data / data.abs().max()


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def midpoints(sorted_code):
    return (sorted_code[1:] + sorted_code[:-1]) / 2  # f32


def block_scale(A, blocksize):
    """absmax per block and the clamped scaled values, as backends/default/ops.py computes them."""
    n = A.numel()
    rem = n % blocksize
    full = n // blocksize
    blocks = full + (1 if rem else 0)
    absmax = torch.zeros((blocks,), dtype=torch.float32)
    A = A.reshape(n)
    com = A[: n - rem].reshape(full, blocksize)
    absmax[:full] = torch.abs(com).max(dim=-1)[0].float()
    scaled = torch.clamp(com * (1 / absmax[:full].view(-1, 1)), -1, 1).reshape(-1)
    if rem:
        absmax[-1] = torch.abs(A[n - rem:]).max().float()
        scaled = torch.cat([scaled, torch.clamp(A[n - rem:] * (1 / absmax[-1]), -1, 1)])
    zero_block = (absmax == 0).repeat_interleave(blocksize)[:n]
    return absmax, scaled, zero_block


def quantize_4bit(A, blocksize, quant_type):
    absmax, scaled, zero = block_scale(A, blocksize)
    if quant_type == "nf4":
        q = torch.bucketize(scaled, midpoints(get_4bit_type("nf4")), right=False)
    else:
        raw = get_4bit_type("fp4")
        mags = raw[:8]  # codes 0..7 are the non-negative magnitudes
        order = torch.argsort(mags)
        rank = torch.bucketize(scaled.abs(), midpoints(mags[order]), right=False)
        q = order[rank] + torch.where(scaled < 0, 8, 0)
    q = torch.where(zero, torch.zeros_like(q), q).to(torch.uint8)
    if q.numel() % 2:
        q = torch.cat([q, torch.zeros(1, dtype=torch.uint8)])
    packed = (q[::2] << 4) | q[1::2]
    return packed, absmax


def quantize_blockwise(A, blocksize, code):
    absmax, scaled, zero = block_scale(A, blocksize)
    q = torch.bucketize(scaled, midpoints(code), right=False)
    return torch.where(zero, torch.zeros_like(q), q).to(torch.uint8), absmax


def dequantize_4bit(packed, absmax, n, blocksize, quant_type):
    q = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n].long()
    code = get_4bit_type(quant_type)
    return code[q] * absmax.repeat_interleave(blocksize)[:n]


def lcg_input(n, seed, scale):
    """(2u-1)^3 * scale with u from a 32-bit LCG; f64 math then one rounding to f32 (tests mirror it)."""
    s = seed & 0xFFFFFFFF
    out = []
    for _ in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        u = s / 4294967296.0
        out.append(((2 * u - 1) ** 3) * scale)
    return torch.tensor(out, dtype=torch.float32)


def sha256(t):
    import hashlib
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def b64(t):
    return base64.b64encode(t.contiguous().numpy().tobytes()).decode()


def case(name, A, blocksize, quant_type, double_quant, input_kind, store_input=False):
    # 16-bit inputs are widened to f32 exactly; bnb's full-block path promotes to f32 anyway.
    # (Its trailing partial block multiplies a 16-bit tensor by a 0-dim f32 tensor, which torch
    # rounds to 16 bits before bucketizing; we, like the spec, keep f32 there.)
    Af = A.float()
    packed, absmax = quantize_4bit(Af, blocksize, quant_type)
    deq = dequantize_4bit(packed, absmax, A.numel(), blocksize, quant_type)
    c = {"name": name, "n": A.numel(), "blocksize": blocksize, "type": quant_type, "doubleQuant": double_quant,
         "input": input_kind, "packed": b64(packed), "absmax": b64(absmax), "dequant": b64(deq)}
    if A.numel() > 1200:  # keep the fixture small: large dequantized outputs as digests
        c["dequantSha256"] = sha256(deq)
        del c["dequant"]
    if store_input:
        c["inputData"] = b64(A.view(torch.int16) if A.dtype != torch.float32 else A)
    if double_quant:
        offset = absmax.mean()
        qabs, nabs = quantize_blockwise(absmax - offset, 256, create_dynamic_map())
        dabs = create_dynamic_map()[qabs.long()] * nabs.repeat_interleave(256)[: absmax.numel()]
        dabs = dabs + offset
        deq2 = dequantize_4bit(packed, dabs, A.numel(), blocksize, quant_type)
        c["offsetF64"] = float(absmax.double().mean())
        c.update({"offset": b64(offset.reshape(1)), "nestedCodes": b64(qabs), "nestedAbsmax": b64(nabs),
                  "dequant": b64(deq2)})
        if A.numel() > 1200:
            c["dequantSha256"] = sha256(deq2)
            del c["dequant"]
    return c


def bnb_state_dict(name, W, blocksize, quant_type, double_quant):
    """QuantState.as_dict(packed=True) entries under `name` (Params4bit._save_to_state_dict)."""
    packed, absmax = quantize_4bit(W.float().reshape(-1), blocksize, quant_type)
    qs = {"quant_type": quant_type, "blocksize": blocksize, "dtype": str(W.dtype).strip("torch."), "shape": tuple(W.shape)}
    out = {name: packed.reshape(-1, 1), name + ".quant_map": get_4bit_type(quant_type)}
    if double_quant:
        offset = absmax.mean()
        qabs, nabs = quantize_blockwise(absmax - offset, 256, create_dynamic_map())
        out[name + ".absmax"] = qabs
        out[name + ".nested_absmax"] = nabs
        out[name + ".nested_quant_map"] = create_dynamic_map()
        qs.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset.item()})
    else:
        out[name + ".absmax"] = absmax
    out[name + ".quant_state.bitsandbytes__" + quant_type] = torch.tensor(list(json.dumps(qs).encode("utf-8")), dtype=torch.uint8)
    return out


def write_safetensors(path, tensors):
    """The safetensors format by hand (the package is not installed): sorted names, packed data."""
    names = sorted(tensors)
    header, blobs, off = {}, [], 0
    for k in names:
        t = tensors[k].contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": {torch.uint8: "U8", torch.float32: "F32"}[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def main():
    nf4 = get_4bit_type("nf4")
    mids = midpoints(nf4)
    # Edge cases in one 64-block: every NF4 midpoint exactly (times absmax 1), their negatives,
    # +-absmax, zeros; then an all-zero block; then a partial block of 7.
    edge = torch.zeros(64 + 64 + 7, dtype=torch.float32)
    edge[0] = 1.0
    edge[1:16] = mids
    edge[16:31] = -mids
    edge[31] = -1.0
    edge[32:47] = torch.nextafter(mids, torch.tensor(2.0))
    edge[47:62] = torch.nextafter(mids, torch.tensor(-2.0))
    edge[128:135] = torch.tensor([0.5, -0.25, 3.0, -3.0, 1e-30, 0.0, 2.9999998])
    fp4 = get_4bit_type("fp4")
    fmids = midpoints(torch.sort(fp4[:8])[0])
    fedge = torch.zeros(32, dtype=torch.float32)
    fedge[0] = 1.0
    fedge[1:8] = fmids
    fedge[8:15] = -fmids
    fedge[15] = -0.0
    fedge[16:23] = torch.nextafter(fmids, torch.tensor(2.0))
    fedge[23:30] = -torch.nextafter(fmids, torch.tensor(2.0))
    fedge[30] = -1e-3

    cases = [
        case("nf4_edges_bs64", edge, 64, "nf4", False, "stored", store_input=True),
        case("fp4_edges_bs32", fedge, 32, "fp4", False, "stored", store_input=True),
        case("nf4_lcg_bs64_n1000", lcg_input(1000, 1, 0.05), 64, "nf4", False, "lcg:1:0.05"),
        case("fp4_lcg_bs128_n777", lcg_input(777, 2, 3.0), 128, "fp4", False, "lcg:2:3.0"),
        case("nf4_lcg_bs4096_n5000", lcg_input(5000, 3, 1.0), 4096, "nf4", False, "lcg:3:1.0"),
        case("nf4_dq_bs32_n9617", lcg_input(9617, 4, 0.02), 32, "nf4", True, "lcg:4:0.02"),
        case("fp4_dq_bs64_n4099", lcg_input(4099, 5, 0.1), 64, "fp4", True, "lcg:5:0.1"),
        case("nf4_f16_bs64_n301", lcg_input(301, 6, 2.0).half(), 64, "nf4", False, "stored-f16", store_input=True),
        case("nf4_bf16_dq_bs32_n333", lcg_input(333, 7, 0.5).bfloat16(), 32, "nf4", True, "stored-bf16", store_input=True),
    ]
    out = {
        "generator": "scripts/dev/make_nf4_fixtures.py (torch %s)" % torch.__version__,
        "nf4": b64(nf4), "fp4": b64(fp4), "dynamicMap": b64(create_dynamic_map()),
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "nf4", "fixtures.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")
    sd = {}
    sd.update(bnb_state_dict("model.layers.0.self_attn.q_proj.weight", lcg_input(24 * 40, 8, 0.1).reshape(24, 40), 32, "nf4", True))
    sd.update(bnb_state_dict("model.layers.0.mlp.down_proj.weight", lcg_input(7 * 9, 9, 1.0).reshape(7, 9), 64, "fp4", False))
    st_path = os.path.join(os.path.dirname(path), "bnb_layout.safetensors")
    write_safetensors(st_path, sd)
    print("wrote", os.path.normpath(st_path), os.path.getsize(st_path), "bytes")


if __name__ == "__main__":
    main()
