// Character offsets of tokens, and character spans -> token ranges.
import type { TokenPieces } from "./binding.js";
import { type CharSpan, unionSpans } from "../emphasis/markup.js";
import type { TokenRange } from "./steering.js";

/** How far past a mismatch the next token's bytes are looked for (whitespace a tokenizer normalised away). */
const RESYNC_BYTES = 16;

/** The text's UTF-8 bytes (a lone surrogate as U+FFFD, as N-API hands it to the tokenizer) and, per byte, its character's UTF-16 range. */
function utf8Index(text: string) {
  const bytes: number[] = [];
  const charStart: number[] = [];
  const charEnd: number[] = [];
  for (let u = 0; u < text.length; ) {
    const cp = text.codePointAt(u)!;
    const units = cp > 0xffff ? 2 : 1;
    const encoded = cp >= 0xd800 && cp <= 0xdfff ? Buffer.from("\uFFFD") : Buffer.from(text.slice(u, u + units));
    for (const b of encoded) {
      bytes.push(b);
      charStart.push(u);
      charEnd.push(u + units);
    }
    u += units;
  }
  return { bytes: Uint8Array.from(bytes), charStart, charEnd };
}

function matchesAt(haystack: Uint8Array, at: number, needle: Uint8Array): boolean {
  if (needle.length === 0 || at + needle.length > haystack.length) return false;
  for (let k = 0; k < needle.length; k++) if (haystack[at + k] !== needle[k]) return false;
  return true;
}

/**
 * [start, end) character offsets (UTF-16, JavaScript string indices) of each token in `text`, from
 * the tokens' own bytes (`pieces`, binding.ts tokenPieces), so they are exact by construction for
 * every tokenizer: a token covers the characters its bytes are part of, so tokens that only together
 * form a character (byte fallback) share its range. A token whose bytes are not in the text (an
 * added BOS) covers nothing; a tokenizer's virtual leading space is not counted; after whitespace a
 * tokenizer normalised away, the next token is found again a few bytes on (RESYNC_BYTES); a token
 * that matches nowhere covers nothing where it is, so one mismatch never shifts the tokens after it.
 */
export function tokenOffsets(pieces: TokenPieces, text: string): Array<[number, number]> {
  const { bytes, charStart, charEnd } = utf8Index(text);
  const unitAt = (b: number) => (b < bytes.length ? charStart[b]! : text.length);
  const offsets: Array<[number, number]> = [];
  let cursor = 0;
  let pieceStart = 0;
  for (const pieceEnd of pieces.ends) {
    let piece = pieces.bytes.subarray(pieceStart, pieceEnd);
    pieceStart = pieceEnd;
    let at = -1;
    if (matchesAt(bytes, cursor, piece)) at = cursor;
    else if (piece[0] === 0x20 && (piece.length === 1 || matchesAt(bytes, cursor, piece.subarray(1)))) {
      piece = piece.subarray(1); // a tokenizer's virtual leading space (alone, it covers nothing)
      at = cursor;
    } else {
      // whitespace or control characters the tokenizer normalised away, never other text
      for (let skip = 1; skip <= RESYNC_BYTES && at < 0 && (bytes[cursor + skip - 1] ?? 0xff) <= 0x20; skip++) {
        if (matchesAt(bytes, cursor + skip, piece)) at = cursor + skip;
      }
    }
    if (at < 0 || piece.length === 0) {
      offsets.push([unitAt(cursor), unitAt(cursor)]);
      continue;
    }
    offsets.push([charStart[at]!, charEnd[at + piece.length - 1]!]);
    cursor = at + piece.length;
  }
  return offsets;
}

/**
 * Tokens whose characters overlap any span, as sorted disjoint ranges. Offsets never decrease, so
 * each span costs a binary search plus the tokens it covers, not a pass over the prompt.
 */
export function spansToTokenRanges(offsets: ReadonlyArray<readonly [number, number]>, spans: readonly CharSpan[]): TokenRange[] {
  const ranges: TokenRange[] = [];
  for (const span of spans) {
    // first token that ends after the span starts
    let lo = 0;
    let hi = offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (offsets[mid]![1] <= span.start) lo = mid + 1;
      else hi = mid;
    }
    for (let t = lo; t < offsets.length && offsets[t]![0] < span.end; t++) {
      const [s, e] = offsets[t]!;
      if (e <= s || !(s < span.end && e > span.start)) continue;
      ranges.push({ start: t, end: t + 1 });
    }
  }
  return unionSpans(ranges);
}
