// Profiling examples as the served model reads them: in its chat template (the context as the
// user's message, the target as the start of the assistant's reply), or as raw text.
import t from "tap";
import { CHATML_TEMPLATE, ChatTemplate } from "../../../src/prompt/chatTemplate.js";
import { renderExample } from "../../../src/profiles/scoring.js";
import { loadBuiltinTasks } from "../../../src/profiles/tasks.js";

const example = {
  context: "In this story, the sky is green. Q: What colour is the sky? A:",
  emphasis: "In this story, the sky is green.",
  target: " green",
};
const chatml = new ChatTemplate(CHATML_TEMPLATE, { bos_token: "", eos_token: "" });
const texts = (r: ReturnType<typeof renderExample>) => r.emphasis.map((s) => r.prompt.slice(s.start, s.end));

t.test("raw text: context then target, as before", async (t) => {
  const r = renderExample(example, null);
  t.equal(r.prompt, example.context + example.target);
  t.equal(r.specialTokens, false);
  t.equal(r.boundary, example.context.length);
  t.same(texts(r), [example.emphasis, example.target], "the emphasis, then the target");
});

t.test("chat: the user's message, then the assistant's reply starting with the target", async (t) => {
  const r = renderExample(example, chatml);
  t.equal(
    r.prompt,
    `<|im_start|>user\n${example.context}<|im_end|>\n<|im_start|>assistant\ngreen`,
    "the reply starts at the target's first character",
  );
  t.equal(r.specialTokens, true);
  t.equal(r.prompt.slice(r.boundary), "green");
  t.same(texts(r), [example.emphasis, "green"], "the emphasis lands on the message's own characters");
});

t.test("a model's own template: SmolLM2's system prompt comes first, the spans still land", async (t) => {
  // what SmolLM2-135M-Instruct's GGUF carries (a default system message, then ChatML)
  const smol = new ChatTemplate(
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    { bos_token: "", eos_token: "" },
  );
  const r = renderExample(example, smol);
  t.match(r.prompt, /^<\|im_start\|>system\nYou are a helpful AI assistant/);
  t.same(texts(r), [example.emphasis, "green"]);
});

t.test("every built-in example renders in ChatML with its emphasis and target in place", async (t) => {
  let n = 0;
  for (const task of loadBuiltinTasks()) {
    for (const e of task.examples) {
      const r = renderExample(e, chatml);
      const [emphasis, target] = texts(r);
      if (emphasis !== e.emphasis || target !== e.target.trimStart() || target === "") t.fail(`${task.name}: ${e.context.slice(0, 40)}`);
      n++;
    }
  }
  t.ok(n >= 80, `${n} examples`);
});
