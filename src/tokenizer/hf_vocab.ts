/**
 * VocabSpec from a Hugging Face tokenizer.json (+ optional tokenizer_config.json for the chat
 * template and BOS/EOS names). Supported: BPE models (merges as "a b" strings or [a, b] pairs),
 * byte-level pre-tokenizers whose Split regex is one of the known families, NFC/NFKC/NFD/NFKD
 * normalizers, TemplateProcessing BOS/EOS. Anything else is refused by name, never guessed.
 */
import { PeftError } from "../errors.ts";
import { checkVocab } from "./check_vocab.ts";
import { type AddedToken, type PreTokenizer, TokenType, type VocabSpec } from "./vocab_spec.ts";
import { endOfGenerationIds } from "./eog.ts";

type Json = Record<string, unknown>;

/** Split regexes (exact tokenizer.json text) the WASM pre-tokenizers implement. */
export const KNOWN_SPLIT_REGEX: Record<string, PreTokenizer> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama3",
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama3",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+": "gpt2",
};

function bad(source: string, field: string, msg: string): PeftError {
  return new PeftError("TOKENIZER_BAD_FIELD", `${source}: ${field} ${msg}`);
}

function obj(v: unknown, source: string, field: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad(source, field, `must be an object, got ${v === null ? "null" : Array.isArray(v) ? "array" : typeof v}`);
  return v as Json;
}

function parseJson(text: string, source: string): Json {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new PeftError("TOKENIZER_BAD_JSON", `${source}: not valid JSON (${(e as Error).message})`);
  }
}

interface Normalizer {
  form?: VocabSpec["normalize"];
  /** Prepend("▁") */
  prepend: boolean;
  /** Replace(" " -> "▁") */
  replaceSpace: boolean;
}

const META = "\u2581";

function normalizerOf(n: unknown, source: string, field: string, acc: Normalizer = { prepend: false, replaceSpace: false }): Normalizer {
  if (n === null || n === undefined) return acc;
  const o = obj(n, source, field);
  const forms: Record<string, VocabSpec["normalize"]> = { NFC: "NFC", NFD: "NFD", NFKC: "NFKC", NFKD: "NFKD" };
  const unsupported = (why: string) => new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field} ${why}`);
  if (typeof o.type === "string" && forms[o.type]) {
    if (acc.form && acc.form !== forms[o.type]) throw unsupported(`chains ${acc.form} and ${o.type}`);
    if (acc.prepend || acc.replaceSpace) throw unsupported(`${o.type} after Prepend/Replace is not supported`);
    acc.form = forms[o.type];
    return acc;
  }
  if (o.type === "Prepend") {
    if (o.prepend !== META) throw unsupported(`Prepend ${JSON.stringify(o.prepend)} is not supported (only "▁")`);
    if (acc.prepend || acc.replaceSpace) throw unsupported("Prepend must come first, once");
    acc.prepend = true;
    return acc;
  }
  if (o.type === "Replace") {
    const pat = o.pattern as Json | undefined;
    if (pat?.String !== " " || o.content !== META) throw unsupported(`Replace ${JSON.stringify(pat)} -> ${JSON.stringify(o.content)} is not supported (only " " -> "▁")`);
    acc.replaceSpace = true;
    return acc;
  }
  if (o.type === "Sequence" && Array.isArray(o.normalizers)) {
    o.normalizers.forEach((x, i) => normalizerOf(x, source, `${field}.normalizers[${i}]`, acc));
    return acc;
  }
  throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.type = ${JSON.stringify(o.type)} is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend("▁"), Replace(" ", "▁"), Sequence of those)`);
}

interface Metaspace {
  prependScheme: "always" | "first" | "never";
  split: boolean;
}

function metaspaceOf(o: Json, source: string, field: string): Metaspace {
  const rep = o.replacement ?? o.str_rep;
  if (rep !== META) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.replacement = ${JSON.stringify(rep)} is not supported (only "▁")`);
  let prependScheme: Metaspace["prependScheme"] = "always";
  if (o.prepend_scheme !== undefined) {
    if (o.prepend_scheme !== "always" && o.prepend_scheme !== "first" && o.prepend_scheme !== "never") throw bad(source, `${field}.prepend_scheme`, `= ${JSON.stringify(o.prepend_scheme)} must be always, first or never`);
    prependScheme = o.prepend_scheme;
  } else if (o.add_prefix_space === false) prependScheme = "never";
  return { prependScheme, split: o.split !== false };
}

interface Decoder {
  byteFallback: boolean;
  strip?: "strip" | "metaspace";
  stripCount?: number;
}

/** SentencePiece-style decoders: Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", n, 0)] or Metaspace. */
function spmDecoderOf(d: unknown, source: string, field: string): Decoder {
  const out: Decoder = { byteFallback: false };
  if (d === null || d === undefined) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field} is missing (a SentencePiece-style tokenizer.json needs a Replace("▁", " ") or Metaspace decoder)`);
  const o = obj(d, source, field);
  const list = o.type === "Sequence" ? o.decoders : [o];
  if (!Array.isArray(list)) throw bad(source, `${field}.decoders`, "must be an array");
  let spaced = false, fused = false;
  list.forEach((x: unknown, i: number) => {
    const f = o.type === "Sequence" ? `${field}.decoders[${i}]` : field;
    const e = obj(x, source, f);
    const unsupported = (why: string) => new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${f} ${why}`);
    switch (e.type) {
      case "Replace": {
        const pat = e.pattern as Json | undefined;
        if (pat?.String !== META || e.content !== " ") throw unsupported(`Replace ${JSON.stringify(pat)} -> ${JSON.stringify(e.content)} is not supported (only "▁" -> " ")`);
        spaced = true;
        break;
      }
      case "ByteFallback":
        out.byteFallback = true;
        break;
      case "Fuse":
        fused = true;
        break;
      case "Strip":
        if (e.content !== " " || (e.stop ?? 0) !== 0 || !fused) throw unsupported(`Strip is only supported as Strip(" ", n, 0) after Fuse`);
        out.strip = "strip";
        out.stripCount = Number(e.start ?? 0);
        break;
      case "Metaspace": {
        const m = metaspaceOf(e, source, f);
        spaced = true;
        if (m.prependScheme !== "never") out.strip = "metaspace";
        break;
      }
      default:
        throw unsupported(`type = ${JSON.stringify(e.type)} is not supported (supported: Replace, ByteFallback, Fuse, Strip, Metaspace)`);
    }
  });
  if (!spaced) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field} does not turn "▁" back into spaces`);
  return out;
}

/** The pre-tokenizer family and whether it is byte-level. */
function preTokenizerOf(p: unknown, source: string, field: string): { pre: PreTokenizer; byteLevel: boolean; digits: boolean; metaspace?: Metaspace } {
  if (p === null || p === undefined) return { pre: "none", byteLevel: false, digits: false };
  const o = obj(p, source, field);
  switch (o.type) {
    case "Metaspace": {
      const m = metaspaceOf(o, source, field);
      return { pre: m.split ? "metaspace-split" : "none", byteLevel: false, digits: false, metaspace: m };
    }
    case "ByteLevel":
      if (o.add_prefix_space === true) {
        throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.add_prefix_space = true is not supported`);
      }
      return { pre: o.use_regex === false ? "none" : "gpt2", byteLevel: true, digits: false };
    case "Split": {
      const pat = obj(o.pattern, source, `${field}.pattern`);
      if (typeof pat.Regex !== "string") throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.pattern must be {"Regex": ...} (got ${JSON.stringify(pat)})`);
      const fam = KNOWN_SPLIT_REGEX[pat.Regex];
      if (!fam) throw new PeftError("TOKENIZER_UNSUPPORTED_REGEX", `${source}: ${field}.pattern.Regex ${JSON.stringify(pat.Regex)} is not a known pre-tokenizer regex (known: GPT-2, Llama-3, Qwen2)`);
      if (o.behavior !== "Isolated" || o.invert === true) {
        throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.behavior = ${JSON.stringify(o.behavior)}${o.invert ? " with invert" : ""} is not supported (only Isolated)`);
      }
      return { pre: fam, byteLevel: false, digits: false };
    }
    case "Digits":
      if (o.individual_digits !== true) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field} Digits without individual_digits is not supported`);
      return { pre: "none", byteLevel: false, digits: true };
    case "Sequence": {
      if (!Array.isArray(o.pretokenizers)) throw bad(source, `${field}.pretokenizers`, "must be an array");
      let pre = "none" as PreTokenizer, byteLevel = false, digits = false;
      o.pretokenizers.forEach((x, i) => {
        const r = preTokenizerOf(x, source, `${field}.pretokenizers[${i}]`);
        if (r.metaspace) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}: Metaspace inside a Sequence is not supported`);
        if (r.pre !== "none") {
          if (pre !== "none") throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field} has two splitting regexes`);
          pre = r.pre;
        }
        byteLevel ||= r.byteLevel;
        digits ||= r.digits;
      });
      if (digits) {
        if (pre !== "gpt2") throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}: Digits is only supported before the GPT-2 regex`);
        pre = "digits-gpt2";
      }
      return { pre, byteLevel, digits: false };
    }
    default:
      throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: ${field}.type = ${JSON.stringify(o.type)} is not supported (supported: ByteLevel, Split, Digits, Metaspace, Sequence)`);
  }
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return undefined;
}

/** Ids above this are corrupt: the largest real vocabularies have a few hundred thousand tokens. */
const MAX_TOKEN_ID = (1 << 24) - 1;

/**
 * Every id up to the largest gets a table slot, so the largest id must be plausible for the
 * number of tokens defined (at least half the id range used) before anything is sized by it.
 */
function checkIdRange(id: number, defined: number, source: string, field: string): void {
  if (id > MAX_TOKEN_ID || id >= 2 * defined + 256) {
    throw new PeftError(
      "TOKENIZER_BAD_VOCAB",
      `${source}: ${field} = ${id} is far beyond the ${defined} tokens defined (ids must be below ${Math.min(MAX_TOKEN_ID + 1, 2 * defined + 256)})`,
    );
  }
}

/** tokenizer.json (text or parsed) and optionally tokenizer_config.json (text or parsed). */
export function vocabFromJSON(json: string | object, config?: string | object, source = "tokenizer.json", extraEogIds: readonly number[] = []): VocabSpec {
  const root = obj(typeof json === "string" ? parseJson(json, source) : json, source, "top level");
  const cfg = config === undefined ? {} : obj(typeof config === "string" ? parseJson(config, "tokenizer_config.json") : config, "tokenizer_config.json", "top level");
  if (root.model === undefined) throw new PeftError("TOKENIZER_MISSING_FIELD", `${source}: no "model" field`);
  const model = obj(root.model, source, "model");
  if (model.type !== undefined && model.type !== "BPE") {
    throw new PeftError("TOKENIZER_UNSUPPORTED_MODEL", `${source}: model.type = ${JSON.stringify(model.type)} is not supported (supported: BPE)`);
  }
  const vocab = obj(model.vocab, source, "model.vocab");
  const has = (t: string) => Object.hasOwn(vocab, t);
  if (!Array.isArray(model.merges)) throw bad(source, "model.merges", `must be an array, got ${typeof model.merges}`);
  for (const k of ["continuing_subword_prefix", "end_of_word_suffix"]) {
    if (model[k]) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: model.${k} = ${JSON.stringify(model[k])} is not supported`);
  }

  const byId = new Map<number, string>();
  let maxId = -1;
  const entries = Object.entries(vocab);
  if (entries.length === 0) throw new PeftError("TOKENIZER_BAD_VOCAB", `${source}: model.vocab is empty (a vocabulary needs tokens)`);
  for (const [tok, id] of entries) {
    const field = `model.vocab[${JSON.stringify(tok).slice(0, 80)}]`;
    if (!Number.isInteger(id) || (id as number) < 0) throw bad(source, field, `must be a non-negative integer id, got ${JSON.stringify(id)}`);
    checkIdRange(id as number, entries.length, source, field);
    // Two tokens on one id: one of them would silently become unreachable.
    if (byId.has(id as number)) throw bad(source, field, `= ${id} is also the id of ${JSON.stringify(byId.get(id as number))}`);
    byId.set(id as number, tok);
    maxId = Math.max(maxId, id as number);
  }
  const merges: Array<[string, string]> = model.merges.map((m: unknown, i: number) => {
    if (typeof m === "string") {
      const parts = m.split(" ");
      if (parts.length !== 2) throw bad(source, `model.merges[${i}]`, `= ${JSON.stringify(m)} must be two tokens separated by one space`);
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return [m[0], m[1]];
    throw bad(source, `model.merges[${i}]`, `= ${JSON.stringify(m)} must be "a b" or ["a", "b"]`);
  });

  const addedTokens: AddedToken[] = [];
  const notInModel = new Set<number>();
  const added = root.added_tokens ?? [];
  if (!Array.isArray(added)) throw bad(source, "added_tokens", "must be an array");
  added.forEach((a: unknown, i: number) => {
    const t = obj(a, source, `added_tokens[${i}]`);
    if (!Number.isInteger(t.id) || (t.id as number) < 0) throw bad(source, `added_tokens[${i}].id`, `must be a non-negative integer, got ${JSON.stringify(t.id)}`);
    if (typeof t.content !== "string" || t.content === "") throw bad(source, `added_tokens[${i}].content`, "must be a non-empty string");
    const id = t.id as number;
    checkIdRange(id, entries.length + added.length, source, `added_tokens[${i}].id`);
    if (byId.get(id) === undefined) notInModel.add(id);
    else if (byId.get(id) !== t.content) notInModel.add(id); // the model's spelling is not the added text
    byId.set(id, byId.get(id) ?? t.content);
    maxId = Math.max(maxId, id);
    addedTokens.push({ id, content: t.content, special: t.special === true, lstrip: t.lstrip === true, rstrip: t.rstrip === true });
  });
  // Ids that are only added tokens keep the model's own token for BPE when it has one.
  for (const id of notInModel) if (has(byId.get(id)!) && vocab[byId.get(id)!] === id) notInModel.delete(id);

  const tokens: string[] = new Array(maxId + 1);
  for (let i = 0; i <= maxId; i++) tokens[i] = byId.get(i) ?? "";
  const types = new Uint8Array(maxId + 1).fill(TokenType.NORMAL);
  for (let i = 0; i <= maxId; i++) if (!byId.has(i)) types[i] = TokenType.UNUSED;
  for (const a of addedTokens) types[a.id] = a.special ? TokenType.CONTROL : TokenType.USER_DEFINED;

  const { pre, byteLevel: preByteLevel, metaspace: metaPre } = preTokenizerOf(root.pre_tokenizer, source, "pre_tokenizer");
  const decoder = root.decoder as Json | null | undefined;
  const byteLevel = preByteLevel || decoder?.type === "ByteLevel";
  const norm = normalizerOf(root.normalizer, source, "normalizer");
  // SentencePiece-style BPE (Llama-2 / Mistral / TinyLlama): spaces are ▁, by the normalizer
  // (Sequence[Prepend("▁"), Replace(" ", "▁")]) or by the Metaspace pre-tokenizer.
  let metaspace: VocabSpec["metaspace"];
  let dec: Decoder | undefined;
  if (!byteLevel) {
    if (norm.prepend && !norm.replaceSpace) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: normalizer Prepend("▁") without Replace(" ", "▁") is not supported`);
    if (norm.replaceSpace && metaPre) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: both a Replace(" ", "▁") normalizer and a Metaspace pre_tokenizer is not supported`);
    if (norm.replaceSpace) metaspace = norm.prepend ? "force" : "never";
    else if (metaPre) metaspace = metaPre.prependScheme;
    else {
      throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: the tokenizer is neither byte-level (ByteLevel pre_tokenizer / decoder) nor SentencePiece-style (Metaspace pre_tokenizer or Replace(" ", "▁") normalizer)`);
    }
    if (norm.form) throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: normalizer ${norm.form} on a SentencePiece-style tokenizer is not supported`);
    dec = spmDecoderOf(decoder, source, "decoder");
  } else if (norm.prepend || norm.replaceSpace) {
    throw new PeftError("TOKENIZER_UNSUPPORTED", `${source}: normalizer Prepend / Replace on a byte-level tokenizer is not supported`);
  }

  // BOS / EOS: TemplateProcessing's single template says what encode(addSpecial) adds.
  let addBos = false, addEos = false, bosId = -1, eosId = -1;
  const post = root.post_processor as Json | null | undefined;
  if (post && post.type === "TemplateProcessing") {
    if (!Array.isArray(post.single)) throw bad(source, "post_processor.single", "must be an array");
    const special = (post.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
    let seenA = false;
    post.single.forEach((p: unknown, i: number) => {
      const e = obj(p, source, `post_processor.single[${i}]`);
      if (e.Sequence) seenA = true;
      else if (e.SpecialToken) {
        const name = (e.SpecialToken as Json).id as string;
        const id = special[name]?.ids?.[0] ?? addedTokens.find((t) => t.content === name)?.id;
        if (id === undefined) throw bad(source, `post_processor.single[${i}].SpecialToken.id`, `= ${JSON.stringify(name)} is not a known token`);
        if (seenA) { addEos = true; eosId = id; } else { addBos = true; bosId = id; }
      }
    });
  }
  const idOf = (name: string | undefined) => (name === undefined ? -1 : (has(name) ? vocab[name] as number : undefined) ?? addedTokens.find((t) => t.content === name)?.id ?? -1);
  const bosName = tokenName(cfg.bos_token), eosName = tokenName(cfg.eos_token);
  if (bosId < 0) bosId = idOf(bosName);
  if (eosId < 0) eosId = idOf(eosName);
  const unkName = typeof model.unk_token === "string" ? model.unk_token : undefined;
  const tmpl = cfg.chat_template;
  return checkVocab({
    model: "bpe",
    byteLevel,
    tokens,
    merges,
    tokenTypes: types,
    pre,
    bosId,
    eosId,
    unkId: idOf(unkName),
    padId: idOf(tokenName(cfg.pad_token)),
    addBos,
    addEos,
    addSpacePrefix: false,
    ignoreMerges: model.ignore_merges === true,
    byteFallback: model.byte_fallback === true,
    metaspace,
    fuseUnk: model.fuse_unk === true,
    decodeStrip: dec?.strip,
    decodeStripCount: dec?.stripCount,
    decodeByteFallback: dec ? dec.byteFallback : undefined,
    normalize: norm.form,
    addedTokens,
    notInModel,
    chatTemplate: typeof tmpl === "string" ? tmpl : Array.isArray(tmpl) ? (tmpl.find((t: Json) => t.name === "default") as Json | undefined)?.template as string | undefined : undefined,
    bosToken: bosName,
    eosToken: eosName,
    eogIds: endOfGenerationIds(tokens, [eosId, ...extraEogIds]),
    source,
  }, { tokens: "model.vocab", bosId: "bos_token", eosId: "eos_token", unkId: "model.unk_token", padId: "pad_token" });
}
