// Span -> token range mapping: bounded work per span (issue #14: huge steered prompts must not block
// the event loop), the same ranges as a plain overlap scan.
import t from "tap";
import { unionSpans } from "../../../src/emphasis/markup.js";
import { spansToTokenRanges, tokenOffsets } from "../../../src/engine/tokenSpans.js";

/** offsets of `n` tokens of 3 characters, every 10th one empty (a token the tokenizer normalised away) */
function offsetsOf(n: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = 0;
  for (let i = 0; i < n; i++) {
    if (i % 10 === 9) out.push([pos, pos]);
    else {
      out.push([pos, pos + 3]);
      pos += 3;
    }
  }
  return out;
}

function overlapScan(offsets: ReadonlyArray<readonly [number, number]>, spans: ReadonlyArray<{ start: number; end: number }>) {
  const ranges: Array<{ start: number; end: number }> = [];
  offsets.forEach(([s, e], i) => {
    if (e > s && spans.some((sp) => s < sp.end && e > sp.start)) ranges.push({ start: i, end: i + 1 });
  });
  return unionSpans(ranges);
}

t.test("the same ranges as an overlap scan", async (t) => {
  const offsets = offsetsOf(200);
  const spanSets = [
    [{ start: 0, end: 1 }],
    [{ start: 2, end: 4 }],
    [{ start: 26, end: 28 }],
    [
      { start: 10, end: 90 },
      { start: 85, end: 200 },
    ],
    [
      { start: 500, end: 540 },
      { start: 3, end: 6 },
    ],
    [{ start: 539, end: 600 }],
  ];
  for (const spans of spanSets) t.same(spansToTokenRanges(offsets, spans), overlapScan(offsets, spans), JSON.stringify(spans));
});

t.test("work per span is a binary search plus the tokens it covers", async (t) => {
  const n = 20_000;
  let reads = 0;
  const offsets = new Proxy(offsetsOf(n), {
    get(target, key, receiver) {
      if (typeof key === "string" && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver);
    },
  });
  const spans = Array.from({ length: 1000 }, (_, i) => ({ start: i * 50, end: i * 50 + 6 }));
  const ranges = spansToTokenRanges(offsets, spans);
  t.same(ranges, overlapScan(offsetsOf(n), spans), "the same ranges as a scan");
  const bound = spans.length * (Math.ceil(Math.log2(n)) + 8);
  t.ok(reads <= bound, `${reads} offset reads for 1000 spans over ${n} tokens (bound ${bound}; a scan per span reads ${n * 1000})`);
});

/** pieces as the native tokenPieces returns them */
function piecesOf(parts: Array<string | number[]>) {
  const chunks = parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p)));
  let end = 0;
  return { bytes: Uint8Array.from(Buffer.concat(chunks)), ends: Uint32Array.from(chunks.map((c) => (end += c.length))) };
}

t.test("offsets from token bytes: exact for every kind of token", async (t) => {
  // an added BOS covers nothing; SentencePiece's virtual leading space is not counted
  t.same(tokenOffsets(piecesOf(["<s>", " Tom", " had"]), "Tom had"), [
    [0, 0],
    [0, 3],
    [3, 7],
  ]);
  // byte-fallback tokens that together form one character share its range (UTF-16: an emoji is 2 units)
  t.same(tokenOffsets(piecesOf(["a", [0xf0, 0x9f], [0x98, 0x80], "b"]), "a\u{1F600}b"), [
    [0, 1],
    [1, 3],
    [1, 3],
    [3, 4],
  ]);
  // a lone surrogate reaches the tokenizer as U+FFFD; what follows is not shifted
  t.same(tokenOffsets(piecesOf(["x", "\uFFFD", " blue"]), "x\uD800 blue"), [
    [0, 1],
    [1, 2],
    [2, 7],
  ]);
  // text the tokenizer normalised away (here a \r) is skipped, and the next token is found again
  t.same(tokenOffsets(piecesOf(["a", "\n", "b"]), "a\r\nb"), [
    [0, 1],
    [2, 3],
    [3, 4],
  ]);
  // special tokens parsed from the text cover their text
  t.same(tokenOffsets(piecesOf(["<|im_start|>", "user"]), "<|im_start|>user"), [
    [0, 12],
    [12, 16],
  ]);
});

t.test("a virtual space as a token of its own covers nothing, and never jumps ahead", async (t) => {
  t.same(tokenOffsets(piecesOf(["<s>", " ", "K", "e", " w"]), "Ke w"), [
    [0, 0],
    [0, 0],
    [0, 1],
    [1, 2],
    [2, 4],
  ]);
  // a token found nowhere stays where it is: the next ones are not shifted
  t.same(tokenOffsets(piecesOf(["a", "?", "b"]), "ab"), [
    [0, 1],
    [1, 1],
    [1, 2],
  ]);
});
