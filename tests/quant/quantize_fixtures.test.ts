/**
 * Byte-exact agreement with bitsandbytes' algorithm: codes, absmax, nested codes, nested absmax
 * and offset against tests/fixtures/nf4/fixtures.json, written by scripts/dev/make_nf4_fixtures.py
 * (an independent torch implementation of bnb's quantize_4bit / quantize_blockwise).
 */
import assert from "node:assert/strict";
import {
  createDynamicMap,
  dequantize4bit,
  DYNAMIC_MAP,
  FP4_CODE,
  NF4_CODE,
  quantize4bit,
  quantize4bitBF16,
  quantize4bitF16,
  type QuantState4bit,
  type QuantType4,
} from "../../src/quant/mod.ts";

interface FixtureCase {
  name: string;
  n: number;
  blocksize: number;
  type: QuantType4;
  doubleQuant: boolean;
  input: string;
  inputData?: string;
  packed: string;
  absmax: string;
  dequant?: string;
  dequantSha256?: string;
  offset?: string;
  offsetF64?: number;
  nestedCodes?: string;
  nestedAbsmax?: string;
}
const FIX = JSON.parse(await Deno.readTextFile(new URL("../fixtures/nf4/fixtures.json", import.meta.url)));
const bytes = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const f32 = (b64: string) => new Float32Array(bytes(b64).buffer);
const u16 = (b64: string) => new Uint16Array(bytes(b64).buffer);

/** The fixture script's LCG input: (2u-1)^3 * scale in f64, rounded once to f32. */
function lcgInput(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 4294967296;
    out[i] = (2 * u - 1) ** 3 * scale;
  }
  return out;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string) {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) assert.fail(`${what}[${i}]: ${a[i]} != expected ${b[i]}`);
  }
}

async function sha256(a: Float32Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new Uint8Array(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength));
  return [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("tables: NF4, FP4 and the dynamic map match bitsandbytes", () => {
  sameBits(NF4_CODE, f32(FIX.nf4), "nf4");
  sameBits(FP4_CODE, f32(FIX.fp4), "fp4");
  sameBits(DYNAMIC_MAP, f32(FIX.dynamicMap), "dynamic map");
  // the plain formula agrees within two ulps (torch.linspace rounds a few entries differently)
  const formula = createDynamicMap();
  for (let i = 0; i < 256; i++) {
    const ulp = Math.abs(DYNAMIC_MAP[i]) * 2 ** -22 + 1e-45; // two ulps
    assert.ok(Math.abs(formula[i] - DYNAMIC_MAP[i]) <= ulp, `dynamic map entry ${i}: ${formula[i]} vs ${DYNAMIC_MAP[i]}`);
  }
});

for (const c of FIX.cases as FixtureCase[]) {
  Deno.test(`bnb fixture ${c.name}: codes, absmax${c.doubleQuant ? ", nested constants" : ""} byte-exact`, async () => {
    const opts = { type: c.type, blocksize: c.blocksize, doubleQuant: c.doubleQuant, name: c.name };
    let st: QuantState4bit;
    if (c.input === "stored") st = quantize4bit(f32(c.inputData!), opts);
    else if (c.input === "stored-f16") st = quantize4bitF16(u16(c.inputData!), opts);
    else if (c.input === "stored-bf16") st = quantize4bitBF16(u16(c.inputData!), opts);
    else {
      const [, seed, scale] = c.input.split(":");
      st = quantize4bit(lcgInput(c.n, Number(seed), Number(scale)), opts);
    }
    assert.equal(st.n, c.n);
    sameBits(st.packed, bytes(c.packed), `${c.name} packed`);
    if (c.doubleQuant) {
      assert.equal(st.absmax, null);
      const nested = st.nested!;
      const torchOffset = f32(c.offset!)[0];
      // f64 sum rounded once vs torch's f32 sum: at most an ulp apart
      assert.ok(Math.abs(nested.offset - torchOffset) <= Math.abs(torchOffset) * 2 ** -23, `offset ${nested.offset} vs torch ${torchOffset}`);
      assert.equal(nested.offset, Math.fround(c.offsetF64!), "offset is the correctly rounded mean");
      sameBits(nested.codes, bytes(c.nestedCodes!), `${c.name} nested codes`);
      sameBits(nested.absmax, f32(c.nestedAbsmax!), `${c.name} nested absmax`);
      assert.equal(nested.blocksize, 256);
    } else {
      sameBits(st.absmax!, f32(c.absmax), `${c.name} absmax`);
    }
    const deq = dequantize4bit(st);
    if (c.dequant) sameBits(deq, f32(c.dequant), `${c.name} dequant`);
    else assert.equal(await sha256(deq), c.dequantSha256, `${c.name} dequant digest`);
  });
}
