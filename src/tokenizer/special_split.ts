/**
 * Splits text into plain fragments and added/special tokens before BPE, longest token first at
 * each position (as HF's added-token trie does). Special tokens are matched only when asked
 * (parseSpecial), so untrusted text cannot smuggle in </s> or <|im_start|>.
 */
import type { AddedToken } from "./vocab_spec.ts";

export type Piece = string | { id: number };

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

export class SpecialSplitter {
  private re: RegExp | null;
  private byContent = new Map<string, number>();

  constructor(tokens: AddedToken[]) {
    const sorted = [...tokens].sort((a, b) => b.content.length - a.content.length);
    for (const t of sorted) if (!this.byContent.has(t.content)) this.byContent.set(t.content, t.id);
    // Capture group 1 is the token itself; \s* around it is what lstrip / rstrip swallow.
    const alts = sorted.map((t) => `${t.lstrip ? "\\s*" : ""}(?:${escapeRegExp(t.content)})${t.rstrip ? "\\s*" : ""}`);
    this.re = alts.length ? new RegExp(alts.join("|"), "g") : null;
  }

  /** Calls onText for plain fragments (non-empty) and onToken for matched tokens, in order. */
  split(text: string, onText: (s: string) => void, onToken: (id: number) => void): void {
    if (!this.re) {
      if (text.length) onText(text);
      return;
    }
    this.re.lastIndex = 0;
    let last = 0;
    for (let m = this.re.exec(text); m !== null; m = this.re.exec(text)) {
      if (m[0].length === 0) {
        this.re.lastIndex++;
        continue;
      }
      if (m.index > last) onText(text.slice(last, m.index));
      onToken(this.byContent.get(m[0]) ?? this.byContent.get(m[0].trim())!);
      last = m.index + m[0].length;
    }
    if (last < text.length) onText(text.slice(last));
  }
}
