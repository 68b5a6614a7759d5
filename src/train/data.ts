/**
 * Training data: a file -> fixed-length next-token examples with a loss mask -> seeded batches.
 *
 * Formats
 *  - plain text: the whole file tokenized once (BOS first), cut into windows of seqLen+1 tokens
 *    every `stride` tokens (default seqLen: consecutive windows share one token); a remainder
 *    shorter than a window is dropped. Eval windows come from the END of the file so the eval
 *    text is held out of training.
 *  - JSONL, one record a line: {"text"} (loss on every token), {"prompt","completion"} (loss only
 *    on the completion), {"messages":[{role, content}...]} (rendered with the tokenizer's chat
 *    template; loss only on assistant turns, found by rendering the conversation incrementally).
 *    Records are split into train/eval by a seeded shuffle; records longer than seqLen+1 tokens
 *    are truncated; with `packing`, consecutive records are concatenated (EOS between them) into
 *    sequences of up to seqLen+1 tokens. Packed records can attend to each other (no
 *    block-diagonal mask), as in TRL's classic ConstantLengthDataset packing.
 *
 * Example: input[t] = token t, target[t] = token t+1, or IGNORE_INDEX (-100) where there is no
 * loss (prompt, user turns, padding). Padding goes at the end, so causal attention never lets a
 * real position see it.
 */
import { extname, readFile } from "../util/host.ts";
import { PeftError } from "../errors.ts";
import { NAMED_CHAT_TEMPLATES } from "../tokenizer/chat_template.ts";
import { deriveSeed, Rng } from "../util/rng.ts";

/** What the data pipeline needs from a tokenizer (src/tokenizer's Tokenizer satisfies it). */
export interface TextTokenizer {
  encode(text: string, o?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  bosId: number;
  eosId: number;
  applyChatTemplate?(messages: ChatMessage[], o?: { addGenerationPrompt?: boolean; template?: string }): string;
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** PyTorch's cross-entropy ignore_index: positions with this target carry no loss. */
export const IGNORE_INDEX = -100;

export interface Example {
  /** [seqLen] token ids, padded at the end. */
  input: Int32Array;
  /** [seqLen] next-token ids, IGNORE_INDEX where masked or padded. */
  target: Int32Array;
  /** Positions before the padding (default seqLen). */
  length?: number;
}

export interface DataOptions {
  seqLen: number;
  /** Plain text only: tokens between window starts (default seqLen). */
  stride?: number;
  /** Fraction of the data held out for evaluation, in [0, 1). */
  evalFraction: number;
  seed: number;
  /** JSONL only: concatenate short records into full sequences. */
  packing?: boolean;
  /** "auto" (default): .jsonl / .ndjson files are JSONL, anything else plain text. */
  format?: "auto" | "text" | "jsonl";
  /** Use at most this many sequences (text windows) or records (JSONL), counted from the start of the file, before the split. */
  maxExamples?: number;
  /** Jinja chat template for {"messages"} records, instead of the tokenizer's own. */
  chatTemplate?: string;
}

export interface SplitStats {
  sequences: number;
  /** Positions whose target carries loss. */
  lossTokens: number;
}

export interface DatasetStats {
  path: string;
  format: "text" | "jsonl";
  seqLen: number;
  /** Tokens read from the file (text: after maxExamples; JSONL: over the records used, before truncation). */
  tokens: number;
  /** JSONL records used (0 for plain text). */
  records: number;
  /** Records cut to seqLen+1 tokens. */
  truncated: number;
  /** Records left without any loss token (e.g. a completion truncated away). */
  dropped: number;
  train: SplitStats;
  eval: SplitStats;
}

export interface Dataset {
  train: Example[];
  eval: Example[];
  stats: DatasetStats;
}

/** A token sequence and, per token, whether predicting it carries loss. */
interface Tokenized {
  ids: number[];
  loss: boolean[];
}

function validateOptions(o: DataOptions): void {
  const bad = (what: string, got: unknown) => {
    throw new PeftError("BAD_DATA_OPTION", `data option ${what}, got ${JSON.stringify(got)}`);
  };
  if (!Number.isInteger(o.seqLen) || o.seqLen < 1) bad("seqLen must be an integer >= 1", o.seqLen);
  if (o.stride !== undefined && !(Number.isInteger(o.stride) && o.stride >= 1)) bad("stride must be an integer >= 1", o.stride);
  if (!(typeof o.evalFraction === "number" && o.evalFraction >= 0 && o.evalFraction < 1)) bad("evalFraction must be in [0, 1)", o.evalFraction);
  if (!Number.isSafeInteger(o.seed)) bad("seed must be an integer", o.seed);
  if (o.maxExamples !== undefined && !(Number.isInteger(o.maxExamples) && o.maxExamples >= 1)) {
    bad("maxExamples must be an integer >= 1", o.maxExamples);
  }
  if (o.format !== undefined && !["auto", "text", "jsonl"].includes(o.format)) bad(`format must be "auto", "text" or "jsonl"`, o.format);
}

async function readDataFile(path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === "ENOENT" ? "not found" : code === "EISDIR" ? "is a directory" : (e as Error).message;
    throw new PeftError("DATA_NOT_FOUND", `data file ${path}: ${why}`, { cause: e });
  }
  const text = decodeText(bytes, path);
  if (text.trim() === "") throw new PeftError("DATA_EMPTY", `data file ${path} is empty`);
  return text;
}

/**
 * The file as UTF-8 text, or DATA_NOT_TEXT naming the file: a UTF-16 file, a binary file or
 * invalid UTF-8 would otherwise be decoded into replacement characters and NULs and trained on
 * silently.
 */
function decodeText(bytes: Uint8Array, path: string): string {
  const notText = (why: string) => new PeftError("DATA_NOT_TEXT", `data file ${path} ${why}`);
  const [b0, b1] = bytes;
  if ((b0 === 0xff && b1 === 0xfe) || (b0 === 0xfe && b1 === 0xff)) {
    throw notText("is UTF-16 (it starts with a UTF-16 byte order mark); convert it to UTF-8, e.g. iconv -f UTF-16 -t UTF-8");
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    throw notText(`contains NUL bytes (the first at byte ${nul}): it is binary or UTF-16 without a byte order mark, not UTF-8 text`);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const loose = new TextDecoder("utf-8").decode(bytes);
    const line = loose.slice(0, loose.indexOf("\uFFFD")).split("\n").length;
    throw notText(`is not valid UTF-8 (the first bad byte is on line ${line}); convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8`);
  }
  checkNotBinary(text, notText);
  return text;
}

/** Control characters other than tab, newlines and form feed: a binary file that happens to be valid UTF-8 (or was decoded leniently). */
function checkNotBinary(text: string, notText: (why: string) => PeftError): void {
  let control = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c) control++;
  }
  if (control > Math.max(8, text.length / 100)) throw notText(`looks binary: ${control} of its ${text.length} characters are control characters`);
}

/**
 * Training data given as text rather than a path (a web page's pasted or dropped text). `name`
 * labels messages, and with format "auto" a name ending in .jsonl / .ndjson means JSONL.
 */
export interface TrainingText {
  text: string;
  name?: string;
}

/** Loads, tokenizes, splits and (for JSONL) packs a data file (path) or text into fixed-length examples. */
export async function loadDataset(source: string | TrainingText, tok: TextTokenizer, opts: DataOptions): Promise<Dataset> {
  validateOptions(opts);
  const { path, text } = await readSource(source);
  return formatOf(path, opts) === "text" ? textDataset(path, text, tok, opts) : jsonlDataset(path, text, tok, opts);
}

/**
 * The whole file (or text) as evaluation examples, masked as training masks them (JSONL: loss only
 * where training has it; plain text: overlapping windows score each token once). In file order.
 */
export async function loadEvalSet(source: string | TrainingText, tok: TextTokenizer, opts: Omit<DataOptions, "evalFraction" | "seed">): Promise<Dataset> {
  const o = { ...opts, evalFraction: 0, seed: 0 };
  validateOptions(o);
  const { path, text } = await readSource(source);
  const ds = formatOf(path, o) === "text" ? textDataset(path, text, tok, o, true) : jsonlDataset(path, text, tok, o);
  return { train: [], eval: ds.train, stats: { ...ds.stats, train: splitStats([]), eval: ds.stats.train } };
}

/** A source's name for messages and its text: a path read and checked, or a TrainingText checked. */
async function readSource(source: string | TrainingText): Promise<{ path: string; text: string }> {
  const path = typeof source === "string" ? source : dataName(source);
  return { path, text: typeof source === "string" ? await readDataFile(path) : checkText(source.text, path) };
}

function formatOf(path: string, o: DataOptions): "text" | "jsonl" {
  const ext = extname(path).toLowerCase();
  return o.format === "text" || o.format === "jsonl" ? o.format : ext === ".jsonl" || ext === ".ndjson" ? "jsonl" : "text";
}

/** A TrainingText's name for messages. */
export function dataName(source: TrainingText): string {
  return source.name ?? "<training text>";
}

function checkText(text: unknown, name: string): string {
  if (typeof text !== "string") throw new PeftError("BAD_DATA_OPTION", `data ${name}: text must be a string, got ${typeof text}`);
  checkNotBinary(text, (why) => new PeftError("DATA_NOT_TEXT", `data ${name} ${why}`));
  if (text.trim() === "") throw new PeftError("DATA_EMPTY", `data ${name} is empty`);
  return text;
}

// ---------------------------------------------------------------- plain text

/** `scoreOnce`: the training windows mask the targets an earlier window scored (for evaluating a whole file). */
function textDataset(path: string, text: string, tok: TextTokenizer, o: DataOptions, scoreOnce = false): Dataset {
  const { seqLen } = o;
  const stride = o.stride ?? seqLen;
  let tokens = withBos(tok, tok.encode(text, { addSpecial: false }));
  const need = seqLen + 1;
  if (tokens.length < need) {
    throw new PeftError(
      "DATA_TOO_SHORT",
      `data file ${path} is too short for seqLen ${seqLen}: needs at least seqLen+1 = ${need} tokens, has ${tokens.length}`,
    );
  }
  if (o.maxExamples !== undefined) tokens = tokens.slice(0, (o.maxExamples - 1) * stride + need);

  let trainTokens = tokens, evalTokens: number[] = [];
  if (o.evalFraction > 0) {
    const evalLen = Math.max(need, Math.round(o.evalFraction * tokens.length));
    if (tokens.length - evalLen < need) {
      throw new PeftError(
        "DATA_TOO_SHORT",
        `data file ${path} is too short for a train/eval split with seqLen ${seqLen}: needs at least 2 × (seqLen+1) = ${2 * need} tokens, has ${tokens.length}`,
      );
    }
    trainTokens = tokens.slice(0, tokens.length - evalLen);
    evalTokens = tokens.slice(tokens.length - evalLen);
  }
  const train = windows(trainTokens, seqLen, stride, scoreOnce);
  const evalSet = evalTokens.length ? windows(evalTokens, seqLen, stride, true) : [];
  return {
    train,
    eval: evalSet,
    stats: {
      path, format: "text", seqLen, tokens: tokens.length, records: 0, truncated: 0, dropped: 0,
      train: splitStats(train), eval: splitStats(evalSet),
    },
  };
}

/**
 * Windows of seqLen+1 tokens every `stride` tokens. For eval with overlapping windows, targets
 * an earlier window already scored are masked, so eval loss counts each token once (the
 * strided-perplexity recipe of HF's perplexity guide).
 */
function windows(tokens: number[], seqLen: number, stride: number, maskOverlap: boolean): Example[] {
  const out: Example[] = [];
  const overlap = Math.max(0, seqLen - stride);
  for (let s = 0, k = 0; s + seqLen + 1 <= tokens.length; s += stride, k++) {
    const input = Int32Array.from(tokens.slice(s, s + seqLen));
    const target = Int32Array.from(tokens.slice(s + 1, s + seqLen + 1));
    if (maskOverlap && k > 0) target.fill(IGNORE_INDEX, 0, overlap);
    out.push({ input, target });
  }
  return out;
}

// ---------------------------------------------------------------- JSONL

function jsonlDataset(path: string, text: string, tok: TextTokenizer, o: DataOptions): Dataset {
  const { seqLen } = o;
  const records: Tokenized[] = [];
  let tokens = 0, truncated = 0, dropped = 0;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (o.maxExamples !== undefined && records.length + dropped >= o.maxExamples) break;
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `${path}:${i + 1}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new PeftError("DATA_BAD_JSON", `${where}: invalid JSON: ${(e as Error).message}`);
    }
    const t = tokenizeRecord(rec, tok, where, o.chatTemplate);
    tokens += t.ids.length;
    if (t.ids.length > seqLen + 1) {
      t.ids.length = seqLen + 1;
      t.loss.length = seqLen + 1;
      truncated++;
    }
    if (!t.loss.some((l, j) => l && j > 0)) {
      dropped++;
      continue;
    }
    records.push(t);
  }
  if (records.length === 0) {
    throw new PeftError("DATA_EMPTY", `data file ${path} has no usable records (${dropped} without any loss token)`);
  }

  // Split records (not sequences) so packed eval sequences never contain train records.
  let nEval = o.evalFraction > 0 ? Math.max(1, Math.round(o.evalFraction * records.length)) : 0;
  if (nEval > 0 && records.length - nEval < 1) {
    throw new PeftError("DATA_TOO_SHORT", `data file ${path} has ${records.length} record(s): a train/eval split needs at least 2`);
  }
  nEval = Math.min(nEval, records.length - 1);
  const perm = new Rng(deriveSeed(o.seed, 0x5911)).permutation(records.length);
  const isEval = new Uint8Array(records.length);
  for (let k = 0; k < nEval; k++) isEval[perm[k]] = 1;
  const trainRecs = records.filter((_, i) => !isEval[i]);
  const evalRecs = records.filter((_, i) => isEval[i]);

  const toExamples = (recs: Tokenized[]) => (o.packing ? pack(recs, seqLen, tok.eosId) : recs).map((r) => toExample(r, seqLen, tok.eosId));
  const train = toExamples(trainRecs);
  const evalSet = toExamples(evalRecs);
  return {
    train,
    eval: evalSet,
    stats: {
      path, format: "jsonl", seqLen, tokens, records: records.length + dropped, truncated, dropped,
      train: splitStats(train), eval: splitStats(evalSet),
    },
  };
}

function withBos(tok: TextTokenizer, ids: number[]): number[] {
  return tok.bosId >= 0 ? [tok.bosId, ...ids] : ids;
}

function isString(v: unknown): v is string {
  return typeof v === "string";
}

/** One JSONL record -> tokens with a loss flag per token. `where` is "file:line" for errors. */
export function tokenizeRecord(rec: unknown, tok: TextTokenizer, where: string, chatTemplate?: string): Tokenized {
  if (rec === null || typeof rec !== "object" || Array.isArray(rec)) {
    throw new PeftError("DATA_BAD_RECORD", `${where}: expected a JSON object, got ${JSON.stringify(rec)?.slice(0, 60)}`);
  }
  const r = rec as Record<string, unknown>;
  const eos = tok.eosId >= 0 ? [tok.eosId] : [];
  if ("messages" in r) return tokenizeChat(r.messages, tok, where, chatTemplate);
  if ("prompt" in r || "completion" in r) {
    if (!isString(r.prompt) || !isString(r.completion)) {
      throw new PeftError("DATA_BAD_RECORD", `${where}: "prompt" and "completion" must both be strings`);
    }
    const prompt = withBos(tok, tok.encode(r.prompt, { addSpecial: false }));
    // Tokenize prompt+completion together (as TRL does) so the boundary tokenizes as it will at
    // inference; fall back to separate encoding when the prompt's tokens are not a prefix.
    const full = withBos(tok, tok.encode(r.prompt + r.completion, { addSpecial: false }));
    const prefixOk = full.length >= prompt.length && prompt.every((id, i) => full[i] === id);
    const ids = prefixOk ? [...full, ...eos] : [...prompt, ...tok.encode(r.completion, { addSpecial: false }), ...eos];
    return { ids, loss: ids.map((_, i) => i >= prompt.length) };
  }
  if ("text" in r) {
    if (!isString(r.text)) throw new PeftError("DATA_BAD_RECORD", `${where}: "text" must be a string`);
    const ids = [...withBos(tok, tok.encode(r.text, { addSpecial: false })), ...eos];
    return { ids, loss: ids.map((_, i) => i > 0 || tok.bosId < 0) };
  }
  throw new PeftError(
    "DATA_BAD_RECORD",
    `${where}: unknown record shape with keys [${Object.keys(r).join(", ")}]; expected {"text"}, {"prompt","completion"} or {"messages"}`,
  );
}

/**
 * Chat: render the whole conversation once, and for each assistant turn i find its span as
 * [render(messages[:i], generation prompt), render(messages[:i+1])); both renders must be
 * prefixes of the full one (true of ordinary chat templates).
 */
function tokenizeChat(messages: unknown, tok: TextTokenizer, where: string, template?: string): Tokenized {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new PeftError("DATA_BAD_RECORD", `${where}: "messages" must be a non-empty list`);
  }
  messages.forEach((m, i) => {
    if (m === null || typeof m !== "object" || !isString(m.role) || !isString(m.content)) {
      throw new PeftError("DATA_BAD_RECORD", `${where}: messages[${i}] must be {"role": string, "content": string}`);
    }
  });
  const msgs = messages as ChatMessage[];
  const render = tok.applyChatTemplate?.bind(tok);
  // The tokenizer's CHAT_TEMPLATE_MISSING names the model's file; this error adds the data file and line.
  const noTemplate = (cause?: PeftError) =>
    new PeftError(
      "DATA_NO_CHAT_TEMPLATE",
      `${where}: a {"messages"} record needs a chat template and the model has none${cause ? ` (${cause.message})` : ""}; give one: ` +
        `chatTemplate (Jinja source), on the command line --chat-template <file.jinja|${Object.keys(NAMED_CHAT_TEMPLATES).join("|")}>`,
      { cause },
    );
  if (!render) throw noTemplate();
  const apply = (m: ChatMessage[], o: { addGenerationPrompt: boolean }) => {
    try {
      return render(m, { ...o, template });
    } catch (e) {
      throw e instanceof PeftError && e.code === "CHAT_TEMPLATE_MISSING" ? noTemplate(e) : e;
    }
  };
  const enc = (s: string) => tok.encode(s, { addSpecial: false, parseSpecial: true });
  const full = apply(msgs, { addGenerationPrompt: false });
  const ids = enc(full);
  const loss = ids.map(() => false);
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role !== "assistant") continue;
    let before = "";
    if (i > 0) before = apply(msgs.slice(0, i), { addGenerationPrompt: true });
    const after = apply(msgs.slice(0, i + 1), { addGenerationPrompt: false });
    if (!after.startsWith(before) || !full.startsWith(after)) {
      throw new PeftError(
        "CHAT_TEMPLATE_NOT_INCREMENTAL",
        `${where}: the chat template does not render messages[${i}] as a continuation of the earlier turns, so the assistant span cannot be found`,
      );
    }
    const a = before ? enc(before).length : 0;
    const b = Math.min(enc(after).length, ids.length);
    for (let j = a; j < b; j++) loss[j] = true;
  }
  return { ids, loss };
}

/** Greedy packing in order: append records while they fit in seqLen+1 tokens, EOS-separated. */
function pack(recs: Tokenized[], seqLen: number, eosId: number): Tokenized[] {
  const out: Tokenized[] = [];
  let cur: Tokenized = { ids: [], loss: [] };
  for (const r of recs) {
    const ids = [...r.ids], loss = [...r.loss];
    if (eosId >= 0 && ids[ids.length - 1] !== eosId && ids.length < seqLen + 1) {
      ids.push(eosId); // separator only: predicting it carries no loss
      loss.push(false);
    }
    if (cur.ids.length > 0 && cur.ids.length + ids.length > seqLen + 1) {
      out.push(cur);
      cur = { ids: [], loss: [] };
    }
    cur.ids.push(...ids);
    // The first token of a record follows another record's EOS: never a target across records.
    cur.loss.push(...loss.map((l, j) => (j === 0 && cur.ids.length > ids.length ? false : l)));
  }
  if (cur.ids.length) out.push(cur);
  return out;
}

function toExample(t: Tokenized, seqLen: number, padId: number): Example {
  const input = new Int32Array(seqLen).fill(Math.max(0, padId));
  const target = new Int32Array(seqLen).fill(IGNORE_INDEX);
  const n = Math.min(t.ids.length - 1, seqLen);
  for (let i = 0; i < n; i++) {
    input[i] = t.ids[i];
    if (t.loss[i + 1]) target[i] = t.ids[i + 1];
  }
  return { input, target, length: n };
}

function splitStats(ex: Example[]): SplitStats {
  let lossTokens = 0;
  for (const e of ex) for (const t of e.target) if (t !== IGNORE_INDEX) lossTokens++;
  return { sequences: ex.length, lossTokens };
}

// ---------------------------------------------------------------- batching

export interface Batch {
  /** [rows, seqLen] row-major. */
  input: Int32Array;
  /** [rows, seqLen] row-major, IGNORE_INDEX where no loss. */
  target: Int32Array;
  rows: number;
  seqLen: number;
  /** Targets that carry loss (the denominator of a mean token loss). */
  lossTokens: number;
  /** The examples of its rows, in order (padding rows of a "pad" batch have none). */
  examples: readonly Example[];
}

/**
 * What happens to a last batch with fewer than batchSize examples:
 * "keep" (default, like HF Trainer's dataloader_drop_last=False): a smaller batch;
 * "drop": left out; "pad": filled to batchSize with rows that carry no loss, for fixed GPU shapes.
 */
export type LastBatch = "keep" | "drop" | "pad";

/**
 * One batch of `rows`. With `trim`, its sequences are cut to the longest row's real length (the
 * cut positions are padding: no loss, and causal attention never lets a real position see them).
 */
function makeBatch(rows: Example[], batchSize: number, last: LastBatch, trim = false): Batch {
  const full = rows[0].input.length;
  const seqLen = trim ? Math.max(1, ...rows.map((e) => e.length ?? full)) : full;
  const n = last === "pad" ? batchSize : rows.length;
  const input = new Int32Array(n * seqLen);
  const target = new Int32Array(n * seqLen).fill(IGNORE_INDEX);
  let lossTokens = 0;
  rows.forEach((e, i) => {
    input.set(e.input.subarray(0, seqLen), i * seqLen);
    target.set(e.target.subarray(0, seqLen), i * seqLen);
    for (const t of e.target) if (t !== IGNORE_INDEX) lossTokens++;
  });
  return { input, target, rows: n, seqLen, lossTokens, examples: rows };
}

function chunk(order: Example[], batchSize: number, last: LastBatch, trim = false): Batch[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new PeftError("BAD_TRAIN_OPTION", `batchSize must be an integer >= 1, got ${batchSize}`);
  }
  const out: Batch[] = [];
  for (let i = 0; i < order.length; i += batchSize) {
    const rows = order.slice(i, i + batchSize);
    if (rows.length < batchSize && last === "drop") break;
    out.push(makeBatch(rows, batchSize, last, trim));
  }
  return out;
}

/**
 * transformers' LengthGroupedSampler order: a seeded permutation cut into megabatches of
 * min(n / (4·batchSize), 50)·batchSize examples, each sorted longest first, and the megabatch
 * holding the longest example moved to the front (an out-of-memory error shows at once).
 */
export function lengthGroupedOrder(lengths: readonly number[], batchSize: number, rng: Rng): number[] {
  const mult = Math.max(1, Math.min(Math.floor(lengths.length / (batchSize * 4)), 50));
  const size = mult * batchSize;
  const perm = rng.permutation(lengths.length);
  const megabatches: number[][] = [];
  for (let i = 0; i < perm.length; i += size) megabatches.push(perm.slice(i, i + size).sort((a, b) => lengths[b] - lengths[a]));
  if (megabatches.length === 0) return [];
  let top = 0;
  megabatches.forEach((m, i) => {
    if (lengths[m[0]] > lengths[megabatches[top][0]]) top = i;
  });
  [megabatches[0][0], megabatches[top][0]] = [megabatches[top][0], megabatches[0][0]];
  return megabatches.flat();
}

/**
 * Training batches of one epoch, in an order shuffled by (seed, epoch): same inputs, same batches.
 * `groupByLength`: transformers' length-grouped order, each batch cut to its longest row.
 */
export function batches(
  examples: readonly Example[],
  batchSize: number,
  seed: number,
  epoch: number,
  opts: { last?: LastBatch; groupByLength?: boolean } = {},
): Batch[] {
  const rng = new Rng(deriveSeed(seed, 0xba7c, epoch));
  const order = opts.groupByLength
    ? lengthGroupedOrder(examples.map((e) => e.length ?? e.input.length), batchSize, rng)
    : rng.permutation(examples.length);
  return chunk(order.map((i) => examples[i]), batchSize, opts.last ?? "keep", opts.groupByLength);
}

/** Eval batches in dataset order. */
export function evalBatches(examples: readonly Example[], batchSize: number, opts: { last?: LastBatch } = {}): Batch[] {
  return chunk([...examples], batchSize, opts.last ?? "keep");
}

/** Number of batches `batches` yields per epoch. */
export function batchesPerEpoch(examples: number, batchSize: number, last: LastBatch = "keep"): number {
  return last === "drop" ? Math.floor(examples / batchSize) : Math.ceil(examples / batchSize);
}
