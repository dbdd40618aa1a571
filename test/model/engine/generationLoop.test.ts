// The native generation loop (native/addon/AddonGenerationLoop.cpp): it must produce exactly what
// step-by-step decoding produces (one token per JavaScript round trip), batch concurrent requests
// without changing their tokens, stop at once when cancelled, and never leave a request hanging.
import t, { type Test } from "tap";
import { emphasize } from "../../../src/emphasis/markup.js";
import { LlamaLogLevel, type Token } from "node-llama-cpp";
import {
  GenerationLoop,
  loadPatchedLlama,
  NativeSampler,
  SteerableSequence,
  steeringInfo,
  type LoopJob,
} from "../../../src/engine/binding.js";
import { SteeringEngine, type GenerateResult } from "../../../src/engine/engine.js";
import { resolveHeads, toNativeSteering } from "../../../src/engine/steering.js";
import { sleep } from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";

const PROMPT = "Once upon a time there was a little dog named Max. Max loved to run in the park with his friend Sue. One day";
const TOP = 5;
const STRIDE = 1 + 2 * TOP;

/** stories260K with a native loop over `count` steerable sequences, disposed with the test. */
async function loopOn(t: Test, count: number) {
  const llama = await loadPatchedLlama({ gpu: false });
  const model = await llama.loadModel({ modelPath: STORIES_MODEL });
  const context = await model.createContext({ contextSize: 512, sequences: count, flashAttention: true });
  t.teardown(async () => {
    await context.dispose();
    await model.dispose();
  });
  const loop = GenerationLoop.start(context, { deliveryIntervalMs: 0 });
  const sequences = Array.from({ length: count }, () => new SteerableSequence(loop, context.getSequence()));
  return { model, context, sequences };
}

t.test("one loop job equals step-by-step decoding, token for token and log-prob for log-prob", async (t) => {
  const { model, context, sequences } = await loopOn(t, 2);
  const [fast, step] = sequences as [SteerableSequence, SteerableSequence];
  const prompt = model.tokenize(PROMPT);
  const N = 32;

  const collect = (job: Omit<LoopJob, "onTokens">, out: { tokens: number[]; logprobs: number[] }) => ({
    ...job,
    onTokens: (ids: Int32Array, lps: Float64Array | undefined) => {
      out.tokens.push(...ids);
      out.logprobs.push(...lps!);
    },
  });

  for (const variant of [
    { name: "greedy", sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 } },
    { name: "seeded sampling", sampling: { temperature: 1, topK: 40, topP: 0.9, seed: 1234 } },
    { name: "greedy, steered", sampling: { temperature: 0, topK: 0, topP: 1, seed: 1 }, steered: true },
  ]) {
    if (variant.steered) {
      const { headsPerLayer } = steeringInfo(context);
      const heads = resolveHeads({ "2": [0, 3, 5], "3": [1, 6] }, headsPerLayer);
      const steering = toNativeSteering(
        { emphasized: [{ start: 5, end: 12 }], heads, alpha: 0.01, mode: "exclude" },
        prompt.length,
        headsPerLayer,
      );
      fast.setSteering(steering);
      step.setSteering(steering);
    } else {
      fast.clearSteering();
      step.clearSteering();
    }
    // the fast path: the whole generation in one job
    const a = { tokens: [] as number[], logprobs: [] as number[] };
    const fastSampler = new NativeSampler(model, variant.sampling);
    const result = await fast.run(collect({ keep: 0, tokens: prompt, sampler: fastSampler, maxTokens: N, topLogprobs: TOP }, a)).done;
    fastSampler.dispose();

    // step by step: the prompt, then one job per token that keeps the cache and evaluates the previous token (same sampler, so the same RNG stream)
    const b = { tokens: [] as number[], logprobs: [] as number[] };
    const stepSampler = new NativeSampler(model, variant.sampling);
    let kv = (await step.run(collect({ keep: 0, tokens: prompt, sampler: stepSampler, maxTokens: 1, topLogprobs: TOP }, b)).done).kvTokens;
    while (b.tokens.length < N) {
      kv = (
        await step.run(
          collect({ keep: kv, tokens: [...prompt, ...(b.tokens as Token[])], sampler: stepSampler, maxTokens: 1, topLogprobs: TOP }, b),
        ).done
      ).kvTokens;
    }
    stepSampler.dispose();

    t.equal(result.finish, "length", `${variant.name}: ran to max tokens`);
    t.equal(result.kvTokens, prompt.length + N - 1, `${variant.name}: the cache holds the prompt and all but the last sampled token`);
    t.equal(a.tokens.length, N);
    t.same(a.tokens, b.tokens, `${variant.name}: same tokens`);
    t.equal(a.logprobs.length, N * STRIDE);
    t.same(a.logprobs, b.logprobs, `${variant.name}: identical log-probs`);
  }
});

t.test("the engine", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 1024, parallel: 3 });
  t.teardown(() => engine.dispose());
  const steering = { emphasis: emphasize(PROMPT, ["little dog named Max"]), heads: { "2": [0, 3, 5], "3": [1, 6] } };
  const requests = [
    { prompt: PROMPT, maxTokens: 40 },
    { prompt: PROMPT, maxTokens: 40, steering },
    { prompt: "Lily had a red ball. She liked to play with it in the garden.", maxTokens: 30 },
    { prompt: "The sun was hot and the cat was sleepy.", maxTokens: 50 },
    {
      prompt: "Tom and his mom went to the shop to buy some bread",
      maxTokens: 20,
      steering: { ...steering, emphasis: emphasize("Tom and his mom went to the shop to buy some bread", ["his mom"]) },
    },
    { prompt: "Once upon a time", maxTokens: 60 },
  ];

  t.test("more concurrent requests than sequences: each gets its solo tokens", async (t) => {
    const solo: GenerateResult[] = [];
    for (const r of requests) solo.push(await engine.generate({ ...r, temperature: 0 }));
    const together = await Promise.all(requests.map((r) => engine.generate({ ...r, temperature: 0 })));
    together.forEach((r, i) => {
      t.same(r.tokens, solo[i]!.tokens, `request ${i}`);
    });
  });

  t.test("a request that joins while others generate gets its solo tokens, and so do they", async (t) => {
    const [long, late] = [
      { prompt: PROMPT, maxTokens: 120, temperature: 0 },
      { ...requests[2]!, temperature: 0, steering: { ...steering, emphasis: emphasize(requests[2]!.prompt, ["red ball"]) } },
    ];
    const soloLong = await engine.generate(long);
    const soloLate = await engine.generate(late);
    let joined: Promise<Awaited<ReturnType<typeof engine.generate>>> | undefined;
    let seen = 0;
    const longRun = engine.generate({
      ...long,
      logprobs: 0,
      onText: (_text, logprobs) => {
        seen += logprobs.length;
        if (seen >= 10) joined ??= engine.generate(late);
      },
    });
    const [a, b] = [await longRun, await joined!];
    t.ok(joined, "joined mid-generation");
    t.same(a.tokens, soloLong.tokens);
    t.same(b.tokens, soloLate.tokens);
  });

  t.test("cancelling stops the generation at once, and the sequence serves the next request", async (t) => {
    const controller = new AbortController();
    let seen = 0;
    const cut = await engine.generate({
      prompt: PROMPT,
      maxTokens: 800,
      temperature: 0,
      logprobs: 0,
      signal: controller.signal,
      onText: (_text, logprobs) => {
        seen += logprobs.length;
        if (seen >= 5) controller.abort();
      },
    });
    // tokens sampled after the abort are dropped; a token whose text was not complete yet may remain
    t.ok(
      cut.tokens.length >= 5 && cut.tokens.length <= seen + 2,
      `stopped after ${cut.tokens.length} of 800 tokens (${seen} seen at the abort)`,
    );
    t.equal(cut.finishReason, "length");
    const next = await engine.generate({ prompt: PROMPT, maxTokens: 8, temperature: 0 });
    t.equal(next.tokens.length, 8);
    const already = new AbortController();
    already.abort();
    const none = await engine.generate({ prompt: PROMPT, maxTokens: 8, temperature: 0, signal: already.signal });
    t.equal(none.tokens.length, 0, "an already-aborted request decodes nothing");
  });

  t.test("log-probs: none unless asked; 0 alternatives gives the token's own", async (t) => {
    const plain = await engine.generate({ prompt: PROMPT, maxTokens: 4, temperature: 0 });
    t.equal(plain.logprobs, undefined);
    const own = await engine.generate({ prompt: PROMPT, maxTokens: 4, temperature: 0, logprobs: 0 });
    t.equal(own.logprobs!.length, 4);
    for (const lp of own.logprobs!) {
      t.same(lp.top, []);
      t.ok(lp.logprob < 0 && lp.logprob > -50, `a log-prob (${lp.logprob})`);
    }
  });

  t.test("a consumer that throws fails its request only", async (t) => {
    const boom = new Error("client went away");
    await t.rejects(
      engine.generate({
        prompt: PROMPT,
        maxTokens: 50,
        temperature: 0,
        onText: () => {
          throw boom;
        },
      }),
      boom,
    );
    const after = await engine.generate({ prompt: PROMPT, maxTokens: 5, temperature: 0 });
    t.equal(after.tokens.length, 5);
  });
});

t.test("disposing the engine mid-generation ends the request with an error, not a hang", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 4096 });
  let disposed: Promise<void> | undefined;
  const running = engine.generate({
    prompt: PROMPT,
    maxTokens: 3000,
    temperature: 0,
    onText: () => {
      disposed ??= engine.dispose();
    },
  });
  await t.rejects(running, /disposed/);
  await disposed;
});

t.test("a sequence whose decode fails fails alone: its neighbours in the batch go on as if it were not there", async (t) => {
  const { model, context, sequences } = await loopOn(t, 3);
  const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };
  const prompt = model.tokenize(PROMPT);
  const run = (sequence: SteerableSequence, tokens: readonly Token[]) => {
    const out: number[] = [];
    const sampler = new NativeSampler(model, greedy);
    const running = sequence.run({ keep: 0, tokens, sampler, maxTokens: 12, topLogprobs: -1, onTokens: (ids) => out.push(...ids) });
    return running.done.then((result) => {
      sampler.dispose();
      return { ...result, tokens: out };
    });
  };
  const solo = await run(sequences[0]!, prompt);
  const otherPrompt = model.tokenize("Lily had a red ball. She liked to play with it");
  const otherSolo = await run(sequences[1]!, otherPrompt);

  // a token id past the vocabulary makes llama_decode refuse the whole batch it is in
  const invalid = [...prompt.slice(0, 5), steeringInfo(context).vocabularySize + 7] as Token[];
  const [good, bad, other] = await Promise.all([run(sequences[0]!, prompt), run(sequences[2]!, invalid), run(sequences[1]!, otherPrompt)]);
  t.equal(bad.finish, "error");
  t.match(bad.error?.message, /llama_decode failed/);
  t.equal(good.finish, "length", "the neighbour before it finishes");
  t.equal(other.finish, "length", "the neighbour after it finishes");
  t.same(good.tokens, solo.tokens, "with its solo tokens");
  t.same(other.tokens, otherSolo.tokens);
  t.equal(good.kvTokens, solo.kvTokens);
});

t.test("steering never rebuilds the scheduler: compute buffers are reserved at load for every layer steered", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512, parallel: 2 });
  const { llama } = engine;
  const saved = { level: llama.logLevel, logger: llama.logger };
  const logs: string[] = [];
  llama.logLevel = LlamaLogLevel.info;
  llama.logger = (_level, message) => logs.push(message);
  t.teardown(async () => {
    llama.logLevel = saved.level;
    llama.logger = saved.logger;
    await engine.dispose();
  });
  const reserves = () => logs.filter((line) => line.includes("sched_reserve: reserving"));

  // control: creating a context reserves, and the log line is seen here
  const control = await engine.model.createContext({ contextSize: 128 });
  await control.dispose();
  await sleep(50);
  t.ok(reserves().length > 0, "the reserve log line is captured");
  logs.length = 0;

  const steering = (heads: Record<string, number[]>) => ({ emphasis: emphasize(PROMPT, ["little dog"]), heads });
  await engine.generate({ prompt: PROMPT, maxTokens: 4 });
  await engine.generate({ prompt: PROMPT, maxTokens: 4, steering: steering({ "2": [0, 3] }) });
  await engine.generate({ prompt: PROMPT, maxTokens: 4, steering: steering({ "0": [1], "4": [2, 7] }) });
  await Promise.all([
    engine.generate({ prompt: PROMPT, maxTokens: 8, steering: steering({ "1": [4] }) }),
    engine.generate({ prompt: "Lily had a red ball.", maxTokens: 8 }),
  ]);
  await engine.generate({ prompt: PROMPT, maxTokens: 4 });
  await sleep(50); // llama.cpp's log lines reach JavaScript asynchronously
  t.same(reserves(), [], "no reserve while steered and unsteered requests change the steered layers");
});
