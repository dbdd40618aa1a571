// A job normally starts from the KV cache its sequence holds. With flash attention llama.cpp's CPU
// kernel sums attention in half precision, so a prompt decoded after a reused prefix is not bit for
// bit a cold decode; `prefixReuse: false` (what `eval` uses) makes every answer a function of its
// prompt alone.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../../harness/index.js";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { modelChatTemplate } from "../../../src/prompt/modelTemplate.js";
import { chatPrompt } from "../../../src/prompt/prompts.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

// two eval items whose chat prompts share SmolLM2's system turn (a reusable prefix)
const [first, second] = readFileSync(join(PROJECT_ROOT, "prompts", "eval", "json_format.jsonl"), "utf8")
  .trim()
  .split("\n")
  .slice(1, 3)
  .map((line) => JSON.parse(line).prompt as string);

async function answers(prefixReuse: boolean) {
  const engine = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 1024, parallel: 1, prefixReuse });
  try {
    const template = modelChatTemplate(engine)!;
    const generate = (message: string) =>
      engine.generate({
        prompt: chatPrompt(template, [{ role: "user", content: message }], undefined).prompt,
        specialTokens: true,
        maxTokens: 24,
        temperature: 0,
        logprobs: 1,
      });
    const alone = await generate(second!);
    await generate(first!);
    return { alone, afterAnother: await generate(second!) };
  } finally {
    await engine.dispose();
  }
}

t.test("without prefix reuse a prompt is evaluated whole and answered as on a cold sequence", async (t) => {
  const { alone, afterAnother } = await answers(false);
  t.equal(afterAnother.evaluatedPromptTokens, afterAnother.promptTokens, "nothing cached was used");
  t.same(afterAnother.tokens, alone.tokens, "the same tokens after another prompt as alone");
  t.same(
    afterAnother.logprobs!.map((l) => l.logprob),
    alone.logprobs!.map((l) => l.logprob),
    "with the same log-probabilities, bit for bit",
  );
});

t.test("by default the shared prefix is taken from the cache", async (t) => {
  const { afterAnother } = await answers(true);
  t.ok(
    afterAnother.evaluatedPromptTokens < afterAnother.promptTokens,
    `${afterAnother.evaluatedPromptTokens} of ${afterAnother.promptTokens} prompt tokens evaluated`,
  );
});
