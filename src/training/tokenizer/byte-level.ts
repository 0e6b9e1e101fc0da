/**
 * GPT-2's byte-level alphabet and pre-tokenizer, shared by the BPE trainer and (implicitly) by
 * every loader of the tokenizer.json it writes.
 *
 * Byte-level BPE never sees raw bytes: each byte 0..255 is mapped to one printable Unicode
 * character (space → 'Ġ', newline → 'Ċ', ...), so tokens are plain strings with no whitespace and
 * every possible input is covered by the 256 base tokens — no unknown token is ever needed.
 */

/** byte → the printable character that stands for it (GPT-2's `bytes_to_unicode`). */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable: number[] = [];
  const range = (lo: number, hi: number): void => {
    for (let b = lo; b <= hi; b++) printable.push(b);
  };
  range(0x21, 0x7e); // '!'..'~'
  range(0xa1, 0xac); // '¡'..'¬'
  range(0xae, 0xff); // '®'..'ÿ'
  const table = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCharCode(b);
  // Bytes that are not printable as themselves take code points 256, 257, ... in byte order.
  let next = 256;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(next++);
  }
  return table;
})();

/** character → byte, the inverse of BYTE_TO_CHAR. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * GPT-2's pre-tokenization regex, written exactly as @huggingface/tokenizers (JS) compiles the
 * ByteLevel pre-tokenizer with `use_regex: true`. Training must split text the same way the
 * loader will, otherwise merges learned across a boundary would never fire at encode time.
 * (The Rust `tokenizers` crate uses the same pattern under Oniguruma; `\s` differs only on a few
 * exotic code points.)
 */
export const GPT2_PRETOKENIZE_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

const utf8 = new TextEncoder();

/** A pre-token (a piece of raw text) as its UTF-8 bytes. */
export function utf8Bytes(text: string): Uint8Array {
  return utf8.encode(text);
}

/** Raw text → its byte-level token string (each UTF-8 byte as one alphabet character). */
export function toByteLevel(text: string): string {
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/** Splits raw text into GPT-2 pre-tokens (raw text pieces, not yet byte-level encoded). */
export function preTokenize(text: string): string[] {
  return text.match(GPT2_PRETOKENIZE_PATTERN) ?? [];
}
