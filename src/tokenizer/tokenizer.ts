/**
 * The Tokenizer: a VocabSpec (from GGUF or tokenizer.json) driving the WASM encoder, plus
 * special-token splitting, decoding, streaming decode and chat templates.
 */
import { PeftError } from "../errors.ts";
import type { GgufFile } from "../io/gguf.ts";
import { BYTE_TO_CHAR, byteLevelToBytes } from "./byte_level.ts";
import { createStreamDecoder, PieceTable, type StreamDecoder } from "./decoder.ts";
import { vocabFromGGUF } from "./gguf_vocab.ts";
import { vocabFromJSON } from "./hf_vocab.ts";
import { type ChatMessage, type ChatTemplateOptions, renderChatTemplate } from "./chat_template.ts";
import { readGGUF } from "../io/gguf.ts";
import { dirname, join, readFile } from "../util/host.ts";
import { SpecialSplitter } from "./special_split.ts";
import type { VocabSpec } from "./vocab_spec.ts";
import { ALGO, WasmEngine } from "./wasm_engine.ts";
import { endOfGenerationIds, generationConfigEosIds } from "./eog.ts";

export interface EncodeOptions {
  /** Add BOS / EOS as the vocabulary asks (add_bos_token / add_eos_token). Default true. */
  addSpecial?: boolean;
  /** Recognise special (control) tokens written in the text. Default true; pass false for untrusted text. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop control / special tokens (BOS, EOS, <|im_start|> ...). Default false. */
  skipSpecial?: boolean;
}

export class Tokenizer {
  readonly spec: VocabSpec;
  private engine: WasmEngine;
  private table: PieceTable;
  private splitAll: SpecialSplitter;
  private splitUser: SpecialSplitter;
  private ids = new Map<string, number>();

  constructor(spec: VocabSpec) {
    this.spec = spec;
    const n = spec.tokens.length;
    for (let i = 0; i < n; i++) if (spec.tokens[i] !== "" && !this.ids.has(spec.tokens[i])) this.ids.set(spec.tokens[i], i);
    const enc = new TextEncoder();
    const none = new Uint8Array(0);
    const tokenBytes = spec.tokens.map((t, id) =>
      spec.notInModel?.has(id) ? none : spec.byteLevel ? byteLevelToBytes(t).bytes : enc.encode(t)
    );
    const byteTokens = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      if (spec.byteLevel) {
        byteTokens[b] = this.ids.get(BYTE_TO_CHAR[b]) ?? -1;
      } else if (spec.byteFallback) {
        const hex = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
        // llama.cpp byte_to_token: <0xNN>, else the one-byte token.
        byteTokens[b] = this.ids.get(hex) ?? (b < 0x80 ? this.ids.get(String.fromCharCode(b)) ?? -1 : -1);
      }
    }
    let merges: Int32Array | undefined;
    if (spec.model === "bpe") {
      // (left, right, -1): the WASM finds the merged token from the two tokens' bytes.
      const list = spec.merges ?? [];
      merges = new Int32Array(list.length * 3);
      let k = 0;
      for (const [a, b] of list) {
        merges[k++] = this.ids.get(a) ?? -1;
        merges[k++] = this.ids.get(b) ?? -1;
        merges[k++] = -1;
      }
    }
    this.engine = new WasmEngine({
      tokenBytes,
      scores: spec.scores,
      merges,
      algorithm: spec.model === "spm" ? ALGO.spm : spec.byteLevel ? ALGO.bpeBytes : ALGO.bpeChars,
      byteTokens,
      unkId: spec.unkId,
      ignoreMerges: spec.ignoreMerges,
      chunkSafe: (spec.model === "spm" || spec.metaspace !== undefined) && spmChunkSafe(spec.tokens),
      escapeSpaces: spec.metaspace !== undefined,
      isolated: spec.model === "spm" ? isolatedAscii(spec.tokens) : spec.metaspace !== undefined ? isolatedInMerges(spec.merges ?? [], (c) => this.ids.has(String.fromCharCode(c)) || byteTokens[c] >= 0) : undefined,
      fuseUnk: spec.fuseUnk === true,
      pre: spec.pre,
    });
    this.table = new PieceTable(spec, spec.byteLevel ? tokenBytes : undefined);
    this.splitAll = new SpecialSplitter(spec.addedTokens);
    this.splitUser = new SpecialSplitter(spec.addedTokens.filter((t) => !t.special));
  }

  static fromGGUF(g: GgufFile, source?: string): Tokenizer {
    return new Tokenizer(vocabFromGGUF(g, source));
  }

  /** From tokenizer.json (text or parsed), optionally with tokenizer_config.json for the chat template. */
  static fromJSON(json: string | object, config?: string | object, source?: string, eogIds?: readonly number[]): Tokenizer {
    return new Tokenizer(vocabFromJSON(json, config, source, eogIds));
  }

  /**
   * GGUF or tokenizer.json, picked by content (GGUF magic vs JSON). A tokenizer_config.json
   * beside a tokenizer.json is read for the chat template when present.
   */
  static async fromFile(path: string): Promise<Tokenizer> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new PeftError("TOKENIZER_FILE", `${path}: cannot read (${(e as Error).message})`);
    }
    if (bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46) {
      const g = await readGGUF(bytes);
      try {
        return Tokenizer.fromGGUF(g, path);
      } finally {
        await g.close();
      }
    }
    let i = 0;
    while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
    if (bytes[i] !== 0x7b) throw new PeftError("TOKENIZER_FILE", `${path}: neither a GGUF file nor a tokenizer.json (JSON object)`);
    let config: string | undefined;
    try {
      config = await readFile(join(dirname(path), "tokenizer_config.json"), "utf8");
    } catch { /* no config beside it: no chat template */ }
    const text = new TextDecoder().decode(bytes);
    // generation_config.json's eos_token_id list (Llama 3 Instruct, Qwen2.5, Phi-3) also ends generation.
    const genPath = join(dirname(path), "generation_config.json");
    const gen = await readFile(genPath, "utf8").catch(() => undefined);
    if (gen === undefined) return Tokenizer.fromJSON(text, config, path);
    const plain = vocabFromJSON(text, config, path);
    return new Tokenizer({ ...plain, eogIds: endOfGenerationIds(plain.tokens, [...(plain.eogIds ?? []), ...generationConfigEosIds(gen, genPath, plain.tokens.length)]) });
  }

  get vocabSize(): number {
    return this.spec.tokens.length;
  }
  get bosId(): number {
    return this.spec.bosId;
  }
  get eosId(): number {
    return this.spec.eosId;
  }
  /** Ids that end generation: EOS, EOT/EOM and the family's turn-end tokens (tokenizer/eog.ts). */
  get eogIds(): readonly number[] {
    return this.spec.eogIds ?? (this.spec.eosId >= 0 ? [this.spec.eosId] : []);
  }
  get padId(): number {
    return this.spec.padId;
  }
  get unkId(): number {
    return this.spec.unkId;
  }

  /** The token's string as the vocabulary spells it (▁ / Ġ included). */
  idToToken(id: number): string {
    const t = this.spec.tokens[id];
    if (t === undefined) throw new PeftError("TOKENIZER_BAD_ID", `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    return t;
  }

  /** Id of a token spelled as the vocabulary spells it, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") throw new PeftError("TOKENIZER_BAD_INPUT", `encode: text must be a string, got ${typeof text}`);
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? true;
    const spec = this.spec;
    const out: number[] = [];
    if (addSpecial && spec.addBos && spec.bosId >= 0) out.push(spec.bosId);
    if (spec.normalize) text = text.normalize(spec.normalize);
    let prevSpecial = true; // llama.cpp: the first fragment and any after a token get the space prefix
    let first = true;
    const prefix = spec.model === "spm" && spec.addSpacePrefix;
    const meta = spec.metaspace;
    (parseSpecial ? this.splitAll : this.splitUser).split(
      text,
      (frag) => {
        let add = prefix && prevSpecial;
        if (meta !== undefined && meta !== "never") {
          const c = frag.charCodeAt(0);
          add = meta === "force" || ((meta === "always" || first) && c !== 0x20 && c !== 0x2581);
        }
        this.engine.encodeInto(frag, add, out);
        prevSpecial = false;
        first = false;
      },
      (id) => {
        out.push(id);
        prevSpecial = true;
        first = false;
      },
    );
    if (addSpecial && spec.addEos && spec.eosId >= 0) out.push(spec.eosId);
    return out;
  }

  encodeBatch(texts: string[], options: EncodeOptions = {}): number[][] {
    return texts.map((t) => this.encode(t, options));
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(this.table.bytes(ids, options.skipSpecial ?? false));
  }

  /** Raw bytes of the ids (what decode() turns into text). */
  decodeBytes(ids: ArrayLike<number>, options: DecodeOptions = {}): Uint8Array {
    return this.table.bytes(ids, options.skipSpecial ?? false);
  }

  /** Renders the vocabulary's chat template (GGUF tokenizer.chat_template / tokenizer_config chat_template). */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions & { template?: string } = {}): string {
    const src = options.template ?? this.spec.chatTemplate;
    if (!src) throw new PeftError("CHAT_TEMPLATE_MISSING", `${this.spec.source}: has no chat template (pass options.template)`);
    const name = (id: number) => (id >= 0 ? this.spec.tokens[id] : "");
    return renderChatTemplate(src, messages, {
      bos: this.spec.bosToken ?? name(this.spec.bosId),
      eos: this.spec.eosToken ?? name(this.spec.eosId),
    }, options, `${this.spec.source} chat template`);
  }

  /** Token ids of the rendered chat (special tokens in the template are parsed; no extra BOS). */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions & { template?: string } = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecial: false, parseSpecial: true });
  }

  /** Incremental decoder for streaming generation: never emits half a UTF-8 character. */
  /** Incremental decoding; `after`: ids already shown (a prompt being continued). */
  createStreamDecoder(options: DecodeOptions & { after?: ArrayLike<number> } = {}): StreamDecoder {
    return createStreamDecoder(this.table, options.skipSpecial ?? false, options.after);
  }
}

/**
 * SPM merges can cross a "▁" only if some token has ▁ right after another char; without such
 * a token each "▁▁word" run can be encoded on its own with identical ids.
 */
function spmChunkSafe(tokens: string[]): boolean {
  for (const t of tokens) {
    for (let i = t.indexOf("\u2581", 1); i > 0; i = t.indexOf("\u2581", i + 1)) {
      if (t[i - 1] !== "\u2581") return false;
    }
  }
  return true;
}

/**
 * ASCII chars (not space) that appear in no token of two or more chars: such a char is always a
 * symbol of its own, so the text can be cut around it without changing any id.
 */
function isolatedAscii(tokens: string[]): Uint8Array {
  const out = new Uint8Array(128).fill(1);
  out[0x20] = 0;
  for (const t of tokens) {
    if (t.length < 2) continue;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c < 128) out[c] = 0;
    }
  }
  return out;
}

/**
 * Rank BPE (HF): an ASCII char is a symbol of its own unless its token, or its byte-fallback
 * token <0xNN>, is one side of some merge; a char that would become <unk> is never cut around
 * (fuse_unk joins neighbouring unknowns).
 */
function isolatedInMerges(merges: Array<[string, string]>, known: (c: number) => boolean): Uint8Array {
  const out = new Uint8Array(128);
  for (let c = 0; c < 128; c++) out[c] = c !== 0x20 && known(c) ? 1 : 0;
  const mark = (t: string) => {
    if (t.length === 1 && t.charCodeAt(0) < 128) out[t.charCodeAt(0)] = 0;
    else if (t.length === 6 && t.startsWith("<0x") && t.endsWith(">")) {
      const b = parseInt(t.slice(3, 5), 16);
      if (b < 128) out[b] = 0;
    }
  };
  for (const [a, b] of merges) {
    mark(a);
    mark(b);
  }
  return out;
}
