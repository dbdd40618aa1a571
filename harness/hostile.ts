// Hostile requests (issue #26), each with the status the server documents for it: what
// test/process/server/hostile.test.ts sends next to a steady stream, and `npm run load -- --hostile`
// mixes in among normal clients. Each is small to send or cheap to refuse, and was, before #26, a
// stall, a 500 or an amplification (the test's comments say which). They carry HOSTILE_SECRET, which
// must never reach the server's log.

export const HOSTILE_SECRET = "HOSTILE-SECRET-TEXT";
const SECRET = HOSTILE_SECRET;

export interface HostileRequest {
  what: string;
  /** POSTed as JSON */
  path: string;
  body: unknown;
  /** the documented answer: 400, or 200 for requests that must be answered correctly */
  status: number;
}

const chat = (content: string, extra: object = {}) => ({ messages: [{ role: "user", content }], max_tokens: 4, ...extra });

export const HOSTILE_REQUESTS: readonly HostileRequest[] = (
  [
    [
      "megabytes of prompt and 1024 emphasis strings",
      "/v1/generate",
      {
        prompt: `${SECRET} `.repeat(150_000),
        steering: { emphasis: Array.from({ length: 1024 }, (_, i) => `${SECRET} ${i}`), heads: [0] },
      },
      400,
    ],
    ["/tokenize of megabytes with pieces", "/tokenize", { content: `${SECRET} `.repeat(150_000), with_pieces: true }, 400],
    [
      "300k markdown spans and AutoPASTA",
      "/v1/chat/completions",
      chat("**a** ".repeat(300_000), { steering: { markup: "markdown", auto: true } }),
      400,
    ],
    [
      "1100 markdown spans in a short message",
      "/v1/generate",
      { prompt: "**a**".repeat(1100), steering: { markup: "markdown", heads: [0] } },
      400,
    ],
    [
      "a JSON schema with a malformed count",
      "/v1/chat/completions",
      chat(SECRET, { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", maxLength: "abc" } } } }),
      400,
    ],
    [
      "a JSON schema asking for a billion items",
      "/v1/chat/completions",
      chat(SECRET, {
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "array", items: { type: "string" }, minItems: 1e9 } },
        },
      }),
      400,
    ],
    ["a grammar that does not parse", "/v1/generate", { prompt: SECRET, grammar: `root ::= "${SECRET}" (` }, 400],
    // before #26 item 1: 11-28 s for 2 tokens, the other sequence's stream stopped 6-14 s
    [
      "a grammar of 400 optional items (2.9 KB)",
      "/v1/generate",
      { prompt: SECRET, max_tokens: 2, grammar: `root ::= ${'"a"? '.repeat(400)}` },
      400,
    ],
    [
      "a grammar whose optional items come after its first character",
      "/v1/generate",
      { prompt: SECRET, max_tokens: 2, grammar: `root ::= "x" items\nitems ::= ${'"a"? '.repeat(600)}` },
      400,
    ],
    [
      "diagnostics beyond the bound",
      "/v1/generate",
      {
        prompt: SECRET,
        max_tokens: 1700,
        steering: { emphasis: ["HOSTILE"], heads: [0, 1, 2, 3, 4], diagnostics: { every_token: true, all_heads: true } },
      },
      400,
    ],
    ["a stop string of 100k characters", "/v1/generate", { prompt: SECRET, stop: "x".repeat(100_000) }, 400],
    ["tool_choice required", "/v1/chat/completions", chat(SECRET, { tool_choice: "required" }), 400],
    [
      "a logit_bias of 100k tokens",
      "/v1/chat/completions",
      chat(SECRET, { logit_bias: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [String(i), -1])) }),
      400,
    ],
    [
      "the chat markers' private-use characters, with emphasis",
      "/v1/chat/completions",
      chat(`\uE000${SECRET}\uE001 0\uE001`, { steering: { emphasis: [SECRET], heads: [0] } }),
      200,
    ],
    [
      "a span ending inside an emoji",
      "/v1/generate",
      { prompt: `${SECRET} 🍕 pizza`, max_tokens: 2, steering: { emphasis: [{ start: 0, end: SECRET.length + 2 }], heads: [0] } },
      200,
    ],
    [
      "100k chat messages",
      "/v1/chat/completions",
      { messages: Array.from({ length: 100_000 }, () => ({ role: "user", content: "hi" })), max_tokens: 1 },
      400,
    ],
    [
      "4096 messages of 32 content parts each",
      "/v1/chat/completions",
      {
        messages: Array.from({ length: 4096 }, () => ({ role: "user", content: Array(32).fill({ type: "text", text: "" }) })),
        max_tokens: 1,
      },
      400,
    ],
  ] as Array<[string, string, unknown, number]>
).map(([what, path, body, status]) => ({ what, path, body, status }));
