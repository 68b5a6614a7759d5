/** Tokenizers: SentencePiece-BPE and byte-level BPE in WASM, from GGUF or tokenizer.json. */
export { type DecodeOptions, type EncodeOptions, Tokenizer } from "./tokenizer.ts";
export type { StreamDecoder } from "./decoder.ts";
export type { AddedToken, PreTokenizer, VocabSpec } from "./vocab_spec.ts";
export { TokenType } from "./vocab_spec.ts";
export type { ChatMessage, ChatTemplateOptions } from "./chat_template.ts";
export { NAMED_CHAT_TEMPLATES } from "./chat_template.ts";
