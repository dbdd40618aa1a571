// AutoPASTA's pass 1 answers in free text (exact, partial or paraphrased quotes, lists, or invented
// text); this maps that answer back onto the context's OWN sentences, so only text that is really in
// the context gets emphasized. Offsets are JavaScript string indices into the context, end exclusive.

export interface Sentence {
  text: string;
  start: number;
  end: number;
}

export interface MatchedSentence extends Sentence {
  score: number;
}

// Segmentation: Intl.Segmenter (UAX #29, always in Node 20's full ICU) already gets decimals,
// ellipses, closing quotes/brackets and "lowercase after a period" right. Its known weaknesses are
// fixed by merging a break back when: the piece ends in a title or Latin abbreviation ("Dr.", "e.g."),
// or in a capital initial followed by a non-function word ("J. K. Rowling", but "plan B. Then" splits);
// or the next piece starts in lowercase (ICU always breaks after "!"/"?": '"Stop!" he said.').
// Newlines are hard boundaries (paragraphs, list items), so lines are segmented one by one, and a
// line's list marker ("-", "*", "•", "1.", "2)") is not part of its sentence. "etc." and "U.S." often
// do end sentences, so a capital after them is left as a break.
const segmenter = new Intl.Segmenter("en", { granularity: "sentence" });
const ABBREVIATION =
  /(?:^|[^\p{L}.])(?:mr|mrs|ms|dr|prof|st|mt|vs|gen|sen|rep|gov|capt|lt|col|sgt|rev|fr|jan|feb|aug|sept|oct|nov|dec|cf|e\.g|i\.e)\.$/iu;
const INITIAL = /(?:^|[^\p{L}.])\p{Lu}\.$/u;
const LIST_MARKER = /^(?:[-*•◦‣]|\(?\d{1,3}[.)])\s+/u;

export function splitSentences(text: string): Sentence[] {
  const out: Sentence[] = [];
  for (const line of text.matchAll(/[^\r\n\u2028\u2029]+/gu)) {
    const marker = LIST_MARKER.exec(line[0].trimStart());
    const offset = line.index + (line[0].length - line[0].trimStart().length) + (marker?.[0].length ?? 0);
    const body = text.slice(offset, line.index + line[0].length);
    let start = -1;
    const pieces = [...segmenter.segment(body)];
    pieces.forEach((piece, i) => {
      if (start < 0) start = piece.index;
      const next = pieces[i + 1]?.segment.trimStart();
      const head = piece.segment.trimEnd();
      if (
        next !== undefined &&
        (ABBREVIATION.test(head) ||
          /^\p{Ll}/u.test(next) ||
          (INITIAL.test(head) && !STOP_WORDS.has(next.split(/[^\p{L}]/u)[0]!.toLowerCase())))
      )
        return;
      const raw = body.slice(start, piece.index + piece.segment.length);
      const lead = raw.length - raw.trimStart().length;
      const s = offset + start + lead,
        e = s + raw.trim().length;
      if (e > s) out.push({ text: text.slice(s, e), start: s, end: e });
      start = -1;
    });
  }
  return out;
}

// The answer: one candidate per line (markers and surrounding quotes stripped), then per sentence,
// so a line quoting two context sentences yields two candidates that are matched separately.
// A line ending in ":" is the model's preamble ("Here are the key sentences:"), not a quote.
const QUOTES = /^["'“”‘’«»„`]+|["'“”‘’«»„`]+$/gu;

export function splitAnswer(answer: string): string[] {
  return splitSentences(answer)
    .map((s) =>
      s.text
        .replace(/^(?:sentence|quote)\s*\d*\s*:|^\.{3}|…|\.{3}$/giu, "")
        .trim()
        .replace(QUOTES, "")
        .trim(),
    )
    .filter((s) => s.length > 0 && !s.endsWith(":"));
}

// Content words: lowercased word tokens (keeping "3.14", "1,000", "don't" whole), minus a small
// stop-word list (which includes the model's ways of saying "nothing"), lightly stemmed so that
// "moved"/"moves"/"moving" and "prizes"/"prize" meet.
const STOP_WORDS = new Set(
  (
    "a an the and or but nor of to in on at by for with from as into onto about than then " +
    "is are was were be been being am has have had do does did it its this that these those there here " +
    "he she they we you i me him her them us his hers their our your my who whom which what when where " +
    "not no so if also very just all any some none n/a nothing"
  ).split(" "),
);

function stem(word: string): string {
  const w = word.replace(/['’]s$/u, "");
  if (w.length > 5 && w.endsWith("ing")) return w.slice(0, -3);
  if (w.length > 4 && w.endsWith("ies")) return `${w.slice(0, -3)}y`;
  if (w.length > 4 && w.endsWith("ed")) return w.slice(0, -2);
  if (w.length > 4 && w.endsWith("es") && /(?:ss|sh|ch|x|z)es$/u.test(w)) return w.slice(0, -2);
  if (w.length > 3 && w.endsWith("s") && !w.endsWith("ss")) return w.slice(0, -1);
  return w;
}

function contentWords(text: string): string[] {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+(?:[.,'’/][\p{L}\p{N}]+)*/gu) ?? [];
  return words.filter((w) => !STOP_WORDS.has(w)).map(stem);
}

function lcs(a: string[], b: string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  for (const x of a) {
    const row = [0];
    b.forEach((y, j) => {
      row.push(x === y ? prev[j]! + 1 : Math.max(prev[j + 1]!, row[j]!));
    });
    prev = row;
  }
  return prev[b.length]!;
}

// Similarity of a quote to a sentence: 0.6 * containment (share of the quote's distinct content words
// found in the sentence: order-free, so paraphrases that reorder words keep it) + 0.4 * ROUGE-L F
// (LCS over content words: rewards covering the sentence, in order). Containment weighs more because
// the F-measure of a correct partial quote is capped by its length (first half of a sentence: F 0.67).
// Also returns how much of the sentence the quote covers in order (LCS recall).
function similarity(quote: string[], sentence: string[]): { score: number; recall: number } {
  if (quote.length === 0 || sentence.length === 0) return { score: 0, recall: 0 };
  const distinct = new Set(quote),
    inSentence = new Set(sentence);
  const containment = [...distinct].filter((w) => inSentence.has(w)).length / distinct.size;
  const common = lcs(quote, sentence);
  const p = common / quote.length,
    r = common / sentence.length;
  const f = common === 0 ? 0 : (2 * p * r) / (p + r);
  return { score: 0.6 * containment + 0.4 * f, recall: r };
}

// Default threshold 0.5: an exact quote scores 1, any contiguous half of a sentence >= 0.87, a
// paraphrase keeping about two thirds of the content words ~0.6; text that shares only a word or two
// with a sentence stays below 0.35. Since LCS <= overlap, a quote with at most half of its content
// words in the sentence reaches 0.5 only if it contains nearly the whole sentence (a real quote).
export const DEFAULT_THRESHOLD = 0.5;
// A sentence quoted whole inside a longer quote (one line running two sentences together) is matched
// too, if it has enough content words for that to be meaningful.
const COVERED = 0.8,
  COVERED_MIN_WORDS = 3;

/**
 * A question is never a key sentence: the context often holds the question itself (a chat's last
 * user message, a whole prompt), and pass 1 tends to quote it back; emphasizing it steers nothing
 * towards the answer.
 */
export function isQuestion(sentence: string): boolean {
  return /\?["'“”‘’»)\]]*$/u.test(sentence);
}

export interface SentenceMatch {
  matched: boolean;
  /** the context's sentences the answer maps onto, in context order */
  sentences: MatchedSentence[];
  /** how many of the context's sentences it could have named (questions are not candidates) */
  candidates: number;
}

export function matchSentences(context: string, answer: string, options: { threshold?: number } = {}): SentenceMatch {
  const threshold = options.threshold ?? DEFAULT_THRESHOLD;
  const sentences = splitSentences(context)
    .filter((s) => !isQuestion(s.text))
    .map((s) => ({ ...s, words: contentWords(s.text) }));
  const best = new Map<number, number>(); // sentence index -> best score
  const keep = (i: number, score: number) => best.set(i, Math.max(best.get(i) ?? 0, score));
  for (const candidate of splitAnswer(answer)) {
    const quote = contentWords(candidate);
    if (quote.length === 0) continue;
    let top = -1,
      topScore = 0;
    sentences.forEach((s, i) => {
      const { score, recall } = similarity(quote, s.words);
      if (score > topScore) [top, topScore] = [i, score]; // ties: the earlier sentence
      if (recall >= COVERED && s.words.length >= COVERED_MIN_WORDS && quote.length > s.words.length) {
        if (Math.max(score, recall) >= threshold) keep(i, Math.max(score, recall));
      }
    });
    if (top >= 0 && topScore >= threshold) keep(top, topScore);
  }
  const out = [...best]
    .sort(([a], [b]) => a - b)
    .map(([i, score]) => {
      const { text, start, end } = sentences[i]!;
      return { text, start, end, score: Math.round(Math.min(1, score) * 1000) / 1000 };
    });
  return { matched: out.length > 0, sentences: out, candidates: sentences.length };
}

/**
 * An answer that names more than half of the context's sentences has not chosen: small models copy a
 * short passage whole (Qwen2.5-Coder-0.5B on 20 of 48 short open-book passages), and emphasizing most
 * of a passage emphasizes its misleading sentences with the rest while it takes attention from the
 * question (docs/quality.md).
 */
const MAX_CHOSEN_SHARE = 0.5;

export const namesMostOfContext = (match: SentenceMatch) => match.sentences.length > MAX_CHOSEN_SHARE * match.candidates;
