// Counts refused before schema validation (src/server/bodyBounds.ts, #26): each bound at its limit
// passes, one more is a 400 naming the field, and nested items count across all messages.
import t from "tap";
import { MAX_EMPHASIS_ITEMS, MAX_LOGIT_BIAS, MAX_MESSAGE_ITEMS, MAX_MESSAGES, MAX_TOOLS } from "../../../src/defaults.js";
import { checkBodyBounds } from "../../../src/server/bodyBounds.js";

const refusal = (param: string) => ({ status: 400, param, code: "too_many_items" });
const messages = (n: number, message: object = { role: "user", content: "hi" }) => Array(n).fill(message);
const call = { id: "c", type: "function", function: { name: "f", arguments: "{}" } };

t.test("top-level counts: at the bound passes, one more is refused by name", async (t) => {
  const cases: Array<[string, (n: number) => object, number]> = [
    ["messages", (n) => ({ messages: messages(n) }), MAX_MESSAGES],
    ["tools", (n) => ({ tools: Array(n).fill({}) }), MAX_TOOLS],
    ["logit_bias", (n) => ({ logit_bias: Object.fromEntries(Array.from({ length: n }, (_, i) => [i, 1])) }), MAX_LOGIT_BIAS],
    ["steering.emphasis", (n) => ({ steering: { emphasis: Array(n).fill("a") } }), MAX_EMPHASIS_ITEMS],
  ];
  for (const [param, body, max] of cases) {
    t.doesNotThrow(() => checkBodyBounds(body(max)), `${param}: ${max}`);
    t.throws(() => checkBodyBounds(body(max + 1)), refusal(param), `${param}: ${max + 1}`);
  }
});

t.test("content parts and history tool calls count together across the messages", async (t) => {
  const parts = (n: number) => Array(n).fill({ type: "text", text: "" });
  const half = MAX_MESSAGE_ITEMS / 2;
  // 2 messages of half the bound each, parts in one and calls in the other: exactly the bound
  const atBound = {
    messages: [
      { role: "user", content: parts(half) },
      { role: "assistant", tool_calls: Array(half).fill(call) },
    ],
  };
  t.doesNotThrow(() => checkBodyBounds(atBound));
  t.throws(() => checkBodyBounds({ messages: [...atBound.messages, { role: "user", content: parts(1) }] }), {
    ...refusal("messages"),
    message: new RegExp(`${MAX_MESSAGE_ITEMS + 1} content parts and tool calls in all, at most ${MAX_MESSAGE_ITEMS}`),
  });
  // many messages of a few items each: no per-message bound is crossed, the total is
  t.throws(
    () => checkBodyBounds({ messages: messages(MAX_MESSAGES, { role: "assistant", tool_calls: Array(3).fill(call) }) }),
    refusal("messages"),
  );
  t.doesNotThrow(() => checkBodyBounds({ messages: messages(MAX_MESSAGES, { role: "user", content: "string content counts nothing" }) }));
});

t.test("bodies of any shape pass to the schema, which names what is wrong", async (t) => {
  for (const body of [undefined, null, "text", 5, [], { messages: "x" }, { messages: [null, 3, { content: 7 }] }, { steering: null }])
    t.doesNotThrow(() => checkBodyBounds(body), JSON.stringify(body));
});
