// n > 1: several answers to one prompt, each on a sequence of its own, the prompt evaluated once
// (the others start from a copy of its KV cache) and each answer the one its seed gives alone.
import t from "tap";
import { SteeringEngine, type GenerateRequest, type GenerateResult } from "../../../src/engine/engine.js";
import { STORIES_MODEL } from "../../support/models.js";

const prompt = "Once upon a time there was a little dog named Max. He liked to run in the park with his friend.";
const seeds = [11, 12, 13, 14];
const request = (seed: number): GenerateRequest => ({ prompt, maxTokens: 20, temperature: 1, seed });

async function choices(engine: SteeringEngine, requests: GenerateRequest[]): Promise<GenerateResult[]> {
  const prepared = await engine.prepare(requests[0]!, 20);
  return engine.withSequence((session) => session.generateChoices(requests, prepared), { slots: requests.length });
}

for (const prefixReuse of [true, false]) {
  t.test(`prefix reuse ${prefixReuse ? "on" : "off"}: each choice equals the same request alone with its seed`, async (t) => {
    const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 256, parallel: 4, prefixReuse });
    t.teardown(() => engine.dispose());
    const many = await choices(engine, seeds.map(request));
    const promptTokens = engine.tokenizePrompt(prompt).tokens.length;
    if (prefixReuse) {
      t.equal(many[0]!.evaluatedPromptTokens, promptTokens, "the first choice evaluates the prompt");
      for (const c of many.slice(1)) t.equal(c.evaluatedPromptTokens, 1, "the others only its last token, on a copy of the cache");
    } else {
      for (const c of many) t.equal(c.evaluatedPromptTokens, promptTokens, "without prefix reuse, each evaluates it whole");
    }
    t.equal(new Set(many.map((c) => c.text)).size, seeds.length, "different seeds, different answers");
    for (const [i, seed] of seeds.entries()) {
      const alone = await engine.generate(request(seed));
      t.same(many[i]!.tokens, alone.tokens, `choice ${i} = seed ${seed} alone`);
    }
  });
}

t.test("steered choices: each equals the steered request alone", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 256, parallel: 3 });
  t.teardown(() => engine.dispose());
  const steering = { emphasis: [{ start: 0, end: 50 }], heads: { "1": [0, 2], "3": [1] }, alpha: 0.01 };
  const requests = [21, 22, 23].map((seed) => ({ ...request(seed), steering }));
  const many = await choices(engine, requests);
  for (const [i, r] of requests.entries()) t.same(many[i]!.tokens, (await engine.generate(r)).tokens, `choice ${i}`);
  const unsteered = await engine.generate(request(21));
  t.notSame(many[0]!.tokens, unsteered.tokens, "steering changed the answer");
});
