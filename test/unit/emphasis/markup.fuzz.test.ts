// Property-based tests (fast-check) of emphasis markup, span resolution and chat-prompt emphasis
// placement: tens of thousands of generated inputs, pure and fast. Each property runs with a fixed
// seed (printed on failure, with the shrunk counterexample) so a failure reproduces exactly;
// FUZZ_SEED=<n> overrides it.
import fc from "fast-check";
import tap from "tap";
const t = tap;
import {
  EmphasisError,
  parseMarkup,
  resolveEmphasis,
  unionSpans,
  type CharSpan,
  type EmphasisItem,
  type MarkupKind,
} from "../../../src/emphasis/markup.js";
import { ChatTemplate, ChatTemplateError, CHATML_TEMPLATE, type ChatMessage } from "../../../src/prompt/chatTemplate.js";
import { chatPrompt, plainPrompt, type EmphasisRequest } from "../../../src/prompt/prompts.js";

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20240611;
const RUNS = Number(process.env.FUZZ_RUNS ?? 20_000);

/** fc.assert with the fixed seed, the seed in the failure message */
function check<Ts>(t: Pick<typeof tap, "pass" | "fail">, name: string, property: fc.IProperty<Ts>, numRuns = RUNS): void {
  const started = performance.now();
  const details = fc.check(property, { numRuns, seed: SEED });
  if (details.failed) {
    t.fail(`${name}: ${fc.defaultReportMessage(details)}\n(seed ${SEED}; rerun with FUZZ_SEED=${SEED})`);
  } else {
    t.pass(`${name}: ${details.numRuns} runs (${details.numSkips} skipped) in ${Math.round(performance.now() - started)} ms, seed ${SEED}`);
  }
}

// ---------------------------------------------------------------------------------------------
// generators

/** lone surrogates: valid JS strings that are not valid UTF-16 */
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const EMOJI = ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "é", "é", "ß", "İ", "ſ", "K", "\u0000", "\n", "\r\n", "\t", " ", "\uFFFD", "\uFEFF"];
/** random text: all of Unicode (astral included), graphemes, lone surrogates, ASCII */
const unicodeText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
  fc.string({ unit: "binary-ascii", maxLength: 6 }),
  loneSurrogate,
  fc.constantFrom(...EMOJI),
);

const HTML_NAMES = ["em", "b", "strong"] as const;
/** the tag name with each letter's case chosen at random */
const casedName = fc
  .constantFrom(...HTML_NAMES)
  .chain((name) =>
    fc
      .array(fc.boolean(), { minLength: name.length, maxLength: name.length })
      .map((upper) => [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join("")),
  );
const htmlTag = fc.tuple(fc.boolean(), casedName).map(([closing, name]) => `<${closing ? "/" : ""}${name}>`);
const NEAR_MISSES = [
  "<em",
  "</ em>",
  "<emx>",
  "< em>",
  "<em >",
  "</em",
  "em>",
  "</>",
  "<>",
  "<",
  ">",
  "/",
  "<<",
  ">>",
  "<i>",
  "</i>",
  "<e m>",
  "<EMx>",
  "<bb>",
  "<br>",
  "<strongg>",
  "<stron>",
  "</strong",
  "<em/>",
  "<b/>",
  "</b >",
  "<\u0000em>",
  "<ｅm>",
  "<\u212Am>",
  "*",
  "***",
  "* *",
  "\\**",
  "*\u200b*",
  "****",
  "*\n*",
  "＊＊",
];
const nearMiss = fc.constantFrom(...NEAR_MISSES);
const markupToken = fc.oneof(
  { weight: 3, arbitrary: htmlTag },
  { weight: 2, arbitrary: fc.constant("**") },
  { weight: 2, arbitrary: nearMiss },
);

/** strings mixing text, recognized tags and near misses at random */
const tokenSoup = fc
  .array(fc.oneof({ weight: 2, arbitrary: unicodeText }, { weight: 3, arbitrary: markupToken }), { maxLength: 14 })
  .map((parts) => parts.join(""));
/** a balanced html or markdown source with a few random edits (a token inserted, a slice cut out) */
const nearlyBalanced = fc
  .tuple(
    fc.oneof(fc.constant("html" as const), fc.constant("markdown" as const)).chain((m) => balanced(m)),
    fc.array(fc.tuple(fc.nat(), fc.oneof(markupToken, unicodeText, fc.constant(null)), fc.nat(3)), { maxLength: 2 }),
  )
  .map(([built, edits]) =>
    edits.reduce((source, [at, token, cut]) => {
      const i = at % (source.length + 1);
      return token === null ? source.slice(0, i) + source.slice(i + cut) : source.slice(0, i) + token + source.slice(i);
    }, built.source),
  );
const markupSource = fc.oneof(tokenSoup, nearlyBalanced);
const markupKind = fc.constantFrom<MarkupKind>("none", "html", "markdown");

// ---------------------------------------------------------------------------------------------
// a reference parser, written independently of src/emphasis/markup.ts: a scan by hand (no regular
// expressions, ASCII-only case folding) with the documented rules

type RefResult = { ok: true; text: string; spans: CharSpan[] } | { ok: false; why: RegExp };

const isLetter = (s: string, i: number, lower: string) => s[i] === lower || s[i] === lower.toUpperCase();

/** the recognized tag starting at `i`: its length, name and whether it closes */
function tagAt(source: string, i: number, markup: "html" | "markdown"): { length: number; name: string; closing: boolean } | null {
  if (markup === "markdown") return source[i] === "*" && source[i + 1] === "*" ? { length: 2, name: "**", closing: false } : null;
  if (source[i] !== "<") return null;
  let j = i + 1;
  const closing = source[j] === "/";
  if (closing) j++;
  for (const name of HTML_NAMES) {
    if ([...name].every((c, k) => isLetter(source, j + k, c)) && source[j + name.length] === ">") {
      return { length: j + name.length + 1 - i, name, closing };
    }
  }
  return null;
}

function referenceParse(source: string, markup: MarkupKind): RefResult {
  if (markup === "none") return { ok: true, text: source, spans: [] };
  let text = "";
  const spans: CharSpan[] = [];
  let open: { name: string; start: number } | null = null;
  for (let i = 0; i < source.length; ) {
    const tag = tagAt(source, i, markup);
    if (!tag) {
      text += source[i];
      i++;
      continue;
    }
    i += tag.length;
    const closing = markup === "markdown" ? open !== null : tag.closing;
    if (!closing) {
      if (open) return { ok: false, why: /nested emphasis markup/ };
      open = { name: tag.name, start: text.length };
      continue;
    }
    if (!open) return { ok: false, why: /closes nothing/ };
    if (open.name !== tag.name) return { ok: false, why: /unbalanced emphasis markup: <\/\w+> at character \d+ closes </ };
    if (open.start === text.length) return { ok: false, why: /empty emphasis/ };
    spans.push({ start: open.start, end: text.length });
    open = null;
  }
  if (open) return { ok: false, why: /is never closed/ };
  return { ok: true, text, spans };
}

/** runs f; returns its value, or the EmphasisError it threw; anything else thrown fails the property */
function orEmphasisError<T>(f: () => T, also: Array<new (...args: any[]) => Error> = []): { value: T } | { error: Error } {
  try {
    return { value: f() };
  } catch (err) {
    if (err instanceof EmphasisError || also.some((E) => err instanceof E)) return { error: err as Error };
    throw new Error(`threw something other than EmphasisError: ${String(err)}`, { cause: err });
  }
}

function assertSpansInside(spans: readonly CharSpan[], length: number, what: string): void {
  spans.forEach((s, i) => {
    if (!(Number.isInteger(s.start) && Number.isInteger(s.end) && s.start >= 0 && s.start < s.end && s.end <= length)) {
      throw new Error(`${what}[${i}] ${JSON.stringify(s)} is not inside 0..${length}`);
    }
  });
}

function assertSortedDisjoint(spans: readonly CharSpan[], what: string, strict: boolean): void {
  for (let i = 1; i < spans.length; i++) {
    const ok = strict ? spans[i]!.start > spans[i - 1]!.end : spans[i]!.start >= spans[i - 1]!.end;
    if (!ok) throw new Error(`${what}: ${JSON.stringify(spans[i - 1])} and ${JSON.stringify(spans[i])} are not ordered and disjoint`);
  }
}

// ---------------------------------------------------------------------------------------------
// parseMarkup

t.test(
  "parseMarkup on arbitrary mixes of text, tags and near misses: returns or throws EmphasisError, and agrees with a reference parser",
  async (t) => {
    const outcomes: Record<string, number> = {};
    const count = (key: string) => {
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    };
    check(
      t,
      "parseMarkup vs reference",
      fc.property(markupSource, markupKind, (source, markup) => {
        const got = orEmphasisError(() => parseMarkup(source, markup));
        const want = referenceParse(source, markup);
        count(`${markup} ${want.ok ? (want.spans.length > 0 ? "spans" : "no spans") : want.why.source.split(" ")[0]}`);
        if ("error" in got) {
          if (want.ok) throw new Error(`threw ${got.error.message}; the reference parses it as ${JSON.stringify(want)}`);
          if (!want.why.test(got.error.message))
            throw new Error(`threw ${JSON.stringify(got.error.message)}; the reference expected ${want.why}`);
          if ((got.error as EmphasisError).param !== "steering.markup") throw new Error(`param ${(got.error as EmphasisError).param}`);
          return;
        }
        const { text, spans } = got.value;
        assertSpansInside(spans, text.length, "spans");
        assertSortedDisjoint(spans, "spans", false);
        if (!want.ok) throw new Error(`returned ${JSON.stringify(got.value)}; the reference rejects it (${want.why})`);
        if (text !== want.text) throw new Error(`text ${JSON.stringify(text)}, the reference says ${JSON.stringify(want.text)}`);
        if (JSON.stringify(spans) !== JSON.stringify(want.spans))
          throw new Error(`spans ${JSON.stringify(spans)}, the reference says ${JSON.stringify(want.spans)}`);
        // the removed characters are exactly the recognized tags: two per span
        const tagRegex = markup === "html" ? /<\/?(em|b|strong)>/gi : markup === "markdown" ? /\*\*/g : null;
        if (tagRegex) {
          const matches = [...source.matchAll(tagRegex)].map((m) => m[0]);
          if (matches.length !== 2 * spans.length || source.length - text.length !== matches.join("").length) {
            throw new Error(`removed ${source.length - text.length} characters for ${spans.length} spans`);
          }
        } else if (text !== source || spans.length !== 0) {
          throw new Error("markup none changed the text");
        }
      }),
    );
    t.comment(`parseMarkup outcomes (reference): ${JSON.stringify(outcomes)}`);
    t.ok(
      (outcomes["html spans"] ?? 0) > RUNS / 50 && (outcomes["markdown spans"] ?? 0) > RUNS / 50,
      "the generator reaches successful parses with spans",
    );
  },
);

/** (text, emphasized) segments -> the source with markup, the plain text, and the emphasized slices */
interface Built {
  source: string;
  text: string;
  emphasized: string[];
  spans: CharSpan[];
}

function segmentText(markup: "html" | "markdown") {
  return (
    fc
      .array(fc.oneof({ weight: 3, arbitrary: unicodeText }, { weight: 1, arbitrary: nearMiss }), { maxLength: 5 })
      .map((parts) => parts.join(""))
      // text must not hold markup itself, and in markdown a '*' before "**" would move the tag
      .filter((s) => (markup === "html" ? !/<\/?(em|b|strong)>/i.test(s) : !s.includes("**") && !s.endsWith("*")))
  );
}

function balanced(markup: "html" | "markdown"): fc.Arbitrary<Built> {
  const segment = fc.record({
    plain: segmentText(markup),
    emph: segmentText(markup).filter((s) => s.length > 0),
    open: casedName,
    closeCase: fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }),
  });
  return fc.tuple(fc.array(segment, { maxLength: 6 }), segmentText(markup)).map(([segments, tail]) => {
    let source = "",
      text = "";
    const emphasized: string[] = [],
      spans: CharSpan[] = [];
    for (const s of segments) {
      source += s.plain;
      text += s.plain;
      const close = [...s.open.toLowerCase()].map((c, i) => (s.closeCase[i] ? c.toUpperCase() : c)).join("");
      source += markup === "html" ? `<${s.open}>${s.emph}</${close}>` : `**${s.emph}**`;
      spans.push({ start: text.length, end: text.length + s.emph.length });
      text += s.emph;
      emphasized.push(s.emph);
    }
    source += tail;
    text += tail;
    return { source, text, emphasized, spans };
  });
}

for (const markup of ["html", "markdown"] as const) {
  t.test(`parseMarkup round trip (${markup}): balanced inputs built from (text, emphasized?) segments`, async (t) => {
    check(
      t,
      `${markup} round trip`,
      fc.property(balanced(markup), (built) => {
        const { text, spans } = parseMarkup(built.source, markup);
        if (text !== built.text) throw new Error(`text ${JSON.stringify(text)}, expected ${JSON.stringify(built.text)}`);
        if (JSON.stringify(spans) !== JSON.stringify(built.spans))
          throw new Error(`spans ${JSON.stringify(spans)}, expected ${JSON.stringify(built.spans)}`);
        const slices = spans.map((s) => text.slice(s.start, s.end));
        if (JSON.stringify(slices) !== JSON.stringify(built.emphasized)) throw new Error(`slices ${JSON.stringify(slices)}`);
        // markup "none" keeps every character
        const none = parseMarkup(built.source, "none");
        if (none.text !== built.source || none.spans.length !== 0) throw new Error("markup none changed the text");
      }),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// resolveEmphasis + unionSpans

const smallText = fc
  .array(fc.oneof(fc.constantFrom("a", "b", "ab", " ", "😀", "é"), unicodeText), { maxLength: 12 })
  .map((p) => p.join(""));
const anyNumber = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -3, max: 40 }) },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 0.5, 2 ** 53, Number.MAX_SAFE_INTEGER + 2) },
);

function emphasisItems(text: string): fc.Arbitrary<EmphasisItem[]> {
  const substring =
    text.length === 0
      ? fc.constant("")
      : fc.tuple(fc.nat(text.length), fc.nat(text.length)).map(([a, b]) => text.slice(Math.min(a, b), Math.max(a, b)));
  const validSpan =
    text.length === 0
      ? fc.constant({ start: 0, end: 0 })
      : fc
          .tuple(fc.nat(text.length - 1), fc.integer({ min: 1, max: text.length }))
          .map(([a, n]) => ({ start: a, end: Math.min(text.length, a + n) }));
  const item: fc.Arbitrary<EmphasisItem> = fc.oneof(
    { weight: 3, arbitrary: validSpan },
    { weight: 3, arbitrary: substring },
    { weight: 1, arbitrary: fc.record({ start: anyNumber, end: anyNumber }) },
    { weight: 1, arbitrary: fc.oneof(smallText, unicodeText) },
  );
  return fc.array(item, { maxLength: 6 });
}

function itemValid(text: string, item: EmphasisItem): boolean {
  if (typeof item === "string") return item.length > 0 && text.includes(item);
  return Number.isInteger(item.start) && Number.isInteger(item.end) && item.start >= 0 && item.start < item.end && item.end <= text.length;
}

t.test(
  "resolveEmphasis: EmphasisError exactly when an item is invalid, else spans inside the text; unionSpans: the exact union",
  async (t) => {
    const input = smallText.chain((text) => fc.tuple(fc.constant(text), emphasisItems(text)));
    check(
      t,
      "resolveEmphasis + unionSpans",
      fc.property(input, ([text, items]) => {
        const frozen = JSON.stringify(items);
        const got = orEmphasisError(() => resolveEmphasis(text, items));
        const allValid = items.every((item) => itemValid(text, item));
        if ("error" in got) {
          if (allValid) throw new Error(`threw ${got.error.message} for valid items`);
          return;
        }
        if (!allValid) throw new Error(`accepted invalid items: ${JSON.stringify(got.value)}`);
        const spans = got.value;
        if (spans.length !== items.length) throw new Error("one span per item");
        assertSpansInside(spans, text.length, "resolved");
        items.forEach((item, i) => {
          const s = spans[i]!;
          if (typeof item === "string") {
            if (text.slice(s.start, s.end) !== item || s.start !== text.indexOf(item))
              throw new Error(`item ${i}: not the first occurrence`);
          } else if (s.start !== item.start || s.end !== item.end) throw new Error(`item ${i}: span changed`);
        });
        const union = unionSpans(spans);
        if (JSON.stringify(items) !== frozen) throw new Error("the input items were mutated");
        assertUnion(spans, union, text.length);
      }),
    );
  },
);

/** `union` is sorted, disjoint, non-adjacent and covers exactly what `spans` cover */
function assertUnion(spans: readonly CharSpan[], union: readonly CharSpan[], length: number): void {
  assertSpansInside(union, length, "union");
  assertSortedDisjoint(union, "union", true);
  const want = new Array<boolean>(length).fill(false),
    got = new Array<boolean>(length).fill(false);
  for (const s of spans) for (let i = s.start; i < s.end; i++) want[i] = true;
  for (const s of union) for (let i = s.start; i < s.end; i++) got[i] = true;
  if (want.some((w, i) => w !== got[i])) throw new Error(`union ${JSON.stringify(union)} does not cover ${JSON.stringify(spans)}`);
  if (spans.length > 0 && union.length === 0) throw new Error("empty union");
}

t.test("unionSpans on many random spans: sorted, disjoint, exact coverage, input untouched", async (t) => {
  const spans = fc
    .nat(80)
    .chain((length) =>
      fc.tuple(
        fc.constant(Math.max(length, 1)),
        fc.array(fc.tuple(fc.nat(Math.max(length, 1) - 1), fc.integer({ min: 1, max: 30 })), { maxLength: 25 }),
      ),
    );
  check(
    t,
    "unionSpans",
    fc.property(spans, ([length, raw]) => {
      const input = raw.map(([start, n]) => ({ start, end: Math.min(length, start + n) }));
      const frozen = JSON.stringify(input);
      const union = unionSpans(input);
      if (JSON.stringify(input) !== frozen) throw new Error("unionSpans mutated its input");
      assertUnion(input, union, length);
      // idempotent, and independent of the order of its input
      if (JSON.stringify(unionSpans(union)) !== JSON.stringify(union)) throw new Error("not idempotent");
      if (JSON.stringify(unionSpans([...input].reverse())) !== JSON.stringify(union)) throw new Error("depends on the input order");
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// plainPrompt and chatPrompt (ChatML)

type Emphasis = EmphasisRequest["emphasis"][number];
/** steering for these message contents: items often valid (substrings of a content, spans inside one), sometimes not */
const emphasisRequest = (raw: readonly string[], chat: boolean): fc.Arbitrary<EmphasisRequest> =>
  fc
    .oneof(
      { weight: 1, arbitrary: fc.constant<MarkupKind>("none") },
      { weight: 2, arbitrary: fc.constantFrom<MarkupKind>("html", "markdown") },
    )
    .chain((markup) => emphasisFor(markup, raw, chat));

function emphasisFor(markup: MarkupKind, raw: readonly string[], chat: boolean): fc.Arbitrary<EmphasisRequest> {
  // items are aimed at the contents as they are after markup removal (the raw text where that fails)
  const contents = raw.map((c) => {
    const r = referenceParse(c, markup);
    return r.ok ? r.text : c;
  });
  const which = fc.nat(contents.length - 1);
  const substring = fc.tuple(which, fc.nat(), fc.nat(6)).map(([m, a, n]) => {
    const c = contents[m]!,
      i = a % (c.length + 1);
    return c.slice(i, i + n);
  });
  const inside = fc.tuple(which, fc.nat(), fc.nat(6)).map(([m, a, n]) => {
    const length = contents[m]!.length,
      start = a % (length + 1);
    return chat ? { start, end: start + n, message: m } : { start, end: start + n };
  });
  const items: Array<fc.Arbitrary<Emphasis>> = [
    substring,
    inside,
    substring,
    inside,
    fc.record({ start: fc.integer({ min: -1, max: 30 }), end: fc.integer({ min: -1, max: 40 }) }),
    fc.oneof(unicodeText, fc.constantFrom("a", "b", "ab", "😀", " ")),
  ];
  if (chat) items.push(fc.record({ start: fc.nat(20), end: fc.nat(40), message: fc.integer({ min: -1, max: contents.length }) }));
  return fc.record({ markup: fc.constant(markup), emphasis: fc.array(fc.oneof(...items), { maxLength: 3 }) });
}

const contentSoup = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: unicodeText },
      { weight: 3, arbitrary: fc.constantFrom("a", "b", "ab", "😀") },
      { weight: 2, arbitrary: markupToken },
      { weight: 1, arbitrary: fc.constantFrom("<|im_start|>", "<|im_end|>", "\n", "{{ x }}", "{% if %}", "\uE0000\uE001") },
    ),
    { maxLength: 8 },
  )
  .map((p) => p.join(""));
const contentText = fc.oneof(
  { weight: 1, arbitrary: contentSoup },
  { weight: 2, arbitrary: balanced("html").map((b) => b.source) },
  { weight: 2, arbitrary: balanced("markdown").map((b) => b.source) },
  { weight: 1, arbitrary: nearlyBalanced },
);

const messagesArb = fc.array(
  fc.record({
    role: fc.constantFrom("system", "developer", "user", "assistant", "tool"),
    content: contentText,
  }),
  { minLength: 1, maxLength: 4 },
);

const CHATML = new ChatTemplate(CHATML_TEMPLATE, { bos_token: "<s>", eos_token: "</s>" });
const chatml = (messages: readonly ChatMessage[]) =>
  `${messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("")}<|im_start|>assistant\n`;

/** What chatPrompt must return for these messages, computed without it: the prompt and the emphasized texts in order, or null (refused) */
function expectedChat(
  messages: readonly ChatMessage[],
  steering: EmphasisRequest | undefined,
): { prompt: string; contents: string[]; emphasized: string[][] } | null {
  const parsed = messages.map((m) =>
    steering ? referenceParse(m.content, steering.markup) : { ok: true as const, text: m.content, spans: [] },
  );
  if (parsed.some((p) => !p.ok)) return null;
  const contents = parsed.map((p) => (p as { text: string }).text);
  // markup spans first, then the items in order
  const emphasized: string[][] = contents.map((c, i) => (parsed[i] as { spans: CharSpan[] }).spans.map((s) => c.slice(s.start, s.end)));
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  for (const item of steering?.emphasis ?? []) {
    if (typeof item === "string") {
      const index = contents.findIndex((c) => c.includes(item));
      if (item.length === 0 || index < 0) return null;
      emphasized[index]!.push(item);
      continue;
    }
    const index = item.message ?? lastUser;
    const content = contents[index];
    if (content === undefined || !itemValid(content, item)) return null;
    emphasized[index]!.push(content.slice(item.start, item.end));
  }
  // private-use characters in a content (once the template-mapping markers, #26) change nothing
  return { prompt: chatml(messages.map((m, i) => ({ ...m, content: contents[i]! }))), contents, emphasized };
}

t.test(
  "chatPrompt with ChatML: errors are EmphasisError or ChatTemplateError; emphasis lands on the emphasized message text",
  async (t) => {
    const input = messagesArb.chain((messages) =>
      fc.tuple(
        fc.constant(messages),
        fc.option(
          emphasisRequest(
            messages.map((m) => m.content),
            true,
          ),
          { nil: undefined, freq: 8 },
        ),
      ),
    );
    const outcomes = { refused: 0, plain: 0, emphasized: 0 };
    check(
      t,
      "chatPrompt",
      fc.property(input, ([messages, steering]) => {
        const got = orEmphasisError(() => chatPrompt(CHATML, messages, steering), [ChatTemplateError]);
        const want = expectedChat(messages, steering);
        if ("error" in got) {
          if (got.error instanceof ChatTemplateError) throw new Error(`ChatML failed to render: ${got.error.message}`);
          if (want) throw new Error(`refused with ${JSON.stringify(got.error.message)}; expected ${JSON.stringify(want)}`);
          outcomes.refused++;
          return;
        }
        const r = got.value;
        if (!want) throw new Error(`accepted a request that must be refused: ${JSON.stringify(r)}`);
        if (r.prompt !== want.prompt) throw new Error(`prompt ${JSON.stringify(r.prompt)}, expected ${JSON.stringify(want.prompt)}`);
        if (!r.specialTokens) throw new Error("chat prompts parse special tokens");
        if (JSON.stringify(r.contents) !== JSON.stringify(want.contents)) throw new Error("contents differ");
        r.contentSpans.forEach((span, i) => {
          if (span === null) throw new Error(`message ${i} not placed`);
          if (r.prompt.slice(span.start, span.end) !== want.contents[i]) throw new Error(`content span ${i} is wrong`);
        });
        const spans = r.emphasis as CharSpan[];
        assertSpansInside(spans, r.prompt.length, "prompt emphasis");
        const texts = spans.map((s) => r.prompt.slice(s.start, s.end));
        if (JSON.stringify(texts) !== JSON.stringify(want.emphasized.flat()))
          throw new Error(`emphasized ${JSON.stringify(texts)}, expected ${JSON.stringify(want.emphasized)}`);
        // and each span lies inside its own message's content
        let k = 0;
        want.emphasized.forEach((list, i) => {
          for (let n = 0; n < list.length; n++, k++) {
            const s = spans[k]!,
              c = r.contentSpans[i];
            if (!c || s.start < c.start || s.end > c.end) throw new Error(`span ${k} is outside message ${i}`);
          }
        });
        if (spans.length > 0) outcomes.emphasized++;
        else outcomes.plain++;
      }),
    );
    t.comment(`chatPrompt outcomes: ${JSON.stringify(outcomes)}`);
    t.ok(outcomes.emphasized > RUNS / 10 && outcomes.refused > RUNS / 10, "the generator reaches both accepted emphasis and refusals");
  },
);

t.test("plainPrompt: the prompt is the text after markup removal, emphasis = markup spans then the items resolved", async (t) => {
  const input = contentText.chain((source) =>
    fc.tuple(fc.constant(source), fc.option(emphasisRequest([source], false), { nil: undefined, freq: 8 })),
  );
  check(
    t,
    "plainPrompt",
    fc.property(input, ([source, steering]) => {
      const got = orEmphasisError(() => plainPrompt(source, steering));
      const want = steering ? referenceParse(source, steering.markup) : { ok: true as const, text: source, spans: [] };
      const chatOnly = steering?.emphasis.some((e) => typeof e === "object" && e.message !== undefined) ?? false;
      // items are resolved here, once: a substring to its first occurrence, a span kept if it lies in the text
      const items = want.ok
        ? (steering?.emphasis ?? []).map((e) => {
            if (typeof e === "string") {
              const at = want.text.indexOf(e);
              return at < 0 || e === "" ? null : { start: at, end: at + e.length };
            }
            const inText =
              Number.isInteger(e.start) && Number.isInteger(e.end) && e.start >= 0 && e.start < e.end && e.end <= want.text.length;
            return inText ? { start: e.start, end: e.end } : null;
          })
        : [];
      const resolvable = items.every((i) => i !== null);
      if ("error" in got) {
        if (want.ok && !chatOnly && resolvable) throw new Error(`threw ${got.error.message}`);
        return;
      }
      if (!want.ok || chatOnly || !resolvable) throw new Error("accepted a request it should refuse");
      if (got.value.prompt !== want.text || got.value.specialTokens) throw new Error("wrong prompt");
      if (JSON.stringify(got.value.emphasis) !== JSON.stringify([...want.spans, ...items])) throw new Error("wrong emphasis");
    }),
  );
});

// A template that trims contents (as many models' templates do): emphasis on trimmed whitespace is
// clipped to the kept characters, or refused when nothing is left.
const TRIMMING = new ChatTemplate(
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] | trim) + '<|im_end|>\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  { bos_token: "<s>", eos_token: "</s>" },
);

t.test("chatPrompt with a trimming template: emphasis is clipped to the kept characters, never misplaced", async (t) => {
  const padded = fc
    .tuple(fc.constantFrom("", " ", "\n", "  \n\t", "\u00a0", "\u3000 "), contentText, fc.constantFrom("", " ", "\n\n", "\t \r\n"))
    .map(([a, c, b]) => a + c + b);
  const messages = fc.array(fc.record({ role: fc.constantFrom("system", "user", "assistant"), content: padded }), {
    minLength: 1,
    maxLength: 3,
  });
  const input = messages.chain((m) =>
    fc.tuple(
      fc.constant(m),
      emphasisRequest(
        m.map((x) => x.content),
        true,
      ),
    ),
  );
  const outcomes = { refused: 0, clipped: 0, exact: 0 };
  check(
    t,
    "chatPrompt (trim)",
    fc.property(input, ([messages, steering]) => {
      const got = orEmphasisError(() => chatPrompt(TRIMMING, messages, steering), [ChatTemplateError]);
      // the untrimmed expectation (ChatML): what is emphasized in content coordinates, or null
      const want = expectedChat(messages, steering);
      if ("error" in got) {
        if (got.error instanceof ChatTemplateError) throw new Error(`the template failed to render: ${got.error.message}`);
        outcomes.refused++;
        // refusals beyond ChatML's: whitespace-only emphasis, or contents that cannot be placed
        if (want && !/whitespace the chat template removes|rewrites message contents/.test(got.error.message))
          throw new Error(`refused: ${got.error.message}`);
        return;
      }
      if (!want) throw new Error("accepted a request that must be refused");
      const r = got.value;
      const spans = r.emphasis as CharSpan[];
      assertSpansInside(spans, r.prompt.length, "prompt emphasis");
      let k = 0;
      want.contents.forEach((content, i) => {
        const placed = r.contentSpans[i];
        const kept = content.trim();
        const lead = kept.length === 0 ? 0 : content.indexOf(kept);
        if (placed && r.prompt.slice(placed.start, placed.end) !== kept)
          throw new Error(`message ${i} is not placed on its trimmed content`);
        // the emphasized texts of this message, as the ChatML expectation lists them, re-derived as spans
        for (const text of want.emphasized[i]!) {
          const s = spans[k++];
          if (!s || !placed) throw new Error(`span for ${JSON.stringify(text)} missing`);
          if (s.start < placed.start || s.end > placed.end) throw new Error(`span ${JSON.stringify(s)} outside message ${i}`);
          const got = r.prompt.slice(s.start, s.end);
          // the prompt text is the emphasized text with only trimmed whitespace cut off its ends
          const offset = s.start - placed.start + lead; // in content coordinates
          if (content.slice(offset, offset + got.length) !== got || !text.includes(got) || got.length === 0) {
            throw new Error(`message ${i}: emphasized ${JSON.stringify(got)} for ${JSON.stringify(text)}`);
          }
          if (got === text) outcomes.exact++;
          else {
            outcomes.clipped++;
            const [before, after] = [text.slice(0, text.indexOf(got)), text.slice(text.indexOf(got) + got.length)];
            if (before.trim() !== "" || after.trim() !== "")
              throw new Error(`clipped more than whitespace: ${JSON.stringify(text)} -> ${JSON.stringify(got)}`);
          }
        }
      });
      if (k !== spans.length) throw new Error(`${spans.length} spans for ${k} emphasized texts`);
    }),
  );
  t.comment(`trimming template outcomes: ${JSON.stringify(outcomes)}`);
  t.ok(outcomes.clipped > 0 && outcomes.exact > RUNS / 20, "clipping and exact placement are both reached");
});
