import t from "tap";
import { autoContext } from "../../../src/autopasta/autopasta.js";
import { EmphasisError, parseMarkup, resolveEmphasis, snapToCodePoints, unionSpans } from "../../../src/emphasis/markup.js";
import { CHATML_TEMPLATE, ChatTemplate } from "../../../src/prompt/chatTemplate.js";
import { chatPrompt, plainPrompt } from "../../../src/prompt/prompts.js";

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

t.test("markup spans count against the emphasis limit (#26: 300k of them were a 500)", async (t) => {
  const many = (n: number) => "**a** ".repeat(n);
  t.equal(parseMarkup(many(1024), "markdown").spans.length, 1024, "1024 spans: the limit");
  t.throws(() => parseMarkup(many(300_000), "markdown"), { name: "EmphasisError", message: /more than 1024 emphasized spans/ });
  t.throws(() => parseMarkup(many(3), "markdown", 2), { name: "EmphasisError", param: "steering.markup" }, "the rest of a budget");

  const template = new ChatTemplate(CHATML_TEMPLATE, { bos_token: "", eos_token: "<|im_end|>" });
  const messages = [
    { role: "user" as const, content: many(600) },
    { role: "user" as const, content: many(600) },
  ];
  t.throws(() => chatPrompt(template, messages, { markup: "markdown", emphasis: [] }), { message: /more than 1024/ }, "over all messages");
  t.throws(
    () => plainPrompt(many(1000), { markup: "markdown", emphasis: Array.from({ length: 30 }, () => "a") }),
    { message: /more than 1024/ },
    "markup and explicit spans together",
  );
});

t.test("AutoPASTA's context from many spans: no spread of a client-sized array", async (t) => {
  const spans = Array.from({ length: 300_000 }, (_, i) => ({ start: i * 2 + 5, end: i * 2 + 6 }));
  t.same(autoContext(spans, { start: 0, end: 1 }), { start: 5, end: 600_004 });
  t.same(autoContext([], { start: 0, end: 1 }), { start: 0, end: 1 });
});

t.test("a span edge inside a surrogate pair snaps outward to the whole character (#26)", async (t) => {
  const text = "I love 🍕 and 🍣.";
  const pizza = text.indexOf("🍕");
  t.same(snapToCodePoints(text, { start: pizza + 1, end: pizza + 2 }), { start: pizza, end: pizza + 2 }, "start inside");
  t.same(snapToCodePoints(text, { start: 0, end: pizza + 1 }), { start: 0, end: pizza + 2 }, "end inside");
  t.same(snapToCodePoints(text, { start: 2, end: 6 }), { start: 2, end: 6 }, "plain text unchanged");
  const snapped = snapToCodePoints(text, { start: 2, end: pizza + 1 });
  t.equal(
    Buffer.from(text.slice(snapped.start, snapped.end)).toString(),
    text.slice(snapped.start, snapped.end),
    "its text survives UTF-8",
  );
});
