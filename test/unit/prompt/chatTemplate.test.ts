// Chat emphasis lands exactly on the message text inside the rendered template, also when the
// template trims contents; a template that rewrites contents refuses emphasis instead of guessing.
import t from "tap";
import { EmphasisError } from "../../../src/emphasis/markup.js";
import { ChatTemplate, CHATML_TEMPLATE } from "../../../src/prompt/chatTemplate.js";
import { chatPrompt } from "../../../src/prompt/prompts.js";

const specials = { bos_token: "<s>", eos_token: "</s>" };
// the shape of Llama 3's template: BOS from the template, contents trimmed
const LLAMA3_LIKE =
  "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}" +
  "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
const UPPERCASING = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] | upper }}\n{% endfor %}";

const messages = [
  { role: "system", content: "You answer briefly." },
  { role: "user", content: "  Lily had a <em>red ball</em>. Tom had a kite. " },
];

const emphasized = (prompt: string, spans: Array<{ start: number; end: number } | string>) =>
  spans.map((s) => (typeof s === "string" ? s : prompt.slice(s.start, s.end))).sort();
/** "Tom" in the user message once its markup is removed */
const TOM = "  Lily had a red ball. Tom had a kite. ".indexOf("Tom");

t.test("ChatML: markup and explicit spans map onto the rendered prompt", async (t) => {
  const template = new ChatTemplate(CHATML_TEMPLATE, specials);
  const out = chatPrompt(template, messages, { markup: "html", emphasis: ["briefly", { start: TOM, end: TOM + 3, message: 1 }] });
  t.equal(
    out.prompt,
    "<|im_start|>system\nYou answer briefly.<|im_end|>\n<|im_start|>user\n  Lily had a red ball. Tom had a kite. <|im_end|>\n<|im_start|>assistant\n",
  );
  t.same(emphasized(out.prompt, out.emphasis), ["Tom", "briefly", "red ball"]);
  t.ok(out.specialTokens);
});

t.test("a trimming template: offsets shift by the dropped whitespace", async (t) => {
  const template = new ChatTemplate(LLAMA3_LIKE, specials);
  const out = chatPrompt(template, messages, { markup: "html", emphasis: [{ start: TOM, end: TOM + 3 }] });
  t.ok(out.prompt.startsWith("<s><|start_header_id|>system"));
  t.match(out.prompt, /<\|end_header_id\|>\n\nLily had a red ball\. Tom had a kite\.<\|eot_id\|>/);
  t.same(emphasized(out.prompt, out.emphasis), ["Tom", "red ball"], "span without `message` points into the last user message");
  t.throws(
    () => chatPrompt(template, messages, { markup: "none", emphasis: [{ start: 0, end: 2, message: 1 }] }),
    EmphasisError,
    "emphasized whitespace the template removes",
  );
});

t.test("a template that rewrites contents refuses emphasis, renders without it", async (t) => {
  const template = new ChatTemplate(UPPERCASING, specials);
  t.throws(() => chatPrompt(template, messages, { markup: "html", emphasis: [] }), EmphasisError);
  t.equal(chatPrompt(template, [{ role: "user", content: "hi" }], undefined).prompt, "[user] HI\n");
});

t.test("emphasis that cannot be placed is a clear error", async (t) => {
  const template = new ChatTemplate(CHATML_TEMPLATE, specials);
  t.throws(() => chatPrompt(template, messages, { markup: "none", emphasis: ["dragon"] }), /occurs in no message/);
  t.throws(() => chatPrompt(template, messages, { markup: "none", emphasis: [{ start: 0, end: 99, message: 0 }] }), EmphasisError);
  t.throws(
    () =>
      chatPrompt(template, messages, { markup: "html", emphasis: [] }).prompt &&
      chatPrompt(template, [{ role: "user", content: "<em>x" }], { markup: "html", emphasis: [] }),
    /never closed/,
  );
});

t.test("private-use characters in a message do not break chat emphasis (#26: U+E000 made it a 400)", async (t) => {
  const template = new ChatTemplate(CHATML_TEMPLATE, specials);
  const content = "Icons \uE000 and \uE001 0\uE001 here. Tom had a kite.";
  const out = chatPrompt(template, [{ role: "user", content }], { markup: "none", emphasis: ["Tom"] });
  t.same(emphasized(out.prompt, out.emphasis), ["Tom"]);
  t.equal(out.contentSpans[0] && out.prompt.slice(out.contentSpans[0].start, out.contentSpans[0].end), content);
});
