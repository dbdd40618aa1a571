// Property-based request fuzzing (fast-check) against a real server process (stories260K,
// --ctx-size 256): thousands of generated bodies at POST /v1/generate, /v1/chat/completions and
// /v1/completions: well-typed bodies (some with values the server must refuse), mutations of them
// (wrong types, missing and extra fields, huge, negative and NaN-like values, long strings), arbitrary
// JSON, raw bytes under assorted content types, and a few bodies over the 4 MiB limit.
//
// Properties, for every request:
//   - the status is never 5xx (the server is idle enough that not even 503 is expected);
//   - every non-2xx body is OpenAI's error shape {error: {message, type, param, code}};
//   - every 200 with steering spans has them inside the prompt after markup removal (the rendered
//     chat prompt for chat), sorted and disjoint, spelling the prompt's text, with
//     token_start < token_end <= usage.prompt_tokens, and (without AutoPASTA) exactly the union of
//     the request's markup and emphasis items;
//   - streams carry only `data:` JSON chunks, [DONE], or an error event that is not a server error;
// and afterwards the server logged no error and still answers a known request exactly as before.
// Eight workers, each an fc.asyncProperty with its own fixed seed (printed on failure; FUZZ_SEED=<n>
// overrides the base), run concurrently over fetch's keep-alive connections within a time budget
// (FUZZ_BUDGET_MS, default 30 s; FUZZ_RUNS per worker, default 700).
import fc from "fast-check";
import t from "tap";
import {
  parseMarkup,
  resolveEmphasis,
  snapToCodePoints,
  unionSpans,
  type CharSpan,
  type MarkupKind,
} from "../../../src/emphasis/markup.js";
import { ChatTemplate, CHATML_TEMPLATE } from "../../../src/prompt/chatTemplate.js";
import { chatPrompt, plainPrompt } from "../../../src/prompt/prompts.js";
import { errorLogLines, request as httpRequest, sseEvents, startServer, type ServerProcess } from "../../../harness/index.js";

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 424242;
const WORKERS = 8;
/** requests per worker at most; the time budget usually ends the run first on a slow machine */
const RUNS_PER_WORKER = Number(process.env.FUZZ_RUNS ?? 700);
const BUDGET_MS = Number(process.env.FUZZ_BUDGET_MS ?? 30_000);
const MIN_REQUESTS = 2000;
const HEADS = { "2": [0, 3, 5], "3": [1, 6] };
const LAYERS = 5,
  HEADS_PER_LAYER = 8;

let server: ServerProcess;
t.before(async () => {
  server = await startServer([]);
});
t.teardown(async () => {
  await server?.stop();
});

// ---------------------------------------------------------------------------------------------
// generators

const STORY = "Once upon a time, there was a little girl named Lily. She had a red ball. Tom had a blue kite.";
const WORDS = ["Lily", "Tom", "ball", "kite", "red", " ", ". ", "the", "dog", "\n", "😀", "é", "ß", "👨‍👩‍👧", "\t", "  "];
const MARKUP_TOKENS = ["<em>", "</em>", "<b>", "</B>", "<strong>", "</STRONG>", "**", "***", "<em", "</ em>", "<emx>", "<", ">", "*"];
const SPECIAL_TEXT = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "\u0000", "\uFFFD", "\uE000", "\uE0000\uE001"];
const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));

const textPiece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...WORDS) },
  { weight: 3, arbitrary: fc.constantFrom(...MARKUP_TOKENS) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 5 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_TEXT) },
  { weight: 1, arbitrary: loneSurrogate },
);
/** prompt text: a story sentence with random pieces, sometimes long (over the context) or very long */
const promptText = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(fc.constantFrom("", STORY, STORY.slice(0, 40)), fc.array(textPiece, { maxLength: 10 }))
      .map(([a, p]) => a + p.join("")),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "<em>Lily</em> had a ball.",
      "Tom had **a kite**.",
      "A <b>red</b> ball and <strong>a dog</strong>.",
      "",
      " ",
      STORY,
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 3000 }).map((n) => "Lily ".repeat(n)) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: 20_000 })
      .chain((n) => fc.constantFrom("x", "😀", "\u0000", "<em>", "\uD800").map((c) => c.repeat(n))),
  },
);

const NASTY: unknown[] = [
  null,
  true,
  false,
  0,
  -0,
  -1,
  1,
  1.5,
  -2.5,
  1e308,
  -1e308,
  5e-324,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 63),
  1e21,
  "",
  " ",
  "NaN",
  "Infinity",
  "-Infinity",
  "1e309",
  "null",
  "0x10",
  "1",
  "true",
  "__proto__",
  "constructor",
  "default",
  "\u0000",
  [],
  [null],
  [[]],
  {},
  { "": null },
  "x".repeat(10_000),
  "😀".repeat(3000),
  Array.from({ length: 2000 }, (_, i) => i),
];
const nasty = fc.constantFrom(...NASTY);
const smallInt = fc.integer({ min: -2, max: 12 });

/** steering.heads: valid ones mostly, then everything else */
const heads = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<unknown>(HEADS, [0], [4], { "0": [7] }, [0, 1, 2, 3, 4], { "1": [0, 0, 1] }, { "01": [2] }) },
  {
    weight: 2,
    arbitrary: fc.dictionary(
      fc.oneof(fc.integer({ min: -1, max: 6 }).map(String), fc.string({ maxLength: 3 })),
      fc.array(fc.integer({ min: -2, max: 9 }), { maxLength: 4 }),
      { maxKeys: 3 },
    ),
  },
  { weight: 2, arbitrary: fc.array(fc.integer({ min: -2, max: 6 }), { maxLength: 6 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>("default", "", "nope", [], {}, { "0": [] }, [1.5], { "0": [1e10] }, { x: [0] }, [LAYERS], {
      "0": [HEADS_PER_LAYER],
    }),
  },
);

/** emphasis items aimed at the contents (substrings and spans of them) and elsewhere; chat: spans name their message */
function emphasisItems(contents: readonly string[], chat: boolean, wild: boolean): fc.Arbitrary<unknown[]> {
  const which = fc.nat(contents.length - 1);
  const substring = fc.tuple(which, fc.nat(), fc.integer({ min: 1, max: 12 })).map(([m, a, n]) => {
    const text = contents[m]!,
      i = a % Math.max(text.length, 1);
    return text.slice(i, i + n) || "Lily";
  });
  const span = fc.tuple(which, fc.nat(), fc.integer({ min: 1, max: 15 })).map(([m, a, n]) => {
    const length = contents[m]!.length,
      i = a % Math.max(length, 1);
    return { start: i, end: Math.min(i + n, Math.max(length, 1)), ...(chat ? { message: m } : {}) };
  });
  const items: Array<fc.Arbitrary<unknown>> = [substring, span];
  if (wild) {
    items.push(
      fc.tuple(span, fc.integer({ min: -2, max: 20 })).map(([s, n]) => ({ ...s, end: s.start + n })),
      fc.record({ start: smallInt, end: fc.integer({ min: -2, max: 300 }) }),
      fc.constantFrom("Lily", "Tom", "dragon", "", " ", "😀"),
    );
    if (chat) items.push(fc.tuple(span, fc.integer({ min: -1, max: contents.length })).map(([s, m]) => ({ ...s, message: m })));
  }
  return fc.array(fc.oneof(...items), { minLength: wild ? 0 : 1, maxLength: 3 });
}

const markup = fc.constantFrom<MarkupKind>("none", "html", "markdown", "html", "markdown");
/** the text a content becomes after markup removal (the raw text where the markup is invalid) */
const plain = (content: string, kind: MarkupKind) => {
  try {
    return parseMarkup(content, kind).text;
  } catch {
    return content;
  }
};

/** steering for these contents: mostly sane (valid heads, alpha, mode; emphasis on the text), else anything */
function steering(raw: readonly string[], chat = false): fc.Arbitrary<Record<string, unknown>> {
  const contents = raw.length > 0 ? raw : [""];
  // sane: a markup under which every content parses
  const parses = (kind: MarkupKind) =>
    contents.every((c) => {
      try {
        parseMarkup(c, kind);
        return true;
      } catch {
        return false;
      }
    });
  const saneMarkup = fc
    .constantFrom<MarkupKind>("none", "html", "markdown", "html", "markdown")
    .map((kind) => (parses(kind) ? kind : "none"));
  const sane = saneMarkup.chain((kind) =>
    fc.record(
      {
        emphasis: emphasisItems(
          contents.map((c) => plain(c, kind)),
          chat,
          false,
        ),
        markup: fc.constant(kind),
        alpha: fc.constantFrom(0.01, 0.5, 1, 0.001),
        mode: fc.constantFrom("exclude", "include", "generation"),
        heads: fc.constantFrom<unknown>(HEADS, [0], [4], { "0": [7] }, [0, 1, 2, 3, 4], { "1": [0, 0, 1] }, { "01": [2] }),
        auto: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      },
      { requiredKeys: ["emphasis", "heads"] },
    ),
  );
  const wild = markup.chain((kind) =>
    fc.record(
      {
        emphasis: emphasisItems(
          contents.map((c) => plain(c, kind)),
          chat,
          true,
        ),
        markup: fc.oneof(fc.constant<unknown>(kind), fc.constantFrom("HTML", "md", "")),
        alpha: fc.oneof(
          fc.constantFrom(0.01, 0.5, 1, 0.001),
          fc.double({ min: -2, max: 3, noNaN: true }),
          fc.constantFrom(0, 2, 1e-300, 1e300, -0),
        ),
        mode: fc.constantFrom("exclude", "include", "generation", "boost"),
        heads,
        auto: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      },
      { requiredKeys: [] },
    ),
  );
  return fc.oneof({ weight: 2, arbitrary: sane }, { weight: 1, arbitrary: wild });
}

const sampling = fc.record(
  {
    temperature: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 2, noNaN: true }), fc.constantFrom(5e-324, 1e-300, 2)),
    top_p: fc.oneof(fc.double({ min: 0.01, max: 1, noNaN: true }), fc.constantFrom(5e-324, 1e-300, 1)),
    top_k: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constantFrom(2 ** 31 - 1, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER)),
    seed: fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2 ** 32, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER)),
    stop: fc.oneof(
      fc.constantFrom("Lily", ".", "\n", "\ud800", "😀", "x".repeat(5000)),
      fc.array(
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 4 }),
          textPiece.filter((p) => p.length > 0),
        ),
        { maxLength: 3 },
      ),
    ),
    stream: fc.boolean(),
  },
  { requiredKeys: [] },
);

const generateBody = promptText.chain((prompt) =>
  fc
    .tuple(
      fc.record(
        {
          prompt: fc.constant(prompt),
          max_tokens: fc.integer({ min: 1, max: 3 }),
          logprobs: fc.integer({ min: 0, max: 3 }),
          steering: steering([prompt]),
        },
        { requiredKeys: ["prompt", "max_tokens"] },
      ),
      sampling,
    )
    .map(([a, b]) => ({ ...a, ...b })),
);

const completionBody = promptText.chain((prompt) =>
  fc
    .tuple(
      fc.record(
        {
          prompt: fc.oneof(fc.constant<unknown>(prompt), fc.constant([prompt])),
          max_tokens: fc.integer({ min: 0, max: 3 }),
          echo: fc.boolean(),
          logprobs: fc.integer({ min: 0, max: 3 }),
          steering: steering([prompt]),
          model: fc.constantFrom("stories260K", "stories260K", "stories260K", "gpt-4"),
          n: fc.constantFrom(1, 1, 1, 2),
          suffix: fc.constant(null),
          stream_options: fc.record({ include_usage: fc.boolean() }),
        },
        { requiredKeys: ["prompt", "max_tokens"] },
      ),
      sampling,
    )
    .map(([a, b]) => ({ ...a, ...b })),
);

const role = fc.constantFrom("system", "developer", "user", "assistant", "tool", "user", "user");
const message = fc.record(
  {
    role,
    content: fc.oneof(
      { weight: 6, arbitrary: promptText },
      { weight: 1, arbitrary: fc.array(fc.record({ type: fc.constant("text"), text: promptText }), { maxLength: 2 }) },
      { weight: 1, arbitrary: fc.constant(null) },
    ),
    name: fc.string({ maxLength: 4 }),
  },
  { requiredKeys: ["role", "content"] },
);
const chatBody = fc.array(message, { minLength: 1, maxLength: 3 }).chain((messages) =>
  fc
    .tuple(
      fc.record(
        {
          messages: fc.constant(messages),
          max_tokens: fc.integer({ min: 1, max: 3 }),
          max_completion_tokens: fc.integer({ min: 1, max: 3 }),
          logprobs: fc.boolean(),
          top_logprobs: fc.integer({ min: 0, max: 3 }),
          steering: steering(
            messages.map((m) =>
              m.content == null ? "" : typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("\n"),
            ),
            true,
          ),
          model: fc.constantFrom("stories260K", "stories260K", "stories260K", "gpt-4"),
          response_format: fc.constantFrom({ type: "text" }, { type: "text" }, { type: "text" }, { type: "json_object" }),
          tools: fc.constantFrom([], [], [], [{ type: "function" }]),
          stream_options: fc.record({ include_usage: fc.boolean() }),
        },
        { requiredKeys: ["messages"] },
      ),
      sampling,
    )
    .map(([a, b]) => ({ max_tokens: 2, ...a, ...b })),
);

type Json = unknown;
/** every path (keys and indices) inside a JSON value, the root included */
function paths(value: Json, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (prefix.length > 6 || out.length > 200) return out;
  if (Array.isArray(value))
    value.slice(0, 20).forEach((v, i) => {
      paths(v, [...prefix, i], out);
    });
  else if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

type Mutation = { kind: "set" | "delete" | "extra" | "wrap"; at: number; value: unknown; key: string };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("set", "set", "delete", "extra", "wrap"),
  at: fc.nat(),
  value: fc.oneof(
    { weight: 3, arbitrary: nasty },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    { weight: 1, arbitrary: fc.string() },
  ),
  key: fc.oneof(
    fc.constantFrom(
      "steering",
      "prompt",
      "messages",
      "max_tokens",
      "emphasis",
      "heads",
      "alpha",
      "mode",
      "markup",
      "start",
      "end",
      "message",
      "stream",
      "__proto__",
      "constructor",
      "extra",
    ),
    fc.string({ maxLength: 5 }),
  ),
});

/** applies the mutations to a deep copy */
function mutate(body: Json, mutations: readonly Mutation[]): Json {
  let root = structuredClone(body) as Json;
  for (const m of mutations) {
    const all = paths(root);
    const path = all[m.at % all.length]!;
    const parent = path.length === 0 ? null : path.slice(0, -1).reduce<any>((v, k) => v[k], root);
    const last = path.at(-1);
    const current = path.length === 0 ? root : parent[last!];
    const replace = (v: unknown) => {
      if (path.length === 0) root = v;
      else parent[last!] = v;
    };
    switch (m.kind) {
      case "set":
        replace(structuredClone(m.value));
        break;
      case "wrap":
        replace(Array.isArray(current) ? current[0] : [current]);
        break;
      case "delete":
        if (path.length === 0) break;
        if (Array.isArray(parent)) parent.splice(last as number, 1);
        else delete parent[last!];
        break;
      case "extra":
        if (current && typeof current === "object" && !Array.isArray(current))
          Object.defineProperty(current, m.key, { value: structuredClone(m.value), enumerable: true, configurable: true, writable: true });
        else replace({ [m.key]: current });
        break;
    }
  }
  return root;
}

const ENDPOINTS = ["/v1/generate", "/v1/chat/completions", "/v1/completions"] as const;
type Endpoint = (typeof ENDPOINTS)[number];
interface Sent {
  endpoint: Endpoint;
  body: string | Uint8Array;
  contentType: string | null;
  kind: string;
  json?: Json;
  /** a JSON body this many characters long, over the 4 MiB body limit, built when sent (kept out of failure reports) */
  oversized?: number;
}

const validFor = (endpoint: Endpoint) =>
  (endpoint === "/v1/generate" ? generateBody : endpoint === "/v1/chat/completions" ? chatBody : completionBody) as fc.Arbitrary<Json>;
const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "text/plain",
  "application/x-www-form-urlencoded",
  "application/octet-stream",
  "application/json; charset=latin1",
  "APPLICATION/JSON",
  "multipart/form-data; boundary=x",
];

const request: fc.Arbitrary<Sent> = fc.constantFrom(...ENDPOINTS).chain((endpoint) =>
  fc.oneof(
    // valid bodies
    {
      weight: 80,
      arbitrary: validFor(endpoint).map(
        (json): Sent => ({ endpoint, json, body: JSON.stringify(json), contentType: "application/json", kind: "valid" }),
      ),
    },
    // mutations of valid bodies
    {
      weight: 120,
      arbitrary: fc.tuple(validFor(endpoint), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([valid, ms]): Sent => {
        const json = mutate(valid, ms);
        return { endpoint, json, body: JSON.stringify(json) ?? "", contentType: "application/json", kind: "mutated" };
      }),
    },
    // arbitrary JSON
    {
      weight: 40,
      arbitrary: fc
        .jsonValue({ maxDepth: 4 })
        .map((json): Sent => ({ endpoint, json, body: JSON.stringify(json), contentType: "application/json", kind: "json" })),
    },
    // raw bytes and near-JSON text under assorted content types
    {
      weight: 40,
      arbitrary: fc
        .tuple(
          fc.oneof(
            fc.uint8Array({ maxLength: 200 }),
            fc
              .constantFrom(
                "{",
                "}",
                '{"prompt":',
                '{"prompt": "x",}',
                "[",
                "nul",
                '{"__proto__": {"x": 1}, "prompt": "a"}',
                '{"constructor": {"prototype": {}}}',
                '{"prompt": "\\ud800", "max_tokens": 1}',
                '{"prompt":"a","max_tokens":1e999}',
                '\uFEFF{"prompt":"a"}',
                '{"prompt": "a", "prompt": 3}',
                "[".repeat(5000) + "]".repeat(5000),
                `{"prompt":"a","steering":${"[".repeat(2000)}${"]".repeat(2000)}}`,
              )
              .map((s) => new TextEncoder().encode(s)),
            fc.string({ unit: "binary", maxLength: 80 }).map((s) => new TextEncoder().encode(s)),
          ),
          fc.oneof(fc.constant<string | null>(null), fc.constantFrom(...CONTENT_TYPES)),
        )
        .map(([bytes, contentType]): Sent => ({ endpoint, body: bytes, contentType, kind: "raw" })),
    },
    // bodies over the server's 4 MiB limit (413, read to the end so the client sees it)
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 4 * 1024 * 1024 + 1, max: 6 * 1024 * 1024 })
        .map((n): Sent => ({ endpoint, body: "", contentType: "application/json", kind: "oversized", oversized: n })),
    },
  ),
);

// ---------------------------------------------------------------------------------------------
// checking responses

const CHATML = new ChatTemplate(CHATML_TEMPLATE, { bos_token: "<s>", eos_token: "</s>" });

interface Span {
  start: number;
  end: number;
  text: string;
  token_start: number;
  token_end: number;
}

/**
 * The prompt the server evaluated for this (accepted) body, as the routes build it, and the
 * character spans it must have steered (the union of the markup and the emphasis items; null for
 * AutoPASTA, which chooses its own).
 */
function promptOf(sent: Sent): { prompt: string; expected: CharSpan[] | null } {
  const body = sent.json as any;
  const steering = body.steering
    ? { markup: (body.steering.markup ?? "none") as MarkupKind, emphasis: body.steering.emphasis ?? [] }
    : undefined;
  const rendered =
    sent.endpoint === "/v1/chat/completions"
      ? chatPrompt(
          CHATML,
          body.messages.map((m: any) => ({
            role: m.role,
            content: m.content == null ? "" : typeof m.content === "string" ? m.content : m.content.map((p: any) => p.text).join("\n"),
            ...(m.name ? { name: m.name } : {}),
          })),
          steering,
        )
      : plainPrompt(typeof body.prompt === "string" ? body.prompt : body.prompt[0], steering);
  return {
    prompt: rendered.prompt,
    // spans widened to whole characters where an edge splits a surrogate pair (#26)
    expected: body.steering?.auto
      ? null
      : unionSpans(resolveEmphasis(rendered.prompt, rendered.emphasis).map((s) => snapToCodePoints(rendered.prompt, s))),
  };
}

function checkErrorShape(body: any): string | null {
  if (!body || typeof body !== "object" || Array.isArray(body)) return "the body is not an object";
  if (Object.keys(body).join() !== "error") return `keys ${Object.keys(body).join()}`;
  const e = body.error;
  if (!e || typeof e !== "object") return "error is not an object";
  if (Object.keys(e).sort().join() !== "code,message,param,type") return `error keys ${Object.keys(e).join()}`;
  if (typeof e.message !== "string" || e.message.length === 0) return "message";
  if (typeof e.type !== "string") return "type";
  if (e.param !== null && typeof e.param !== "string") return "param";
  if (e.code !== null && typeof e.code !== "string") return "code";
  return null;
}

function checkSpans(sent: Sent, spans: Span[], promptTokens: number | undefined): string | null {
  const { prompt, expected } = promptOf(sent);
  if (expected && JSON.stringify(spans.map((s) => ({ start: s.start, end: s.end }))) !== JSON.stringify(expected)) {
    return `steered spans ${JSON.stringify(spans)}, but the request emphasizes ${JSON.stringify(expected)}`;
  }
  for (const [i, s] of spans.entries()) {
    if (!(Number.isInteger(s.start) && Number.isInteger(s.end) && s.start >= 0 && s.start < s.end && s.end <= prompt.length))
      return `span ${i} ${JSON.stringify(s)} is not inside the prompt (${prompt.length} characters)`;
    if (s.text !== prompt.slice(s.start, s.end))
      return `span ${i} text ${JSON.stringify(s.text)} is not the prompt's ${JSON.stringify(prompt.slice(s.start, s.end))}`;
    if (!(Number.isInteger(s.token_start) && Number.isInteger(s.token_end) && s.token_start >= 0 && s.token_start < s.token_end))
      return `span ${i} token range ${s.token_start}-${s.token_end}`;
    if (promptTokens !== undefined && s.token_end > promptTokens)
      return `span ${i} token_end ${s.token_end} > prompt_tokens ${promptTokens}`;
    if (i > 0 && s.start <= spans[i - 1]!.end) return `spans ${i - 1} and ${i} are not sorted and disjoint`;
  }
  return null;
}

/** the text a 200 body generated, per endpoint */
function generatedText(endpoint: Endpoint, body: any): unknown {
  if (endpoint === "/v1/generate") return body.text;
  if (endpoint === "/v1/chat/completions") return body.choices?.[0]?.message?.content;
  return body.choices?.[0]?.text;
}

const statuses = new Map<string, number>();
/** refusals by status, code and param */
const reasons = new Map<string, number>();
/** statuses by kind of body (valid, mutated, json, raw) */
const byKind = new Map<string, number>();
let requests = 0;
const tally = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1);
const describe = (sent: Sent) =>
  `${sent.endpoint} ${sent.kind} content-type ${sent.contentType} body ${typeof sent.body === "string" ? sent.body.slice(0, 2000) : `bytes ${Buffer.from(sent.body).toString("hex").slice(0, 400)}`}`;

/** sends one request and returns what is wrong with the answer, or null */
async function exchange(sent: Sent): Promise<string | null> {
  const headers: Record<string, string> = {};
  if (sent.contentType) headers["content-type"] = sent.contentType;
  const payload = sent.oversized
    ? `{"prompt":"${"x".repeat(sent.oversized - 13)}"}`
    : typeof sent.body === "string"
      ? sent.body
      : Buffer.from(sent.body);
  const res = await fetch(`${server.base}${sent.endpoint}`, {
    method: "POST",
    headers,
    body: payload,
    signal: AbortSignal.timeout(30_000),
  });
  const raw = await res.text();
  requests++;
  tally(`${res.status}`);
  byKind.set(`${sent.kind} ${res.status}`, (byKind.get(`${sent.kind} ${res.status}`) ?? 0) + 1);
  if (res.status >= 500) return `status ${res.status}: ${raw.slice(0, 500)}`;
  const type = res.headers.get("content-type") ?? "";
  if (res.status !== 200) {
    if (!type.startsWith("application/json")) return `status ${res.status} with content-type ${type}`;
    const error = JSON.parse(raw);
    const why = checkErrorShape(error);
    if (!why)
      reasons.set(
        `${res.status} ${error.error.code} ${error.error.param}`,
        (reasons.get(`${res.status} ${error.error.code} ${error.error.param}`) ?? 0) + 1,
      );
    return why && `status ${res.status}, not OpenAI's error shape (${why}): ${raw.slice(0, 500)}`;
  }
  if (type.startsWith("text/event-stream")) {
    if (sent.json === undefined)
      sent = { ...sent, json: JSON.parse(new TextDecoder().decode(sent.body as Uint8Array).replace(/^\uFEFF/, "")) };
    tally("200 stream");
    let promptTokens: number | undefined;
    const spans: Span[][] = [];
    // the wire format itself: every event exactly as the server writes it (harness/sse.ts's wellFormed)
    const events = sseEvents(raw);
    const last = events.at(-1);
    if (!(last?.wellFormed && (last.event === undefined ? last.data === "[DONE]" : last.event === "error")))
      return `the stream does not end with [DONE] or an error: ${raw.slice(-300)}`;
    for (const event of events) {
      if (!event.wellFormed || (event.event !== undefined && event.event !== "error"))
        return `not an SSE data event: ${JSON.stringify(event).slice(0, 200)}`;
      if (event.event === undefined && event.data === "[DONE]") continue;
      if (event.event === "error") {
        const body = JSON.parse(event.data);
        const why = checkErrorShape(body);
        if (why) return `stream error event, not OpenAI's error shape (${why}): ${event.data}`;
        if (body.error.type === "server_error") return `server error mid-stream: ${event.data}`;
        tally("200 stream error event");
        continue;
      }
      const chunk = JSON.parse(event.data);
      if (chunk.steering?.spans) spans.push(chunk.steering.spans);
      if (chunk.usage?.prompt_tokens !== undefined) promptTokens = chunk.usage.prompt_tokens;
    }
    for (const s of spans) {
      const why = checkSpans(sent, s, promptTokens);
      if (why) return why;
    }
    return null;
  }
  // a raw body the server accepted is JSON after all (a byte-order mark is skipped): read it as the server did
  if (sent.json === undefined)
    sent = { ...sent, json: JSON.parse(new TextDecoder().decode(sent.body as Uint8Array).replace(/^\uFEFF/, "")) };
  if (!type.startsWith("application/json")) return `200 with content-type ${type}`;
  const body = JSON.parse(raw);
  if (typeof generatedText(sent.endpoint, body) !== "string") return `200 without generated text: ${raw.slice(0, 300)}`;
  const usage = body.usage;
  if (!usage || !Number.isInteger(usage.prompt_tokens) || !Number.isInteger(usage.completion_tokens))
    return `200 without usage: ${raw.slice(0, 300)}`;
  const asked = (sent.json as any).max_completion_tokens ?? (sent.json as any).max_tokens;
  if (typeof asked === "number" && usage.completion_tokens > asked)
    return `${usage.completion_tokens} tokens generated, ${asked} asked for`;
  if (body.steering?.spans) {
    tally("200 steered");
    return checkSpans(sent, body.steering.spans, usage.prompt_tokens);
  }
  return null;
}

const post = (path: string, body: object) => httpRequest(server.base, path, { body });

// ---------------------------------------------------------------------------------------------

const KNOWN = [
  ["/v1/generate", { prompt: STORY, max_tokens: 8, temperature: 0 }],
  [
    "/v1/generate",
    {
      prompt: "Lily had a red ball. <em>Tom had a blue kite.</em> Lily wanted to",
      max_tokens: 8,
      temperature: 0,
      steering: { markup: "html", heads: HEADS },
    },
  ],
  [
    "/v1/chat/completions",
    {
      messages: [{ role: "user", content: "Tom had a **blue kite**." }],
      max_tokens: 6,
      temperature: 0,
      steering: { markup: "markdown", heads: HEADS },
    },
  ],
] as const;
const known = (r: { status: number; body: any }, endpoint: Endpoint) => ({
  status: r.status,
  text: generatedText(endpoint, r.body),
  steering: r.body.steering,
  usage: r.body.usage?.prompt_tokens,
});

t.test(
  "thousands of generated requests: never 5xx, OpenAI error shapes, spans inside the prompt; the server still answers the same after",
  async (t) => {
    const before = [];
    for (const [path, body] of KNOWN) before.push(known(await post(path, body), path));
    t.ok(
      before.every((b) => b.status === 200 && typeof b.text === "string" && b.text.length > 0),
      "the known-good requests succeed",
    );

    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: WORKERS }, (_, w) =>
        fc.check(
          fc.asyncProperty(request, async (sent) => {
            const why = await exchange(sent);
            if (why) throw new Error(`${why}\n  request: ${describe(sent)}`);
          }),
          {
            numRuns: RUNS_PER_WORKER,
            seed: SEED + w,
            interruptAfterTimeLimit: BUDGET_MS,
            markInterruptAsFailure: false,
            endOnFailure: false,
          },
        ),
      ),
    );
    const seconds = (performance.now() - started) / 1000;
    for (const [w, details] of results.entries()) {
      if (details.failed)
        t.fail(
          `worker ${w}: ${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}\n(seed ${SEED + w}; rerun with FUZZ_SEED=${SEED})`,
        );
    }
    const histogram = [...statuses.entries()]
      .sort()
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ");
    t.comment(
      `${requests} requests in ${seconds.toFixed(1)} s (${Math.round(requests / seconds)}/s) by ${WORKERS} workers, seeds ${SEED}..${SEED + WORKERS - 1}; statuses ${histogram}`,
    );
    t.comment(
      `statuses by kind of body: ${[...byKind.entries()]
        .sort()
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ")}`,
    );
    t.comment(
      `most frequent refusals (status code param): ${[...reasons.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 25)
        .map(([k, v]) => `${k}: ${v}`)
        .join("; ")}`,
    );
    // a failure ends its worker early: the count only matters for a clean run
    if (!results.some((r) => r.failed)) t.ok(requests >= MIN_REQUESTS, `at least ${MIN_REQUESTS} requests were sent (${requests})`);
    t.ok(
      (statuses.get("200") ?? 0) > requests / 20 && (statuses.get("200 steered") ?? 0) > 0 && (statuses.get("400") ?? 0) > requests / 10,
      "valid, steered and refused requests are all reached",
    );

    // the server logged no internal error, and answers exactly as before
    const errors = errorLogLines(server.log());
    t.same(errors.slice(0, 5), [], "no error was logged");
    const after = [];
    for (const [path, body] of KNOWN) after.push(known(await post(path, body), path));
    t.same(after, before, "the known-good requests give the same greedy text, spans and usage after the fuzzing");
    const health = await fetch(`${server.base}/health`);
    t.equal(health.status, 200, "/health still answers");
  },
);
