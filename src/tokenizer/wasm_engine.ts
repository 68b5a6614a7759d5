/**
 * Host side of wasm/tokenizer: one WASM instance per vocabulary. Loads token bytes, scores and
 * merges once; encode() writes UTF-8 straight into WASM memory and reads the ids back.
 */
import { wasmBytes } from "../assets.ts";
import { PeftError } from "../errors.ts";
import type { PreTokenizer } from "./vocab_spec.ts";

interface Exports {
  memory: WebAssembly.Memory;
  alloc(bytes: number): number;
  vocabInit(n: number, blob: number, offs: number, scores: number): void;
  mergesInit(n: number, triples: number): void;
  byteTokensPtr(): number;
  isolatedPtr(): number;
  configure(algorithm: number, unk: number, ignoreMerges: number, chunkSafe: number, escape: number, fuseUnk: number): void;
  inputPtr(len: number): number;
  outPtr(): number;
  encode(len: number, pre: number, addPrefix: number): number;
  pretokenize(len: number, pre: number): number;
}

export const ALGO = { spm: 0, bpeBytes: 1, bpeChars: 2 } as const;
const PRE: Record<PreTokenizer, number> = {
  none: 0, gpt2: 1, llama3: 2, qwen2: 3, "digits-gpt2": 4, "metaspace-split": 5,
  "deepseek-llm": 6, "deepseek-coder": 7, "deepseek-v3": 8, falcon: 9, default: 10, "gpt-4o": 11, tekken: 12, bloom: 13, viking: 14,
};

let compiled: WebAssembly.Module | null = null;

export interface EngineSetup {
  /** Token bytes as the WASM compares them (raw bytes for byte-level vocabs). */
  tokenBytes: Uint8Array[];
  scores?: Float32Array;
  /** (left id, right id, merged id) in rank order. */
  merges?: Int32Array;
  algorithm: number;
  /** id per byte value, -1 where none. */
  byteTokens: Int32Array;
  unkId: number;
  ignoreMerges: boolean;
  chunkSafe: boolean;
  /** ' ' -> ▁ before encoding (SPM; HF SentencePiece-style BPE). */
  escapeSpaces: boolean;
  /** ASCII chars (u8[128], 1 = yes) that no multi-char token contains: safe cut points for SPM-style text. */
  isolated?: Uint8Array;
  fuseUnk: boolean;
  pre: PreTokenizer;
}

export class WasmEngine {
  private ex: Exports;
  private pre: number;
  private encoder = new TextEncoder();

  constructor(s: EngineSetup) {
    compiled ??= new WebAssembly.Module(wasmBytes("tokenizer") as Uint8Array<ArrayBuffer>);
    const inst = new WebAssembly.Instance(compiled, {
      env: {
        abort(_msg: number, _file: number, line: number, col: number) {
          throw new PeftError("TOKENIZER_WASM_ABORT", `tokenizer WASM aborted at ${line}:${col}`);
        },
      },
    });
    this.ex = inst.exports as unknown as Exports;
    this.pre = PRE[s.pre];
    const ex = this.ex;
    const n = s.tokenBytes.length;
    let total = 0;
    for (const b of s.tokenBytes) total += b.length;
    const blob = ex.alloc(total + 8);
    const offs = ex.alloc((n + 1) * 4);
    const scores = ex.alloc(n * 4);
    {
      const mem = new Uint8Array(ex.memory.buffer);
      const o = new Int32Array(ex.memory.buffer, offs, n + 1);
      let pos = 0;
      for (let i = 0; i < n; i++) {
        o[i] = pos;
        mem.set(s.tokenBytes[i], blob + pos);
        pos += s.tokenBytes[i].length;
      }
      o[n] = pos;
      const sc = new Float32Array(ex.memory.buffer, scores, n);
      if (s.scores) sc.set(s.scores);
    }
    ex.vocabInit(n, blob, offs, scores);
    if (s.merges && s.merges.length > 0) {
      const m = ex.alloc(s.merges.length * 4);
      new Int32Array(ex.memory.buffer, m, s.merges.length).set(s.merges);
      ex.mergesInit(s.merges.length / 3, m);
    }
    new Int32Array(ex.memory.buffer, ex.byteTokensPtr(), 256).set(s.byteTokens);
    if (s.isolated) new Uint8Array(ex.memory.buffer, ex.isolatedPtr(), 128).set(s.isolated);
    ex.configure(s.algorithm, s.unkId, s.ignoreMerges ? 1 : 0, s.chunkSafe ? 1 : 0, s.escapeSpaces ? 1 : 0, s.fuseUnk ? 1 : 0);
  }

  /** The pieces the pre-tokenizer `pre` cuts `text` into (no BPE; for tests against the regexes). */
  pretokenize(text: string, pre: PreTokenizer): string[] {
    const ex = this.ex;
    const cap = text.length * 3;
    const ptr = ex.inputPtr(cap);
    const { written } = this.encoder.encodeInto(text, new Uint8Array(ex.memory.buffer, ptr, cap));
    const count = ex.pretokenize(written, PRE[pre]);
    const ends = Array.from(new Int32Array(ex.memory.buffer, ex.outPtr(), count));
    const bytes = new Uint8Array(ex.memory.buffer, ptr, written).slice();
    const dec = new TextDecoder("utf-8", { ignoreBOM: true });
    const pieces: string[] = [];
    let a = 0;
    for (const b of ends) {
      pieces.push(dec.decode(bytes.subarray(a, b)));
      a = b;
    }
    return pieces;
  }

  /** Encodes one fragment of plain text (no special tokens) and appends its ids to `out`. */
  encodeInto(text: string, addPrefix: boolean, out: number[]): void {
    const ex = this.ex;
    // UTF-8 is at most 3 bytes per UTF-16 code unit.
    const cap = text.length * 3;
    const ptr = ex.inputPtr(cap);
    const { written } = this.encoder.encodeInto(text, new Uint8Array(ex.memory.buffer, ptr, cap));
    const count = ex.encode(written, this.pre, addPrefix ? 1 : 0);
    const ids = new Int32Array(ex.memory.buffer, ex.outPtr(), count);
    for (let i = 0; i < count; i++) out.push(ids[i]);
  }
}
