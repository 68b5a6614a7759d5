/**
 * ids -> bytes -> text. Each id has a byte piece fixed at load time: SentencePiece ▁ becomes a
 * space and <0xNN> its byte; byte-level tokens are un-mapped to raw bytes. The stream decoder
 * holds back an incomplete UTF-8 tail so it never emits half a character.
 */
import { PeftError } from "../errors.ts";
import { byteLevelToBytes } from "./byte_level.ts";
import { TokenType, type VocabSpec } from "./vocab_spec.ts";

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

export class PieceTable {
  readonly pieces: Uint8Array[];
  /** Control / unknown / special added tokens, dropped by skipSpecial. */
  readonly special: Uint8Array;
  /** How the space from the prefix ▁ is dropped (see VocabSpec.decodeStrip). */
  readonly strip: "first-text" | "strip" | "metaspace" | undefined;
  readonly stripCount: number;
  private tokens: string[];
  private firstPieces = new Map<number, Uint8Array>();

  /** rawBytes: the byte-level tokens' bytes when the caller has them already (by id). */
  constructor(spec: VocabSpec, rawBytes?: Uint8Array[]) {
    const enc = new TextEncoder();
    const n = spec.tokens.length;
    this.pieces = new Array(n);
    this.special = new Uint8Array(n);
    const added = new Map(spec.addedTokens.map((t) => [t.id, t]));
    for (let id = 0; id < n; id++) {
      const tok = spec.tokens[id];
      const type = spec.tokenTypes[id];
      const a = added.get(id);
      if (type === TokenType.CONTROL || type === TokenType.UNKNOWN || a?.special) this.special[id] = 1;
      if (a) {
        this.pieces[id] = enc.encode(a.content);
      } else if (spec.model === "spm" || !spec.byteLevel) {
        const m = spec.decodeByteFallback ?? (type === TokenType.BYTE || spec.byteFallback) ? BYTE_TOKEN.exec(tok) : null;
        this.pieces[id] = m ? Uint8Array.of(parseInt(m[1], 16)) : enc.encode(tok.replaceAll("\u2581", " "));
      } else {
        this.pieces[id] = rawBytes?.[id] ?? byteLevelToBytes(tok).bytes;
      }
    }
    this.strip = spec.decodeStrip ?? (spec.addSpacePrefix ? "first-text" : undefined);
    this.stripCount = spec.decodeStripCount ?? 1;
    this.tokens = spec.tokens;
  }

  /** HF Metaspace decoder: the first token's ▁ are dropped, not turned into spaces. */
  firstPiece(id: number): Uint8Array {
    const p = this.piece(id);
    const t = this.tokens[id];
    if (this.strip !== "metaspace" || !t.includes("\u2581") || p.length === 0 || this.pieces[id].indexOf(0x20) < 0) return p;
    let f = this.firstPieces.get(id);
    if (!f) this.firstPieces.set(id, f = new TextEncoder().encode(t.replaceAll("\u2581", "")));
    return f;
  }

  /** Turns ids into the pieces decode() joins: skipping, then the prefix-space rule. */
  private *visible(ids: ArrayLike<number>, skipSpecial: boolean, state: { seenText: boolean; emitted: number; stripLeft: number }): Generator<Uint8Array> {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      let p = this.piece(id);
      if (this.special[id]) {
        if (skipSpecial) continue;
      } else {
        if (!state.seenText && this.strip === "first-text" && p[0] === 0x20) p = p.subarray(1);
        state.seenText = true;
      }
      if (state.emitted === 0 && this.strip === "metaspace") p = this.firstPiece(id);
      state.emitted++;
      if (this.strip === "strip" && state.stripLeft > 0) {
        let k = 0;
        while (k < p.length && k < state.stripLeft && p[k] === 0x20) k++;
        state.stripLeft = k < p.length ? 0 : state.stripLeft - k;
        p = p.subarray(k);
      }
      yield p;
    }
  }

  /** Fresh per-call (or per-stream) decoding state. */
  newState(): { seenText: boolean; emitted: number; stripLeft: number } {
    return { seenText: false, emitted: 0, stripLeft: this.strip === "strip" ? this.stripCount : 0 };
  }

  /** Pieces of ids under an existing state (the stream decoder keeps one across pushes). */
  piecesOf(ids: ArrayLike<number>, skipSpecial: boolean, state: { seenText: boolean; emitted: number; stripLeft: number }): Generator<Uint8Array> {
    return this.visible(ids, skipSpecial, state);
  }

  piece(id: number): Uint8Array {
    const p = this.pieces[id];
    if (p === undefined || !Number.isInteger(id)) {
      throw new PeftError("TOKENIZER_BAD_ID", `token id ${id} is outside the vocabulary (0..${this.pieces.length - 1})`);
    }
    return p;
  }

  /** Concatenated bytes of ids (leading-space rule applied). */
  bytes(ids: ArrayLike<number>, skipSpecial: boolean): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const p of this.visible(ids, skipSpecial, this.newState())) {
      parts.push(p);
      total += p.length;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** Length of the longest prefix of b[0..n) that does not end inside a UTF-8 sequence. */
function completePrefix(b: Uint8Array, n: number): number {
  // Look back at most 3 bytes for a lead byte whose sequence is not finished.
  for (let k = 1; k <= 3 && k <= n; k++) {
    const c = b[n - k];
    if ((c & 0xc0) === 0x80) continue; // continuation: keep looking for its lead
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > k ? n - k : n;
  }
  return n;
}

export interface StreamDecoder {
  /** Text completed by this token ("" while a multi-byte character is incomplete). */
  push(id: number): string;
  /** Whatever is held back (an unfinished sequence decodes to U+FFFD). */
  flush(): string;
}

/**
 * `after`: ids already shown (a prompt being continued). They only advance the prefix-space state,
 * so a continuation keeps its leading space ("Once" + " upon"), as llama.cpp prints it and as
 * decode(prompt + completion) reads.
 */
export function createStreamDecoder(table: PieceTable, skipSpecial: boolean, after: ArrayLike<number> = []): StreamDecoder {
  const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  let held = new Uint8Array(0);
  const state = table.newState();
  for (const _ of table.piecesOf(after, skipSpecial, state)) { /* state only */ }
  const one = [0];
  return {
    push(id: number): string {
      one[0] = id;
      const r = table.piecesOf(one, skipSpecial, state).next();
      if (r.done) return "";
      const p = r.value;
      const buf = new Uint8Array(held.length + p.length);
      buf.set(held);
      buf.set(p, held.length);
      const cut = completePrefix(buf, buf.length);
      held = buf.slice(cut);
      return cut ? dec.decode(buf.subarray(0, cut)) : "";
    },
    flush(): string {
      const s = held.length ? dec.decode(held) : "";
      held = new Uint8Array(0);
      return s;
    },
  };
}
