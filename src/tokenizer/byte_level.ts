/**
 * GPT-2's byte <-> unicode alphabet (bytes_to_unicode in openai/gpt-2 encoder.py): printable
 * Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in order. Byte-level vocabs
 * spell tokens in this alphabet; we convert them to raw bytes once at load time so the WASM
 * works on UTF-8 bytes directly.
 */
function buildByteToChar(): string[] {
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return map;
}

export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();
/** UTF-16 code unit (< 0x144) -> byte, -1 outside the alphabet. */
const CHAR_TO_BYTE = new Int16Array(0x144).fill(-1);
BYTE_TO_CHAR.forEach((c, b) => (CHAR_TO_BYTE[c.charCodeAt(0)] = b));
let scratch = new Uint8Array(256);
const utf8 = new TextEncoder();

/**
 * Raw bytes of a byte-level token. Chars outside the alphabet (e.g. in added tokens) are kept
 * as their UTF-8 bytes; `ok` is false then.
 */
export function byteLevelToBytes(token: string): { bytes: Uint8Array; ok: boolean } {
  const n = token.length;
  if (scratch.length < n * 3) scratch = new Uint8Array(n * 3);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const c = token.charCodeAt(i);
    const b = c < 0x144 ? CHAR_TO_BYTE[c] : -1;
    if (b < 0) return { bytes: slowBytes(token), ok: false };
    scratch[k++] = b;
  }
  return { bytes: scratch.slice(0, k), ok: true };
}

function slowBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (const ch of token) {
    const c = ch.codePointAt(0)!;
    const b = c < 0x144 ? CHAR_TO_BYTE[c] : -1;
    if (b >= 0) out.push(b);
    else for (const x of utf8.encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}
