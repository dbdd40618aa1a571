// Emphasis markup -> plain text + character spans. Offsets are JavaScript string indices
// (UTF-16 code units) into the text after markup removal, end exclusive.
import { MAX_EMPHASIS_ITEMS } from "../defaults.js";
import { InvalidRequestError } from "../errors.js";

export interface CharSpan {
  start: number;
  end: number;
}

export type MarkupKind = "none" | "html" | "markdown";

/** A request's emphasis that cannot be honoured; the message says what to fix. */
export class EmphasisError extends InvalidRequestError {
  override name = "EmphasisError";
  constructor(message: string, param = "steering.emphasis") {
    super(message, param, "invalid_steering");
  }
}

export interface ParsedMarkup {
  text: string;
  spans: CharSpan[];
}

const HTML_TAG = /<(\/?)(em|b|strong)>/gi;
const MARKDOWN_STRONG = /\*\*/g;

/**
 * Removes emphasis markup and returns where the emphasized text ends up in the plain text. More than
 * `maxSpans` spans is refused as it is found (markup counts against the same limit as explicit spans).
 */
export function parseMarkup(source: string, markup: MarkupKind, maxSpans = MAX_EMPHASIS_ITEMS): ParsedMarkup {
  if (markup === "none") return { text: source, spans: [] };
  const pattern = markup === "html" ? HTML_TAG : MARKDOWN_STRONG;
  const spans: CharSpan[] = [];
  let text = "";
  let last = 0;
  let open: { tag: string; start: number; at: number } | null = null;
  for (const match of source.matchAll(pattern)) {
    text += source.slice(last, match.index);
    last = match.index + match[0].length;
    const tag = markup === "html" ? match[2]!.toLowerCase() : "**";
    const closing = markup === "html" ? match[1] === "/" : open !== null;
    if (!closing) {
      if (open)
        throw new EmphasisError(
          `nested emphasis markup: <${tag}> at character ${match.index} opens inside <${open.tag}> opened at character ${open.at}`,
          "steering.markup",
        );
      open = { tag, start: text.length, at: match.index };
      continue;
    }
    if (!open)
      throw new EmphasisError(`unbalanced emphasis markup: ${match[0]} at character ${match.index} closes nothing`, "steering.markup");
    if (markup === "html" && open.tag !== tag) {
      throw new EmphasisError(
        `unbalanced emphasis markup: </${tag}> at character ${match.index} closes <${open.tag}> opened at character ${open.at}`,
        "steering.markup",
      );
    }
    if (text.length === open.start) throw new EmphasisError(`empty emphasis at character ${open.at}`, "steering.markup");
    if (spans.length === maxSpans) throw tooManySpans();
    spans.push({ start: open.start, end: text.length });
    open = null;
  }
  if (open) {
    const shown = markup === "html" ? `<${open.tag}>` : "**";
    throw new EmphasisError(`unbalanced emphasis markup: ${shown} at character ${open.at} is never closed`, "steering.markup");
  }
  text += source.slice(last);
  return { text, spans };
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/**
 * The span widened to whole code points: an end (or start) between the two halves of a surrogate
 * pair (an emoji) moves past (before) it, so that no span's text is half a character, which JSON
 * can carry only as a lone escape that strict parsers reject.
 */
export function snapToCodePoints(text: string, span: CharSpan): CharSpan {
  const splits = (i: number) => i > 0 && i < text.length && isHighSurrogate(text.charCodeAt(i - 1)) && isLowSurrogate(text.charCodeAt(i));
  return { start: splits(span.start) ? span.start - 1 : span.start, end: splits(span.end) ? span.end + 1 : span.end };
}

/** More emphasized spans (markup and explicit together) than a request may have. */
function tooManySpans(): EmphasisError {
  return new EmphasisError(
    `steering.markup: more than ${MAX_EMPHASIS_ITEMS} emphasized spans (markup and steering.emphasis together)`,
    "steering.markup",
  );
}

/** An explicit span or a substring whose first occurrence is emphasized. */
export type EmphasisItem = CharSpan | string;

/** Resolves explicit spans and substrings against the plain text; every span must lie inside it. */
export function resolveEmphasis(text: string, items: readonly EmphasisItem[], param = "steering.emphasis"): CharSpan[] {
  return items.map((item, i) => {
    if (typeof item === "string") {
      if (item.length === 0) throw new EmphasisError(`${param}[${i}] is an empty string`, param);
      const start = text.indexOf(item);
      if (start < 0) throw new EmphasisError(`${param}[${i}] ${JSON.stringify(item.slice(0, 80))} does not occur in the prompt`, param);
      return { start, end: start + item.length };
    }
    const { start, end } = item;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > text.length || start >= end) {
      throw new EmphasisError(
        `${param}[${i}] {start: ${start}, end: ${end}} must satisfy 0 <= start < end <= ${text.length} (the prompt's length after markup removal)`,
        param,
      );
    }
    return { start, end };
  });
}

/** Sorted, disjoint union of spans: several spans are one emphasized set, never compounded. */
export function unionSpans(spans: readonly CharSpan[]): CharSpan[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start || a.end - b.end);
  const out: CharSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

/** Explicit spans and substrings -> the sorted, disjoint spans the engine takes (in-process callers). */
export function emphasize(text: string, items: readonly EmphasisItem[]): CharSpan[] {
  return unionSpans(resolveEmphasis(text, items));
}
