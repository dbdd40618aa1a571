import t from "tap";
import { EmphasisError, parseMarkup, resolveEmphasis, unionSpans } from "../../../src/emphasis/markup.js";

t.test("html markup: tags removed, spans point at the plain text", async (t) => {
  const source = "Lily had a ball. <em>Tom had a kite.</em> And <b>a dog</b>, <STRONG>ok</STRONG>.";
  const { text, spans } = parseMarkup(source, "html");
  t.equal(text, "Lily had a ball. Tom had a kite. And a dog, ok.");
  t.same(
    spans.map((s) => text.slice(s.start, s.end)),
    ["Tom had a kite.", "a dog", "ok"],
  );
});

t.test("markdown markup", async (t) => {
  const { text, spans } = parseMarkup("A **bold** claim and **another one**.", "markdown");
  t.equal(text, "A bold claim and another one.");
  t.same(
    spans.map((s) => text.slice(s.start, s.end)),
    ["bold", "another one"],
  );
});

t.test("offsets are UTF-16 indices, exact around astral characters", async (t) => {
  const { text, spans } = parseMarkup("😀 x <em>é😀z</em> y", "html");
  t.equal(text.slice(spans[0]!.start, spans[0]!.end), "é😀z");
});

t.test("none leaves markup as text", async (t) => {
  t.same(parseMarkup("<em>x</em>", "none"), { text: "<em>x</em>", spans: [] });
});

for (const [markup, bad, why] of [
  ["html", "a <em>b", /never closed/],
  ["html", "a </em>b", /closes nothing/],
  ["html", "<em>a <b>b</b></em>", /nested/],
  ["html", "<em>a</b>", /closes <em>/],
  ["html", "<em></em>", /empty/],
  ["markdown", "a **b", /never closed/],
] as const) {
  t.test(`rejects ${markup} ${JSON.stringify(bad)}`, async (t) => {
    t.throws(() => parseMarkup(bad, markup), { name: "EmphasisError", message: why });
  });
}

t.test("resolveEmphasis: substrings and explicit spans", async (t) => {
  const text = "one two one";
  t.same(resolveEmphasis(text, ["one", { start: 4, end: 7 }]), [
    { start: 0, end: 3 },
    { start: 4, end: 7 },
  ]);
  t.throws(() => resolveEmphasis(text, ["three"]), EmphasisError);
  t.throws(() => resolveEmphasis(text, [{ start: 5, end: 99 }]), { message: /0 <= start < end <= 11/ });
  t.throws(() => resolveEmphasis(text, [{ start: 3, end: 3 }]), EmphasisError);
  t.throws(() => resolveEmphasis(text, [{ start: 1.5, end: 3 }]), EmphasisError);
});

t.test("unionSpans merges overlaps: several spans never compound", async (t) => {
  t.same(
    unionSpans([
      { start: 5, end: 9 },
      { start: 0, end: 2 },
      { start: 7, end: 12 },
      { start: 2, end: 3 },
    ]),
    [
      { start: 0, end: 3 },
      { start: 5, end: 12 },
    ],
  );
});
