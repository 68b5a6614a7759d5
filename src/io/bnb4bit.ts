/**
 * The transformers / bitsandbytes safetensors layout of one 4-bit linear weight
 * (bnb QuantState.as_dict(packed=True) saved under the module's "weight." prefix):
 *   <w>                                  U8  [ceil(n/2), 1]  packed codes, high nibble first
 *   <w>.absmax                           F32 [blocks], or U8 [blocks] with double quant
 *   <w>.quant_map                        F32 [16]
 *   <w>.nested_absmax                    F32 [ceil(blocks/256)]          (double quant only)
 *   <w>.nested_quant_map                 F32 [256]                       (double quant only)
 *   <w>.quant_state.bitsandbytes__<nf4|fp4>  U8 [len]: UTF-8 JSON of the non-tensor fields,
 *     json.dumps({"quant_type", "blocksize", "dtype", "shape", ["nested_blocksize",
 *     "nested_dtype", "nested_offset"]}) with Python's separators and float repr.
 */
import { check, PeftError } from "../errors.ts";
import type { SafetensorsFile, SafetensorsWriteTensor } from "./safetensors.ts";
import { checkBlocksize, type QuantState4bit, type SourceDType } from "../quant/mod.ts";

const QS = ".quant_state.bitsandbytes__";

/** Python's repr() of a float, so our JSON bytes match json.dumps. */
export function pyFloatRepr(x: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expStr] = x.toExponential().split("e");
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) {
    const m = mant.includes(".") ? mant : mant;
    return `${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  }
  const s = String(x);
  return s.includes(".") || s.includes("e") ? s : `${s}.0`;
}

/** The quant_state JSON text bnb writes for this state. */
export function bnb4bitQuantStateJSON(st: QuantState4bit): string {
  const parts = [
    `"quant_type": "${st.type}"`,
    `"blocksize": ${st.blocksize}`,
    `"dtype": "${st.dtype}"`,
    `"shape": [${st.shape.join(", ")}]`,
  ];
  if (st.nested) {
    parts.push(`"nested_blocksize": ${st.nested.blocksize}`, `"nested_dtype": "float32"`, `"nested_offset": ${pyFloatRepr(st.nested.offset)}`);
  }
  return `{${parts.join(", ")}}`;
}

/** The safetensors entries of one 4-bit weight named `name` (e.g. "model.layers.0.mlp.up_proj.weight"). */
export function bnb4bitTensors(name: string, st: QuantState4bit): SafetensorsWriteTensor[] {
  const json = new TextEncoder().encode(bnb4bitQuantStateJSON(st));
  const out: SafetensorsWriteTensor[] = [{ name, dtype: "U8", shape: [st.packed.length, 1], data: st.packed }];
  if (st.nested) {
    out.push(
      { name: `${name}.absmax`, dtype: "U8", shape: [st.nested.codes.length], data: st.nested.codes },
      { name: `${name}.quant_map`, dtype: "F32", shape: [16], data: st.code },
      { name: `${name}.nested_absmax`, dtype: "F32", shape: [st.nested.absmax.length], data: st.nested.absmax },
      { name: `${name}.nested_quant_map`, dtype: "F32", shape: [st.nested.map.length], data: st.nested.map },
    );
  } else {
    out.push(
      { name: `${name}.absmax`, dtype: "F32", shape: [st.absmax!.length], data: st.absmax! },
      { name: `${name}.quant_map`, dtype: "F32", shape: [16], data: st.code },
    );
  }
  out.push({ name: `${name}${QS}${st.type}`, dtype: "U8", shape: [json.length], data: json });
  return out;
}

/** Names of the 4-bit weights in a file (those with a quant_state entry). */
export function bnb4bitWeightNames(file: SafetensorsFile): string[] {
  const out: string[] = [];
  for (const k of file.tensors.keys()) {
    const i = k.indexOf(QS);
    if (i > 0) out.push(k.slice(0, i));
  }
  return out.sort();
}

/** Reads and validates one 4-bit weight written by bitsandbytes (or by bnb4bitTensors). */
export async function readBnb4bit(file: SafetensorsFile, name: string): Promise<QuantState4bit> {
  const where = `${file.name}: ${name}`;
  const qsKey = [...file.tensors.keys()].find((k) => k.startsWith(`${name}${QS}`));
  if (!qsKey) throw new PeftError("BNB_MISSING_TENSOR", `${where}: no ${name}${QS}nf4|fp4 quant state tensor`);
  let qs: Record<string, unknown>;
  try {
    qs = JSON.parse(new TextDecoder().decode(await file.read(qsKey)));
  } catch (e) {
    throw new PeftError("BNB_BAD_QUANT_STATE", `${file.name}: ${qsKey} is not valid JSON (${(e as Error).message})`);
  }
  const field = <T>(key: string, ok: (v: unknown) => boolean): T => {
    check(key in qs, "BNB_BAD_QUANT_STATE", `${file.name}: ${qsKey} lacks the field "${key}"`);
    check(ok(qs[key]), "BNB_BAD_QUANT_STATE", `${file.name}: ${qsKey} field "${key}" has a bad value ${JSON.stringify(qs[key])}`);
    return qs[key] as T;
  };
  const isPosInt = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  const type = field<"nf4" | "fp4">("quant_type", (v) => v === "nf4" || v === "fp4");
  check(qsKey.endsWith(type), "BNB_BAD_QUANT_STATE", `${file.name}: ${qsKey} says quant_type ${type}`);
  const blocksize = field<number>("blocksize", isPosInt);
  checkBlocksize(blocksize, `${where} quant_state`);
  const shape = field<number[]>("shape", (v) => Array.isArray(v) && v.length > 0 && v.every(isPosInt));
  const dtype = field<SourceDType>("dtype", (v) => v === "float32" || v === "float16" || v === "bfloat16");
  const n = shape.reduce((a, b) => a * b, 1);
  const nBlocks = Math.ceil(n / blocksize);

  const need = (key: string) => {
    const info = file.tensors.get(key);
    if (!info) throw new PeftError("BNB_MISSING_TENSOR", `${file.name}: missing tensor ${key}`);
    return info;
  };
  const expect = (key: string, dtypes: string[], count: number) => {
    const info = need(key);
    const size = info.shape.reduce((a, b) => a * b, 1);
    check(
      dtypes.includes(info.dtype) && (info.dtype !== "U8" ? size === count : info.byteLength === count),
      "BNB_SHAPE_MISMATCH",
      `${file.name}: ${key} is ${info.dtype} [${info.shape}], expected ${dtypes.join("|")} with ${count} values for shape [${shape}], blocksize ${blocksize}`,
    );
  };
  const f32 = async (key: string) => new Float32Array((await file.read(key)).slice().buffer);

  // the packed codes may be stored as another quant_storage dtype; only the bytes count
  const packedInfo = need(name);
  check(
    packedInfo.byteLength === Math.ceil(n / 2),
    "BNB_SHAPE_MISMATCH",
    `${file.name}: ${name} holds ${packedInfo.byteLength} bytes of packed codes, expected ${Math.ceil(n / 2)} for shape [${shape}]`,
  );
  const packed = (await file.read(name)).slice();
  expect(`${name}.quant_map`, ["F32"], 16);
  const code = await f32(`${name}.quant_map`);
  const nestedKey = `${name}.nested_absmax`;
  if (file.tensors.has(nestedKey)) {
    const nestedBlocksize = field<number>("nested_blocksize", isPosInt);
    const offset = field<number>("nested_offset", (v) => typeof v === "number" && Number.isFinite(v));
    expect(`${name}.absmax`, ["U8"], nBlocks);
    expect(nestedKey, ["F32"], Math.ceil(nBlocks / nestedBlocksize));
    expect(`${name}.nested_quant_map`, ["F32"], 256);
    return {
      type, blocksize, n, shape, dtype, packed, code, absmax: null,
      nested: {
        codes: (await file.read(`${name}.absmax`)).slice(),
        absmax: await f32(nestedKey),
        offset: Math.fround(offset),
        blocksize: nestedBlocksize,
        map: await f32(`${name}.nested_quant_map`),
      },
    };
  }
  check(!("nested_offset" in qs), "BNB_MISSING_TENSOR", `${file.name}: ${qsKey} is double-quantized but ${nestedKey} is missing`);
  expect(`${name}.absmax`, ["F32"], nBlocks);
  return { type, blocksize, n, shape, dtype, packed, code, absmax: await f32(`${name}.absmax`), nested: null };
}
