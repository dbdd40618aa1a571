// Character offsets of tokens, and character spans -> token ranges.
import type { LlamaModel, Token } from "node-llama-cpp";
import { type CharSpan, unionSpans } from "../emphasis/markup.js";
import type { TokenRange } from "./steering.js";

/** Longest run of tokens that can be needed to form whole characters (UTF-8 byte tokens). */
const MAX_TOKENS_PER_CHARACTER = 4;

/**
 * [start, end) character offsets of each token of `tokens` (the tokenization of `text`, BOS included)
 * in `text`. Special tokens cover their own text when it is there (else an empty range); tokens that only together form characters (byte
 * fallback) share the characters' range; a tokenizer's virtual leading space is not counted.
 */
export function tokenOffsets(model: LlamaModel, tokens: readonly Token[], text: string): Array<[number, number]> {
  const offsets: Array<[number, number]> = [];
  let pos = 0;
  let i = 0;
  while (i < tokens.length) {
    if (model.isSpecialToken(tokens[i])) {
      // a special token parsed from the text (a chat template's <|im_start|>) covers its text;
      // one the tokenizer added (BOS) covers nothing
      const piece = model.detokenize([tokens[i]!], true);
      const end = piece.length > 0 && text.startsWith(piece, pos) ? pos + piece.length : pos;
      offsets.push([pos, end]);
      pos = end;
      i++;
      continue;
    }
    let matched = false;
    for (let j = i + 1; j <= Math.min(tokens.length, i + MAX_TOKENS_PER_CHARACTER); j++) {
      let piece = model.detokenize(tokens.slice(i, j), false, tokens.slice(Math.max(0, i - 8), i));
      if (piece.includes("\uFFFD") && !text.slice(pos).startsWith(piece)) continue;
      if (!text.startsWith(piece, pos) && piece.startsWith(" ") && text.startsWith(piece.slice(1), pos)) piece = piece.slice(1);
      if (!text.startsWith(piece, pos)) continue;
      for (let k = i; k < j; k++) offsets.push([pos, pos + piece.length]);
      pos += piece.length;
      i = j;
      matched = true;
      break;
    }
    if (!matched) {
      // the tokenizer normalised the text (e.g. whitespace): pin this token to the current position
      offsets.push([pos, pos]);
      i++;
    }
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
