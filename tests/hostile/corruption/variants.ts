/**
 * The corruption suite's variants, generated from the shared real files: stories260K as GGUF and
 * as an HF directory, tokenizer.json files from stories260K's and GPT-2's vocabularies, and a
 * LoRA adapter written by our own writer. Each variant is a corruption a strict reader must
 * refuse, or a neutral rewrite that must load with the original outputs; the suite accepts
 * either outcome for any variant (the acceptance rule) and refuses everything else, but a
 * refusal must name the file and, where given, one of `names`. "Neutral" variants record the
 * intent, so a reader that refuses a valid file is reported too.
 * Generation is deterministic: the parent and the child processes build the same list.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufType } from "../../../src/io/gguf.ts";
import { writeHfDirectory } from "../../../src/model/hf_weights.ts";
import { loadModel } from "../../../src/api/model.ts";
import { ggufWeights } from "../../../src/model/weights.ts";
import { STORIES } from "../../helpers.ts";
import { f32, patched, reencoded, STORIES_BYTES, STORIES_LAYOUT, u32 } from "../gguf_layout.ts";
import { gpt2TokenizerJson, storiesTokenizerJson } from "../tokenizer_files.ts";

export type Kind = "gguf" | "hf" | "tokenizer" | "adapter";
export const KINDS: Kind[] = ["gguf", "hf", "tokenizer", "adapter"];

/**
 * A variant's files, by path relative to its directory (gguf: model.gguf; tokenizer:
 * <base>/tokenizer.json; hf and adapter: the directory's files).
 */
export type Files = Record<string, Uint8Array>;

export interface Variant {
  id: string;
  /** What a correct reader does with it (informational, see the module comment). */
  intent: "refuse" | "neutral";
  /** A refusal must name one of these (besides the file); empty: the file is enough. */
  names: string[];
  build(): Promise<Files>;
}

const enc = new TextEncoder();
const text = (s: string) => enc.encode(s);
const json = (x: unknown) => text(JSON.stringify(x));
const clone = <T>(x: T): T => structuredClone(x);

// ------------------------------------------------------------------ GGUF

function tensorOffsets(): { name: string; start: number; end: number }[] {
  const v = new DataView(STORIES_BYTES.buffer);
  return STORIES_LAYOUT.tensors.map((t) => {
    const dims = t.dimsAt.map((d) => Number(v.getBigUint64(d, true)));
    const start = STORIES_LAYOUT.dataStart + Number(v.getBigUint64(t.offsetAt, true));
    return { name: t.name, start, end: start + dims.reduce((a, b) => a * b, 1) * 4 };
  });
}

function ggufVariants(): Variant[] {
  const out: Variant[] = [];
  const L = STORIES_LAYOUT;
  const file = (b: () => Uint8Array | Promise<Uint8Array>) => async () => ({ "model.gguf": await b() });
  const add = (id: string, intent: Variant["intent"], names: string[], b: () => Uint8Array | Promise<Uint8Array>) =>
    out.push({ id: `gguf/${id}`, intent, names, build: file(b) });
  const meta = (k: string) => L.meta.get(k)!;

  // Truncations through the header and the data.
  const size = STORIES_BYTES.byteLength;
  for (let i = 1; i <= 30; i++) {
    const cut = Math.floor((L.dataStart * i) / 31);
    add(`truncate/header@${cut}`, "refuse", [], () => STORIES_BYTES.slice(0, cut));
  }
  const offsets = tensorOffsets();
  for (let i = 1; i <= 20; i++) {
    const cut = L.dataStart + Math.floor(((size - L.dataStart) * i) / 21);
    const first = offsets.find((t) => t.end > cut)!;
    add(`truncate/data@${cut}`, "refuse", [first.name], () => STORIES_BYTES.slice(0, cut));
  }

  // Metadata values, in place.
  const ints: [string, number[]][] = [
    ["llama.context_length", [0, 2 ** 31, 0xffffffff]],
    ["llama.embedding_length", [0, 63, 65, 128, 0xffffffff]],
    ["llama.feed_forward_length", [0, 171, 173, 344, 0xffffffff]],
    ["llama.attention.head_count", [0, 2, 3, 4, 16, 0xffffffff]],
    ["llama.attention.head_count_kv", [0, 2, 3, 8, 16, 0xffffffff]],
    ["llama.block_count", [0, 1, 4, 6, 2 ** 31, 0xffffffff]],
    ["llama.rope.dimension_count", [0, 7, 10, 16, 0xffffffff]],
    ["tokenizer.ggml.bos_token_id", [512, 9999, 0xfffffffe]],
    ["tokenizer.ggml.eos_token_id", [512, 100000]],
    ["tokenizer.ggml.unknown_token_id", [600]],
  ];
  for (const [key, values] of ints) {
    for (const x of values) add(`meta/${key}=${x}`, "refuse", [key], () => patched((v) => v.setUint32(meta(key).valueAt, x, true)));
  }
  const eps = "llama.attention.layer_norm_rms_epsilon";
  for (const x of [NaN, Infinity, -Infinity, 0, -1e-5, 1, 1e30]) {
    add(`meta/${eps}=${x}`, "refuse", [eps], () => patched((v) => v.setFloat32(meta(eps).valueAt, x, true)));
  }

  // Value types changed in place (same size, or a misparse).
  for (const [key] of ints) {
    add(`type/${key}=INT32`, "neutral", [key], () => patched((v) => v.setUint32(meta(key).typeAt, GgufType.INT32, true)));
    add(`type/${key}=FLOAT32`, "refuse", [key], () => patched((v) => v.setUint32(meta(key).typeAt, GgufType.FLOAT32, true)));
    add(`type/${key}=13`, "refuse", [key], () => patched((v) => v.setUint32(meta(key).typeAt, 13, true)));
    add(`type/${key}=BOOL`, "refuse", [], () => patched((v) => v.setUint32(meta(key).typeAt, GgufType.BOOL, true)));
  }
  add(`type/${eps}=UINT32`, "refuse", [eps], () => patched((v) => v.setUint32(meta(eps).typeAt, GgufType.UINT32, true)));
  add(`type/${eps}=FLOAT64`, "refuse", [], () => patched((v) => v.setUint32(meta(eps).typeAt, GgufType.FLOAT64, true)));
  add("type/general.architecture=UINT32", "refuse", [], () => patched((v) => v.setUint32(meta("general.architecture").typeAt, GgufType.UINT32, true)));
  add("type/tokenizer.ggml.tokens=array-of-INT32", "refuse", [], () => patched((v) => v.setUint32(meta("tokenizer.ggml.tokens").valueAt, GgufType.INT32, true)));

  // Keys renamed in place (last character changed): required keys go missing, optional ones
  // fall back to their defaults (the same values here, except head_count_kv).
  const renamed: [string, Variant["intent"], string[]][] = [
    ["llama.embedding_length", "refuse", ["llama.embedding_length"]],
    ["llama.feed_forward_length", "refuse", ["llama.feed_forward_length"]],
    ["llama.attention.head_count", "refuse", ["llama.attention.head_count"]],
    ["llama.attention.head_count_kv", "refuse", ["llama.attention.head_count_kv"]],
    ["llama.block_count", "refuse", ["llama.block_count"]],
    ["llama.context_length", "refuse", ["llama.context_length"]],
    [eps, "refuse", [eps]],
    ["llama.rope.dimension_count", "neutral", []],
    ["general.architecture", "refuse", ["general.architecture"]],
    ["tokenizer.ggml.model", "refuse", ["tokenizer.ggml.model"]],
    ["general.name", "neutral", []],
  ];
  for (const [key, intent, names] of renamed) {
    add(`rename-key/${key}`, intent, names, () => patched((_, b) => (b[meta(key).typeAt - 1] ^= 0x01)));
  }
  // A duplicate key: bos_token_id renamed to eos_token_id (same length).
  add("rename-key/duplicate-eos", "refuse", ["tokenizer.ggml.eos_token_id"], () =>
    patched((_, b) => b.set(enc.encode("tokenizer.ggml.eos_token_id"), meta("tokenizer.ggml.bos_token_id").at + 8)));

  // Tensor infos.
  const v0 = new DataView(STORIES_BYTES.buffer);
  L.tensors.forEach((t, i) => {
    const next = L.tensors[i + 1]?.name ?? "belong to no tensor";
    const dims = t.dimsAt.map((d) => Number(v0.getBigUint64(d, true)));
    const either = [t.name, next];
    const detail = i % 4 === 0; // the rarer mutations on every 4th tensor
    add(`tensor/${t.name}/dim0=0`, "refuse", either, () => patched((v) => v.setBigUint64(t.dimsAt[0], 0n, true)));
    add(`tensor/${t.name}/dim0+1`, "refuse", either, () => patched((v) => v.setBigUint64(t.dimsAt[0], BigInt(dims[0] + 1), true)));
    if (dims.length === 2 && dims[0] !== dims[1]) {
      add(`tensor/${t.name}/swap-dims`, "refuse", [t.name], () =>
        patched((v) => {
          v.setBigUint64(t.dimsAt[0], BigInt(dims[1]), true);
          v.setBigUint64(t.dimsAt[1], BigInt(dims[0]), true);
        }));
    }
    add(`tensor/${t.name}/type=F16`, "refuse", either, () => patched((v) => v.setUint32(t.typeAt, 1, true)));
    add(`tensor/${t.name}/type=99`, "refuse", [t.name], () => patched((v) => v.setUint32(t.typeAt, 99, true)));
    add(`tensor/${t.name}/offset+32`, "refuse", [t.name], () => patched((v) => v.setBigUint64(t.offsetAt, v.getBigUint64(t.offsetAt, true) + 32n, true)));
    add(`tensor/${t.name}/offset+1`, "refuse", [t.name], () => patched((v) => v.setBigUint64(t.offsetAt, v.getBigUint64(t.offsetAt, true) + 1n, true)));
    add(`tensor/${t.name}/rename`, "refuse", [t.name, t.name.slice(0, -1) + "u"], () => patched((_, b) => (b[t.nDimsAt - 1] = "u".charCodeAt(0))));
    if (detail) {
      add(`tensor/${t.name}/dim=2^31`, "refuse", [t.name], () => patched((v) => v.setBigUint64(t.dimsAt[t.dimsAt.length - 1], 1n << 31n, true)));
      add(`tensor/${t.name}/type=I32`, "refuse", [t.name], () => patched((v) => v.setUint32(t.typeAt, 26, true)));
      add(`tensor/${t.name}/offset=2^40`, "refuse", [t.name], () => patched((v) => v.setBigUint64(t.offsetAt, 1n << 40n, true)));
      add(`tensor/${t.name}/n_dims=9`, "refuse", [t.name], () => patched((v) => v.setUint32(t.nDimsAt, 9, true)));
      add(`tensor/${t.name}/n_dims+1`, "refuse", [], () => patched((v) => v.setUint32(t.nDimsAt, dims.length + 1, true)));
      if (i > 0) add(`tensor/${t.name}/offset=0`, "refuse", [t.name], () => patched((v) => v.setBigUint64(t.offsetAt, 0n, true)));
      const twin = L.tensors.find((o) => o !== t && o.name.length === t.name.length);
      if (twin) add(`tensor/${t.name}/rename-to-${twin.name}`, "refuse", [twin.name], () => patched((_, b) => b.set(enc.encode(twin.name), t.at + 8)));
    }
  });

  // The fixed header.
  add("header/magic", "refuse", ["magic"], () => patched((_, b) => (b[0] = 0x58)));
  add("header/magic-zip", "refuse", ["magic"], () => patched((_, b) => b.set([0x50, 0x4b, 3, 4])));
  for (const x of [0, 1, 4, 0x30000000]) add(`header/version=${x}`, "refuse", ["version"], () => patched((v) => v.setUint32(4, x, true)));
  for (const x of [0, 47, 49, 2 ** 40]) add(`header/tensor_count=${x}`, "refuse", [], () => patched((v) => v.setBigUint64(8, BigInt(x), true)));
  for (const x of [0, 18, 20, 2 ** 40]) add(`header/kv_count=${x}`, "refuse", [], () => patched((v) => v.setBigUint64(16, BigInt(x), true)));
  add("header/string-length-huge", "refuse", [], () => patched((v) => v.setBigUint64(24, 1n << 50n, true)));
  add("append-zeros", "refuse", ["belong to no tensor"], () => new Uint8Array([...STORIES_BYTES, ...new Uint8Array(32)]));

  // Re-encodings: neutral ones and tensor-level corruptions our writer lays out consistently.
  const re = (id: string, intent: Variant["intent"], names: string[], fn: Parameters<typeof reencoded>[0], alignment?: number) =>
    add(`reencode/${id}`, intent, names, () => reencoded(fn, alignment));
  re("identity", "neutral", [], () => {});
  re("tensors-reversed", "neutral", [], (p) => p.tensors.reverse());
  re("tensors-shuffled", "neutral", [], (p) => p.tensors.sort((a, b) => (a.name.length * 7919) % 13 - (b.name.length * 7919) % 13 || (a.name < b.name ? 1 : -1)));
  re("extra-key", "neutral", [], (p) => p.metadata.set("general.comment", { type: GgufType.STRING, value: "x".repeat(1000) }));
  re("general.name", "neutral", [], (p) => p.metadata.set("general.name", { type: GgufType.STRING, value: "renamed" }));
  re("alignment-64", "neutral", [], () => {}, 64);
  re("alignment-256", "neutral", [], () => {}, 256);
  re("block_count-UINT64", "neutral", [], (p) => p.metadata.set("llama.block_count", { type: GgufType.UINT64, value: 5 }));
  re("freq_base-explicit-10000", "neutral", [], (p) => p.metadata.set("llama.rope.freq_base", f32(10000)));
  re("vocab_size-512", "neutral", [], (p) => p.metadata.set("llama.vocab_size", u32(512)));
  re("rope.dimension_count-removed", "neutral", [], (p) => p.metadata.delete("llama.rope.dimension_count"));
  re("head_count_kv-removed", "refuse", ["llama.attention.head_count_kv"], (p) => p.metadata.delete("llama.attention.head_count_kv"));
  re("vocab_size-511", "refuse", ["llama.vocab_size"], (p) => p.metadata.set("llama.vocab_size", u32(511)));
  re("vocab_size-513", "refuse", ["llama.vocab_size"], (p) => p.metadata.set("llama.vocab_size", u32(513)));
  re("freq_base-NaN", "refuse", ["llama.rope.freq_base"], (p) => p.metadata.set("llama.rope.freq_base", f32(NaN)));
  re("freq_base-0", "refuse", ["llama.rope.freq_base"], (p) => p.metadata.set("llama.rope.freq_base", f32(0)));
  re("freq_base-string", "refuse", ["llama.rope.freq_base"], (p) => p.metadata.set("llama.rope.freq_base", { type: GgufType.STRING, value: "10000" }));
  re("context_length-1e-42", "refuse", ["llama.context_length"], (p) => p.metadata.set("llama.context_length", f32(1e-42)));
  re("key_length-16", "refuse", ["llama.attention.key_length"], (p) => p.metadata.set("llama.attention.key_length", u32(16)));
  re("value_length-16", "refuse", ["llama.attention.value_length"], (p) => p.metadata.set("llama.attention.value_length", u32(16)));
  re("expert_count-8", "refuse", ["llama.expert_count"], (p) => p.metadata.set("llama.expert_count", u32(8)));
  re("rope-scaling-linear", "refuse", ["llama.rope.scaling.type"], (p) => p.metadata.set("llama.rope.scaling.type", { type: GgufType.STRING, value: "linear" }));
  re("alignment-UINT64", "refuse", ["general.alignment"], (p) => p.metadata.set("general.alignment", { type: GgufType.UINT64, value: 32 }));
  re("alignment-0", "refuse", ["general.alignment"], (p) => p.metadata.set("general.alignment", u32(0)));
  re("alignment-3", "refuse", ["general.alignment"], (p) => p.metadata.set("general.alignment", u32(3)));
  re("architecture-gpt2", "refuse", ["gpt2"], (p) => p.metadata.set("general.architecture", { type: GgufType.STRING, value: "gpt2" }));
  re("rope_freqs-tensor", "refuse", ["rope_freqs.weight"], (p) => p.tensors.push({ name: "rope_freqs.weight", shape: [4], data: new Float32Array(4).fill(1) }));
  re("bias-tensor", "refuse", ["blk.0.attn_q.bias"], (p) => p.tensors.push({ name: "blk.0.attn_q.bias", shape: [64], data: new Float32Array(64) }));
  re("layer-5-extra", "refuse", ["llama.block_count"], (p) => {
    for (const t of p.tensors.filter((t) => t.name.startsWith("blk.4."))) p.tensors.push({ ...t, name: t.name.replace("blk.4.", "blk.5.") });
  });
  re("tokens-all-empty", "refuse", ["tokenizer.ggml.tokens"], (p) => {
    const t = p.metadata.get("tokenizer.ggml.tokens")!;
    p.metadata.set("tokenizer.ggml.tokens", { ...t, value: (t.value as string[]).map(() => "") });
  });
  re("tokens-no-byte-fallback", "refuse", ["tokenizer.ggml.tokens"], (p) => {
    const t = p.metadata.get("tokenizer.ggml.tokens")!;
    p.metadata.set("tokenizer.ggml.tokens", { ...t, value: (t.value as string[]).map((s) => s === "<0xE2>" ? "<0xE2-gone>" : s) });
  });
  re("scores-short", "refuse", ["tokenizer.ggml.scores"], (p) => {
    const t = p.metadata.get("tokenizer.ggml.scores")!;
    p.metadata.set("tokenizer.ggml.scores", { ...t, value: (t.value as number[]).slice(1) });
  });
  // (Not output.weight: without it a GGUF is a valid tied-embedding model, for llama.cpp too.)
  for (const name of ["token_embd.weight", "blk.0.attn_norm.weight", "blk.3.ffn_down.weight", "output_norm.weight"]) {
    re(`drop/${name}`, "refuse", [name], (p) => p.tensors.splice(p.tensors.findIndex((t) => t.name === name), 1));
  }
  for (const [name, bad] of [["blk.1.attn_v.weight", NaN], ["output.weight", Infinity], ["blk.4.ffn_norm.weight", -Infinity], ["token_embd.weight", NaN]] as const) {
    re(`nonfinite/${name}=${bad}`, "refuse", [name], (p) => (p.tensors.find((t) => t.name === name)!.data[3] = bad));
  }
  return out;
}

// ------------------------------------------------------------------ safetensors (HF directory)

interface StHeader {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Uint8Array;
}

function stParse(b: Uint8Array): StHeader {
  const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n))), data: b.slice(8 + n) };
}

/** A safetensors file from a header object (or raw header text) and data, header padded to 8. */
function stBuild(header: unknown, data: Uint8Array): Uint8Array {
  let h = typeof header === "string" ? header : JSON.stringify(header);
  while ((8 + enc.encode(h).byteLength) % 8) h += " ";
  const hb = enc.encode(h);
  const out = new Uint8Array(8 + hb.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.byteLength), true);
  out.set(hb, 8);
  out.set(data, 8 + hb.byteLength);
  return out;
}

let hfBase: Promise<Files> | null = null;
/** stories260K as an HF directory: config.json, model.safetensors (our writer), tokenizer.json. */
export function hfBaseFiles(): Promise<Files> {
  return hfBase ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "hf-base-"));
    const src = await ggufWeights(STORIES);
    await writeHfDirectory(dir, src);
    await src.close();
    const files: Files = {};
    for (const f of await readdir(dir)) files[f] = new Uint8Array(await readFile(join(dir, f)));
    files["tokenizer.json"] = json(await storiesTokenizerJson());
    return files;
  })();
}

function hfVariants(): Variant[] {
  const out: Variant[] = [];
  const add = (id: string, intent: Variant["intent"], names: string[], change: (f: Files) => void | Promise<void>) =>
    out.push({
      id: `hf/${id}`,
      intent,
      names,
      build: async () => {
        const f = { ...(await hfBaseFiles()) };
        await change(f);
        return f;
      },
    });
  const model = (fn: (h: StHeader) => Uint8Array) => (f: Files) => void (f["model.safetensors"] = fn(stParse(f["model.safetensors"])));
  const config = (fn: (c: Record<string, unknown>) => void) => (f: Files) => {
    const c = JSON.parse(new TextDecoder().decode(f["config.json"]));
    fn(c);
    f["config.json"] = json(c);
  };

  add("identity", "neutral", [], () => {});
  for (let i = 1; i <= 15; i++) {
    add(`truncate/${i}`, "refuse", [], (f) => {
      const b = f["model.safetensors"];
      f["model.safetensors"] = b.slice(0, Math.floor((b.byteLength * i) / 16));
    });
  }
  add("truncate/6-bytes", "refuse", [], (f) => void (f["model.safetensors"] = f["model.safetensors"].slice(0, 6)));
  for (const [name, len] of [["0", 0n], ["1", 1n], ["7", 7n], ["2^40", 1n << 40n], ["past-eof", 1n << 24n]] as const) {
    add(`header-length=${name}`, "refuse", [], (f) => {
      const b = f["model.safetensors"].slice();
      new DataView(b.buffer).setBigUint64(0, len, true);
      f["model.safetensors"] = b;
    });
  }
  add("header-length-1", "refuse", [], (f) => {
    const b = f["model.safetensors"].slice();
    const v = new DataView(b.buffer);
    v.setBigUint64(0, v.getBigUint64(0, true) - 1n, true);
    f["model.safetensors"] = b;
  });

  const tensors = HF_TENSORS;
  tensors.forEach(([name, shape], i) => {
    const detail = i % 3 === 0;
    add(`tensor/${name}/dtype=F16`, "refuse", [name], model((h) => stBuild({ ...h.header, [name]: { ...h.header[name], dtype: "F16" } }, h.data)));
    add(`tensor/${name}/nan`, "refuse", [name], model((h) => {
      const e = h.header[name] as { data_offsets: [number, number] };
      const d = h.data.slice();
      new DataView(d.buffer).setFloat32(e.data_offsets[0] + 4 * (i % 7), NaN, true);
      return stBuild(h.header, d);
    }));
    if (shape.length === 2 && shape[0] !== shape[1]) {
      add(`tensor/${name}/swap-shape`, "refuse", [name], model((h) => stBuild({ ...h.header, [name]: { ...h.header[name], shape: [shape[1], shape[0]] } }, h.data)));
    }
    if (detail) {
      add(`tensor/${name}/dtype=F99`, "refuse", [name], model((h) => stBuild({ ...h.header, [name]: { ...h.header[name], dtype: "F99" } }, h.data)));
      add(`tensor/${name}/shape0+1`, "refuse", [name], model((h) => stBuild({ ...h.header, [name]: { ...h.header[name], shape: [shape[0] + 1, ...shape.slice(1)] } }, h.data)));
      add(`tensor/${name}/offsets+4`, "refuse", [], model((h) => {
        const e = h.header[name] as { data_offsets: [number, number] };
        return stBuild({ ...h.header, [name]: { ...e, data_offsets: [e.data_offsets[0] + 4, e.data_offsets[1] + 4] } }, h.data);
      }));
      add(`tensor/${name}/rename`, "refuse", [name, `${name}.x`], model((h) => {
        const { [name]: e, ...rest } = h.header;
        return stBuild({ ...rest, [`${name}.x`]: e }, h.data);
      }));
      add(`tensor/${name}/drop`, "refuse", [name], model((h) => {
        const e = h.header[name] as { data_offsets: [number, number] };
        const rest: StHeader["header"] = {};
        const cut = e.data_offsets[1] - e.data_offsets[0];
        for (const [k, x] of Object.entries(h.header)) {
          if (k === name) continue;
          const o = (x as { data_offsets?: [number, number] }).data_offsets;
          rest[k] = o && o[0] >= e.data_offsets[1] ? { ...(x as object), data_offsets: [o[0] - cut, o[1] - cut] } as never : x;
        }
        return stBuild(rest, new Uint8Array([...h.data.subarray(0, e.data_offsets[0]), ...h.data.subarray(e.data_offsets[1])]));
      }));
    }
  });

  // Header text and __metadata__.
  add("metadata-extra", "neutral", [], model((h) => stBuild({ ...h.header, __metadata__: { format: "pt", note: "x" } }, h.data)));
  add("metadata-2MiB", "neutral", [], model((h) => stBuild({ ...h.header, __metadata__: { format: "pt", note: "x".repeat(2 << 20) } }, h.data)));
  add("metadata-20MiB", "refuse", ["__metadata__"], model((h) => stBuild({ ...h.header, __metadata__: { note: "x".repeat(20 << 20) } }, h.data)));
  add("metadata-20000-entries", "refuse", ["__metadata__"], model((h) =>
    stBuild({ ...h.header, __metadata__: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, "v"])) }, h.data)));
  add("metadata-not-strings", "refuse", ["__metadata__"], model((h) => stBuild({ ...h.header, __metadata__: { n: 3 } }, h.data)));
  add("header-keys-reversed", "neutral", [], model((h) => stBuild(Object.fromEntries(Object.entries(h.header).reverse()), h.data)));
  add("header-leading-space", "refuse", ["{"], model((h) => stBuild(" " + JSON.stringify(h.header), h.data)));
  add("header-not-object", "refuse", ["{"], model((h) => stBuild("[" + JSON.stringify(h.header) + "]", h.data)));
  add("header-duplicate-key", "refuse", ["duplicate"], model((h) => {
    const t = JSON.stringify(h.header);
    const first = tensors[1][0];
    return stBuild(t.slice(0, -1) + `,${JSON.stringify(first)}:${JSON.stringify(h.header[first])}}`, h.data);
  }));
  add("header-bad-utf8", "refuse", ["UTF-8"], (f) => {
    const b = f["model.safetensors"].slice();
    b[20] = 0xff;
    f["model.safetensors"] = b;
  });
  add("trailing-bytes", "refuse", [], (f) => void (f["model.safetensors"] = new Uint8Array([...f["model.safetensors"], 1, 2, 3, 4])));

  // config.json.
  const bad: [string, unknown[]][] = [
    ["num_hidden_layers", [0, 4, 6, 2 ** 31, -1, "5", 5.5, null]],
    ["hidden_size", [0, 63, 65, 128, -64]],
    ["intermediate_size", [0, 171, 173]],
    ["num_attention_heads", [0, 3, 4, 16]],
    ["num_key_value_heads", [2, 3, 8]],
    ["head_dim", [0, 7, 16]],
    ["vocab_size", [0, 511, 513]],
    ["rms_norm_eps", [0, -1, 1, "x", null]],
    ["rope_theta", [0, -1, "x", null]],
    ["max_position_embeddings", [0, 1.5, 2 ** 30, -1, null]],
    ["tie_word_embeddings", ["yes", true]],
    ["architectures", [["GPT2LMHeadModel"], "LlamaForCausalLM"]],
    ["rope_scaling", [{ type: "linear", factor: 2 }]],
    ["hidden_act", ["gelu"]],
    ["attention_bias", [true]],
  ];
  for (const [key, values] of bad) {
    for (const x of values) {
      const shown = key === "tie_word_embeddings" && x === true ? "lm_head" : key;
      add(`config/${key}=${JSON.stringify(x)}`, "refuse", [shown], config((c) => void (c[key] = x)));
    }
  }
  add("config/num_key_value_heads-removed", "refuse", ["num_key_value_heads"], config((c) => void delete c.num_key_value_heads));
  add("config/head_dim-removed", "neutral", [], config((c) => void delete c.head_dim));
  add("config/head_dim-null", "neutral", [], config((c) => void (c.head_dim = null)));
  add("config/rope_theta-removed", "neutral", [], config((c) => void delete c.rope_theta));
  add("config/extra-key", "neutral", [], config((c) => void (c.transformers_version = "9.9.9")));
  add("config/torch_dtype", "neutral", [], config((c) => void (c.torch_dtype = "bfloat16")));
  add("config/not-json", "refuse", ["config.json"], (f) => void (f["config.json"] = text("{\"hidden_size\": 64,")));
  add("config/array", "refuse", ["config.json"], (f) => void (f["config.json"] = text("[]")));
  add("config/empty", "refuse", ["config.json"], (f) => void (f["config.json"] = new Uint8Array(0)));
  add("config/missing", "refuse", ["config.json"], (f) => void delete f["config.json"]);
  add("weights/missing", "refuse", ["model.safetensors"], (f) => void delete f["model.safetensors"]);
  return out;
}

/** HF names and shapes of stories260K (as writeHfDirectory writes them), in sorted order. */
const HF_TENSORS: [string, number[]][] = (() => {
  const list: [string, number[]][] = [["lm_head.weight", [512, 64]], ["model.embed_tokens.weight", [512, 64]], ["model.norm.weight", [64]]];
  for (let l = 0; l < 5; l++) {
    const p = `model.layers.${l}.`;
    list.push(
      [`${p}input_layernorm.weight`, [64]], [`${p}post_attention_layernorm.weight`, [64]],
      [`${p}mlp.down_proj.weight`, [64, 172]], [`${p}mlp.gate_proj.weight`, [172, 64]], [`${p}mlp.up_proj.weight`, [172, 64]],
      [`${p}self_attn.k_proj.weight`, [32, 64]], [`${p}self_attn.o_proj.weight`, [64, 64]], [`${p}self_attn.q_proj.weight`, [64, 64]],
      [`${p}self_attn.v_proj.weight`, [32, 64]],
    );
  }
  return list.sort((a, b) => (a[0] < b[0] ? -1 : 1));
})();

// ------------------------------------------------------------------ tokenizer.json

export type TokenizerBase = "spm" | "bpe";
const tokBases: Record<TokenizerBase, () => Promise<Record<string, unknown>>> = { spm: storiesTokenizerJson, bpe: gpt2TokenizerJson };
const tokCache = new Map<TokenizerBase, Promise<Record<string, unknown>>>();
export const tokenizerBase = (b: TokenizerBase) => {
  if (!tokCache.has(b)) tokCache.set(b, tokBases[b]());
  return tokCache.get(b)!;
};

function tokenizerVariants(): Variant[] {
  const out: Variant[] = [];
  type J = Record<string, unknown> & { model: Record<string, unknown> & { vocab: Record<string, number>; merges: unknown[] }; added_tokens: Record<string, unknown>[] };
  const add = (base: TokenizerBase, id: string, intent: Variant["intent"], names: string[], fn: (j: J) => unknown) =>
    out.push({
      id: `tokenizer/${base}/${id}`,
      intent,
      names,
      build: async () => {
        const j = clone(await tokenizerBase(base)) as J;
        const r = fn(j);
        return { [`${base}/tokenizer.json`]: r instanceof Uint8Array ? r : typeof r === "string" ? text(r) : json(j) };
      },
    });
  for (const base of ["spm", "bpe"] as const) {
    const tok = base === "spm" ? "▁the" : "Ġthe";
    add(base, "identity", "neutral", [], () => {});
    for (const id of [1e9, 2 ** 32, 1e15, -1, 1.5, "7", null]) {
      add(base, `vocab-id=${JSON.stringify(id)}`, "refuse", ["model.vocab["], (j) => void (j.model.vocab[tok] = id as number));
    }
    add(base, "vocab-empty", "refuse", ["model.vocab"], (j) => void (j.model.vocab = {}));
    add(base, "vocab-missing", "refuse", ["model.vocab"], (j) => void delete (j.model as Record<string, unknown>).vocab);
    add(base, "vocab-array", "refuse", ["model.vocab"], (j) => void ((j.model as Record<string, unknown>).vocab = Object.keys(j.model.vocab)));
    add(base, "vocab-duplicate-id", "refuse", ["model.vocab["], (j) => void (j.model.vocab[tok] = 3));
    add(base, "merges-not-array", "refuse", ["model.merges"], (j) => void ((j.model as Record<string, unknown>).merges = "a b"));
    add(base, "merge-three-parts", "refuse", ["model.merges[5]"], (j) => void (j.model.merges[5] = base === "spm" ? ["a", "b", "c"] : "a b c"));
    add(base, "merge-number", "refuse", ["model.merges[0]"], (j) => void (j.model.merges[0] = 42));
    add(base, "added-token-id-huge", "refuse", ["added_tokens[0].id"], (j) => void (j.added_tokens[0].id = 1e9));
    add(base, "added-token-empty", "refuse", ["added_tokens[0].content"], (j) => void (j.added_tokens[0].content = ""));
    add(base, "added-tokens-object", "refuse", ["added_tokens"], (j) => void ((j as Record<string, unknown>).added_tokens = {}));
    add(base, "model-unigram", "refuse", ["model.type"], (j) => void (j.model.type = "Unigram"));
    add(base, "model-not-object", "refuse", ["model"], (j) => void ((j as Record<string, unknown>).model = "BPE"));
    add(base, "continuing-prefix", "refuse", ["continuing_subword_prefix"], (j) => void (j.model.continuing_subword_prefix = "##"));
    add(base, "pre-tokenizer-whitespace", "refuse", ["pre_tokenizer"], (j) => void (j.pre_tokenizer = { type: "Whitespace" }));
    add(base, "normalizer-lowercase", "refuse", ["normalizer"], (j) => void (j.normalizer = { type: "Lowercase" }));
    add(base, "not-json", "refuse", [], (j) => JSON.stringify(j).slice(0, -3));
    for (const frac of [0.05, 0.3, 0.6, 0.9]) add(base, `truncated@${frac}`, "refuse", [], (j) => { const s = JSON.stringify(j); return s.slice(0, Math.floor(s.length * frac)); });
    add(base, "binary", "refuse", [], () => new Uint8Array([0x00, 0xff, 0x10, 0x7b, 0x22]));
    add(base, "pretty-printed", "neutral", [], (j) => JSON.stringify(j, null, 2));
    add(base, "vocab-order-reversed", "neutral", [], (j) => void (j.model.vocab = Object.fromEntries(Object.entries(j.model.vocab).reverse())));
    add(base, "extra-field", "neutral", [], (j) => void (j.extra = { note: "ignored" }));
    add(base, "ascii-escaped", "neutral", [], (j) => JSON.stringify(j).replace(/[\u007f-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")));
  }
  // Byte-level alphabet with holes; SentencePiece-style decoder missing.
  for (const [id, drop] of [["Ġ", ["Ġ"]], ["5-bytes", ["a", "b", "c", "Ā", "ÿ"]]] as const) {
    add("bpe", `missing-byte-tokens/${id}`, "refuse", ["single-byte"], (j) => {
      for (const t of drop) delete j.model.vocab[t];
      Object.keys(j.model.vocab).forEach((t, i) => (j.model.vocab[t] = i));
      j.added_tokens = [];
    });
  }
  add("spm", "decoder-missing", "refuse", ["decoder"], (j) => void (j.decoder = null));
  add("spm", "post-processor-unknown-token", "refuse", ["post_processor"], (j) => {
    const p = j.post_processor as { single: { SpecialToken?: { id: string } }[]; special_tokens: Record<string, unknown> };
    p.single[0].SpecialToken!.id = "<nope>";
    p.special_tokens = {};
  });
  add("bpe", "split-unknown-regex", "refuse", ["Regex"], (j) => void (j.pre_tokenizer = { type: "Split", pattern: { Regex: "\\w+" }, behavior: "Isolated" }));
  return out;
}

// ------------------------------------------------------------------ adapters

export const ADAPTER_CONFIG = { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"], init_lora_weights: false };

let adapterBase: Promise<Files> | null = null;
/** A LoRA adapter for stories260K written by our writer (random non-zero A and B). */
export function adapterBaseFiles(): Promise<Files> {
  return adapterBase ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "adapter-base-"));
    const model = await loadModel(STORIES);
    model.addAdapter("base", ADAPTER_CONFIG, 5);
    await model.saveAdapter("base", dir);
    model.close();
    const files: Files = {};
    for (const f of await readdir(dir)) files[f] = new Uint8Array(await readFile(join(dir, f)));
    return files;
  })();
}

function adapterVariants(): Variant[] {
  const out: Variant[] = [];
  const add = (id: string, intent: Variant["intent"], names: string[], change: (f: Files) => void) =>
    out.push({
      id: `adapter/${id}`,
      intent,
      names,
      build: async () => {
        const f = { ...(await adapterBaseFiles()) };
        change(f);
        return f;
      },
    });
  const config = (fn: (c: Record<string, unknown>) => void) => (f: Files) => {
    const c = JSON.parse(new TextDecoder().decode(f["adapter_config.json"]));
    fn(c);
    f["adapter_config.json"] = json(c);
  };
  const weights = (fn: (h: StHeader) => Uint8Array) => (f: Files) => void (f["adapter_model.safetensors"] = fn(stParse(f["adapter_model.safetensors"])));

  add("identity", "neutral", [], () => {});
  const badConfig: [string, unknown[]][] = [
    ["r", [0, -1, "4", 8, 2, 1e9, null, 4.5]],
    ["lora_alpha", ["x", null, [8]]],
    ["peft_type", ["IA3", "FOO", 3]],
    ["target_modules", [5, [], ["q_proj", "k_proj", "v_proj"], ["nope_proj"]]],
    ["use_dora", [true, "yes"]],
    ["fan_in_fan_out", [true]],
    ["bias", ["x"]],
    ["layers_to_transform", ["x", [-1]]],
    ["rank_pattern", [{ q_proj: 8 }]],
    ["modules_to_save", [["lm_head"]]],
    ["lora_dropout", [1.5]],
  ];
  for (const [key, values] of badConfig) {
    for (const x of values) add(`config/${key}=${JSON.stringify(x)}`, "refuse", [], config((c) => void (c[key] = x)));
  }
  add("config/peft_type-missing", "refuse", ["peft_type"], config((c) => void delete c.peft_type));
  add("config/not-json", "refuse", ["adapter_config.json"], (f) => void (f["adapter_config.json"] = text("{\"r\": 4,")));
  add("config/empty", "refuse", ["adapter_config.json"], (f) => void (f["adapter_config.json"] = new Uint8Array(0)));
  add("config/array", "refuse", ["adapter_config.json"], (f) => void (f["adapter_config.json"] = text("[]")));
  add("config/missing", "refuse", ["adapter_config.json"], (f) => void delete f["adapter_config.json"]);
  add("weights/missing", "refuse", ["adapter_model.safetensors"], (f) => void delete f["adapter_model.safetensors"]);
  add("config/extra-keys", "neutral", [], config((c) => Object.assign(c, { peft_version: "0.99.0", some_future_option: null })));
  add("config/task_type", "neutral", [], config((c) => void (c.task_type = "CAUSAL_LM")));
  add("config/inference_mode-false", "neutral", [], config((c) => void (c.inference_mode = false)));
  add("config/lora_dropout", "neutral", [], config((c) => void (c.lora_dropout = 0.1)));

  for (let i = 1; i <= 6; i++) {
    add(`truncate/${i}`, "refuse", [], (f) => {
      const b = f["adapter_model.safetensors"];
      f["adapter_model.safetensors"] = b.slice(0, Math.floor((b.byteLength * i) / 7));
    });
  }
  for (const [name, len] of [["2^40", 1n << 40n], ["17MiB", 17n << 20n]] as const) {
    add(`header-length=${name}`, "refuse", [], (f) => {
      const b = f["adapter_model.safetensors"].slice();
      new DataView(b.buffer).setBigUint64(0, len, true);
      f["adapter_model.safetensors"] = b;
    });
  }
  add("metadata-2MiB", "refuse", ["__metadata__"], weights((h) => stBuild({ ...h.header, __metadata__: { note: "x".repeat(2 << 20) } }, h.data)));
  add("metadata-2000-entries", "refuse", ["__metadata__"], weights((h) =>
    stBuild({ ...h.header, __metadata__: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, "v"])) }, h.data)));
  add("metadata-small", "neutral", [], weights((h) => stBuild({ ...h.header, __metadata__: { format: "pt", note: "x" } }, h.data)));
  add("keys-reversed", "neutral", [], weights((h) => stBuild(Object.fromEntries(Object.entries(h.header).reverse()), h.data)));
  add("keys-with-adapter-name", "neutral", [], weights((h) =>
    stBuild(Object.fromEntries(Object.entries(h.header).map(([k, v]) => [k.replace(/\.(lora_[AB])\.weight$/, ".$1.default.weight"), v])), h.data)));
  add("keys-without-prefix", "neutral", [], weights((h) => stBuild(Object.fromEntries(Object.entries(h.header).map(([k, v]) => [k.replace(/^base_model\.model\./, ""), v])), h.data)));

  for (let l = 0; l < 5; l++) {
    for (const m of ["q_proj", "v_proj"]) {
      for (const part of ["lora_A", "lora_B"]) {
        const key = `base_model.model.model.layers.${l}.self_attn.${m}.${part}.weight`;
        const detail = l === 0 || l === 3;
        add(`tensor/${key}/nan`, "refuse", [key], weights((h) => {
          const e = h.header[key] as { data_offsets: [number, number] };
          const d = h.data.slice();
          new DataView(d.buffer).setFloat32(e.data_offsets[0] + 8, NaN, true);
          return stBuild(h.header, d);
        }));
        add(`tensor/${key}/swap-shape`, "refuse", [key], weights((h) => {
          const e = h.header[key] as { shape: number[] };
          return stBuild({ ...h.header, [key]: { ...e, shape: [...e.shape].reverse() } }, h.data);
        }));
        if (detail) {
          add(`tensor/${key}/inf`, "refuse", [key], weights((h) => {
            const e = h.header[key] as { data_offsets: [number, number] };
            const d = h.data.slice();
            new DataView(d.buffer).setFloat32(e.data_offsets[1] - 4, -Infinity, true);
            return stBuild(h.header, d);
          }));
          add(`tensor/${key}/dtype=F16`, "refuse", [key], weights((h) => stBuild({ ...h.header, [key]: { ...h.header[key], dtype: "F16" } }, h.data)));
          add(`tensor/${key}/dtype=I32`, "refuse", [key], weights((h) => stBuild({ ...h.header, [key]: { ...h.header[key], dtype: "I32" } }, h.data)));
          add(`tensor/${key}/unknown-module`, "refuse", ["x_proj"], weights((h) => {
            const { [key]: e, ...rest } = h.header;
            return stBuild({ ...rest, [key.replace(m, "x_proj")]: e }, h.data);
          }));
          add(`tensor/${key}/layer-9`, "refuse", ["layers.9."], weights((h) => {
            const { [key]: e, ...rest } = h.header;
            return stBuild({ ...rest, [key.replace(`layers.${l}.`, "layers.9.")]: e }, h.data);
          }));
        }
      }
    }
  }
  return out;
}

export function variants(kind: Kind): Variant[] {
  switch (kind) {
    case "gguf": return ggufVariants();
    case "hf": return hfVariants();
    case "tokenizer": return tokenizerVariants();
    case "adapter": return adapterVariants();
  }
}
