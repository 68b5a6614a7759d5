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
const CHAR_TO_BYTE = new Map<number, number>(BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]));

/**
 * Raw bytes of a byte-level token. Chars outside the alphabet (e.g. in added tokens) are kept
 * as their UTF-8 bytes; `ok` is false then.
 */
export function byteLevelToBytes(token: string): { bytes: Uint8Array; ok: boolean } {
  const out: number[] = [];
  let ok = true;
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b !== undefined && ch.length === 1) out.push(b);
    else {
      ok = false;
      for (const x of new TextEncoder().encode(ch)) out.push(x);
    }
  }
  return { bytes: Uint8Array.from(out), ok };
}
