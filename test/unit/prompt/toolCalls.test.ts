// Tool calls read back from answers in each syntax (from the templates' own documented formats:
// Qwen2.5's "<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>",
// Mistral's "[TOOL_CALLS][...]", Llama 3.1's 'Respond in the format {"name": function name,
// "parameters": dictionary of argument name and its value}'), streamed or whole, and the templates
// of Qwen2.5, Llama 3.1, Mistral Nemo and Hermes 3 (as llama.cpp keeps them, in the llama.cpp source
// node-llama-cpp ships) rendering tools and a history with calls, a tool result placed exactly
// (emphasis in it lands on its tokens) where the template keeps it as it is.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import t from "tap";
import { ChatTemplate, type ChatMessage, type TemplateTool } from "../../../src/prompt/chatTemplate.js";
import { parseToolCalls, ToolCallStream, type ToolSyntax, toolSyntaxOf } from "../../../src/prompt/toolCalls.js";

/** the request's tools, by name */
const NAMES = new Set(["get_weather", "b"]);

const TEMPLATES = join(
  dirname(createRequire(import.meta.url).resolve("node-llama-cpp")),
  "..",
  "llama",
  "llama.cpp",
  "models",
  "templates",
);
const template = (file: string) => readFileSync(join(TEMPLATES, file), "utf8");
const FAMILIES: Array<[string, ToolSyntax, { bos_token: string; eos_token: string }]> = [
  ["Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", { bos_token: "", eos_token: "<|im_end|>" }],
  ["NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes", { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" }],
  ["mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", { bos_token: "<s>", eos_token: "</s>" }],
  ["meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", { bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>" }],
];

const weather: TemplateTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string", description: "the city" } }, required: ["city"] },
  },
};

const calls = (syntax: ToolSyntax, answer: string) =>
  parseToolCalls(syntax, answer, NAMES).calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) as unknown }));

t.test("each family's template teaches the syntax this server reads; SmolLM2-style ChatML teaches none", async (t) => {
  for (const [file, syntax] of FAMILIES) t.equal(toolSyntaxOf(template(file)), syntax, file);
  t.equal(toolSyntaxOf("{% for message in messages %}{{ message.content }}{% endfor %}"), null);
});

t.test("hermes: tagged calls, several, with text around; a bare call object; broken calls stay text", async (t) => {
  const two =
    'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"arguments": {"city": "Rome"}, "name": "get_weather"}\n</tool_call>';
  t.same(calls("hermes", two), [
    { name: "get_weather", arguments: { city: "Paris" } },
    { name: "get_weather", arguments: { city: "Rome" } },
  ]);
  t.equal(parseToolCalls("hermes", two, NAMES).content, "Let me check.");
  t.same(calls("hermes", '{"name": "get_weather", "arguments": {"city": "Oslo"}}'), [{ name: "get_weather", arguments: { city: "Oslo" } }]);
  t.same(calls("hermes", '```json\n{"name": "get_weather", "arguments": {}}\n```'), [{ name: "get_weather", arguments: {} }]);
  for (const broken of [
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par',
    '{"name": "Ada Lovelace", "arguments": {"born": 1815}}', // a JSON record, not a call of a tool
    '<tool_call>\n{"name": 3, "arguments": {}}\n</tool_call>',
    '<tool_call>\n{"arguments": {}}\n</tool_call>',
    "The weather is fine.",
  ]) {
    const parsed = parseToolCalls("hermes", broken, NAMES);
    t.same([parsed.calls, parsed.content], [[], broken], `text as it was: ${JSON.stringify(broken)}`);
  }
});

t.test("mistral: [TOOL_CALLS] with a list; llama3: the whole answer is one object with parameters", async (t) => {
  t.same(calls("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lyon"}}, {"name": "b", "arguments": {}}]'), [
    { name: "get_weather", arguments: { city: "Lyon" } },
    { name: "b", arguments: {} },
  ]);
  t.same(calls("llama3", '{"name": "get_weather", "parameters": {"city": "Kyiv"}}'), [
    { name: "get_weather", arguments: { city: "Kyiv" } },
  ]);
  t.same(calls("llama3", 'I think {"name": "get_weather", "parameters": {}}'), [], "a call must be the whole answer");
  t.match(parseToolCalls("mistral", "[TOOL_CALLS]", NAMES).calls, []);
  t.match(parseToolCalls("mistral", "x", NAMES).calls[0]?.id, undefined);
  t.match(
    parseToolCalls("mistral", '[TOOL_CALLS][{"name": "b", "arguments": {}}]', NAMES).calls[0]!.id,
    /^[0-9a-f]{9}$/,
    "Mistral's 9-character ids",
  );
  t.match(parseToolCalls("hermes", '{"name": "b", "arguments": {}}', NAMES).calls[0]!.id, /^call_[0-9a-f]{24}$/);
});

t.test("streaming: content flows until a call may begin, then the call comes whole at the end", async (t) => {
  const stream = (syntax: ToolSyntax, pieces: string[]) => {
    const s = new ToolCallStream(syntax, NAMES);
    const sent = pieces.map((p) => s.push(p)).join("");
    return { sent, end: s.finish() };
  };
  const tagged = stream("hermes", [
    "Let me ",
    "check. <tool",
    '_call>\n{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}\n</tool_call>',
  ]);
  t.equal(tagged.sent, "Let me check. ", "the marker's start is held back, never sent as content");
  t.same(
    tagged.end.calls.map((c) => c.name),
    ["get_weather"],
  );
  const bare = stream("hermes", ["  ", '{"name": "get_weather",', ' "arguments": {}}']);
  t.same([bare.sent, bare.end.calls.length], ["", 1], "a bare call is held from its first character");
  const plain = stream("hermes", ["Hello", " <there>", " friend"]);
  t.same([plain.sent + (plain.end.content ?? ""), plain.end.calls], ["Hello <there> friend", []], "a text with no call is all content");
  const cut = stream("hermes", ["Sure. ", '<tool_call>\n{"name": "get_wea']);
  t.same(
    [cut.sent, cut.end.content, cut.end.calls],
    ["Sure. ", '<tool_call>\n{"name": "get_wea', []],
    "an unfinished call comes back as text",
  );
  const text = stream("llama3", ["The answer", " is {42}"]);
  t.same([text.sent, text.end.calls], ["The answer is {42}", []]);
});

t.test("every family's template renders tools, a history with calls and a tool's result with its content placed exactly", async (t) => {
  for (const [file, , special] of FAMILIES) {
    const chat = new ChatTemplate(template(file), special);
    t.ok(chat.rendersTools, `${file}: renders tools`);
    const id = file.startsWith("mistral") ? "abc123xyz" : "call_1";
    const messages: ChatMessage[] = [
      { role: "user", content: "What is the weather in Paris?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id, type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }],
      },
      { role: "tool", content: '{"temperature": 31, "sky": "clear"}', tool_call_id: id },
    ];
    const rendered = chat.render(messages, [weather]);
    t.match(rendered.text, /get_weather/, `${file}: the tool and the call are in the prompt`);
    t.match(rendered.text, /"city": "Paris"|"city":"Paris"/, `${file}: the call's arguments, as JSON`);
    const placement = rendered.placements[2];
    if (file.startsWith("meta-llama")) {
      // Llama 3.1's template writes a tool's content `| tojson` (a string is iterable in Jinja): no exact place, so emphasis there is a 400
      t.equal(placement, null, `${file}: the tool result is rewritten`);
      t.ok(rendered.text.includes(JSON.stringify(messages[2]!.content)), `${file}: as a JSON string`);
      continue;
    }
    t.ok(placement, `${file}: the tool result's content is placed`);
    t.equal(rendered.text.slice(placement!.start, placement!.start + placement!.length), messages[2]!.content.slice(placement!.dropped));
  }
  t.notOk(new ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", { bos_token: "", eos_token: "" }).rendersTools);
});
