// npm run bench: what steering costs, measured in one run on a generated ~125M-parameter llama (F16,
// 768 x 12 layers, GQA 12/4 heads, 32k vocab) with the server's default attention settings.
//   1. steered / unsteered, through our engine: prefill and decode tokens/s, with a PASTA-sized head
//      set (7 of 144 heads = ~5%, in 3 of 12 layers).
//   2. AutoPASTA's end-to-end latency (selection pass + steered answer) / one unsteered answer.
//   3. steering off: ours / unpatched node-llama-cpp (its prebuilt binary), same model, same
//      node-llama-cpp evaluation loop, each in its own process (two llama.cpp builds cannot share one).
//   4. head profiling on SmolLM2-135M (../shared), built-in tasks: forward passes per second of the
//      profiler (TargetScorer: several examples per decode, each pass evaluated from the example's
//      first emphasized token on) / the one it replaced (one example at a time, every token evaluated).
//      `npm run bench -- --profiler` runs this part alone; BENCH_PROFILE_PARALLEL sets the examples per decode (4).
// Rounds alternate between the variants and the fastest round of each is kept: on a noisy machine
// interference only ever slows a run down, so the best round is the closest to its true cost.
import { execFileSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { plainSelectionPrompt, runAutoPasta } from "../src/autopasta/autopasta.js";
import { SteeringEngine } from "../src/engine/engine.js";
import type { HeadSelection } from "../src/engine/steering.js";
import { TargetScorer } from "../src/profiles/scoring.js";
import { loadBuiltinTasks, splitExamples } from "../src/profiles/tasks.js";
import { SMOLLM2_MODEL } from "../harness/index.js";
import { benchModel } from "./benchModel.js";

const SHAPE = {
  architecture: "llama" as const,
  embedding: 768,
  layers: 12,
  heads: 12,
  kvHeads: 4,
  feedForward: 2048,
  weightType: "f16" as const,
  seed: 42,
};
const HEADS = { "2": [0, 5], "5": [1, 7, 9], "9": [3, 11] };
const PROMPT_WORDS = 200; // ~260 tokens, as in issue #6's table
const DECODE_TOKENS = 64;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const best = (xs: number[]) => Math.max(...xs);
const words = "the quick brown fox jumps over a lazy dog while the sun sets behind quiet hills and rivers".split(" ");
const prompt = (round: number) =>
  `Story ${round}: ${Array.from({ length: PROMPT_WORDS }, (_, i) => words[(i * 7 + round) % words.length]).join(" ")}`;

const modelPath = () => benchModel("llama-125m-f16.gguf", SHAPE);

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const result = await fn();
  return [(performance.now() - t0) / 1000, result];
}

/** Steered vs unsteered through our engine. */
async function steeringCost(path: string) {
  const engine = await SteeringEngine.load({ modelPath: path, contextSize: 1024 });
  const rates = {
    prefill: { steered: [] as number[], unsteered: [] as number[] },
    decode: { steered: [] as number[], unsteered: [] as number[] },
  };
  await engine.generate({ prompt: prompt(99), maxTokens: 4 }); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const variant of round % 2 ? (["steered", "unsteered"] as const) : (["unsteered", "steered"] as const)) {
      const text = prompt(round * 2 + (variant === "steered" ? 1 : 0));
      const steering = variant === "steered" ? { emphasis: [{ start: 40, end: 120 }], heads: HEADS, alpha: 0.01 } : undefined;
      // distinct prompts: no prefix-cache reuse between runs
      const result = await engine.generate({ prompt: text, maxTokens: DECODE_TOKENS + 1, temperature: 0, steering });
      rates.prefill[variant].push(result.evaluatedPromptTokens / (result.timings.promptMs / 1000));
      rates.decode[variant].push((result.tokens.length - 1) / (result.timings.generationMs / 1000));
    }
  }
  await engine.dispose();
  return rates;
}

/** AutoPASTA end to end (selection pass + steered answer) / one unsteered answer, same prompt. */
async function autoPastaCost(path: string) {
  const engine = await SteeringEngine.load({ modelPath: path, contextSize: 1024 });
  const auto: number[] = [],
    plain: number[] = [];
  let selectionTokens = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const text = prompt(100 + round);
    const answer = { prompt: text, maxTokens: DECODE_TOKENS, temperature: 0 };
    const plan = { selectionPrompt: plainSelectionPrompt(text), context: { start: 0, end: text.length }, steering: { heads: HEADS } };
    const [tAuto] = await timed(async () => {
      selectionTokens = (await runAutoPasta(engine, plan, answer)).report.selection.completionTokens;
    });
    await engine.generate({ prompt: `Unrelated ${round}`, maxTokens: 1 }); // evict: the plain answer starts cold too
    const [tPlain] = await timed(() => engine.generate(answer));
    auto.push(tAuto);
    plain.push(tPlain);
  }
  await engine.dispose();
  return { auto: Math.min(...auto), plain: Math.min(...plain), selectionTokens };
}

/** Worker: node-llama-cpp's own evaluation loop, on our build or on the unpatched prebuilt binary. */
async function plainLoop(path: string, binary: "ours" | "unpatched") {
  const llama =
    binary === "ours"
      ? await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: false, logLevel: LlamaLogLevel.error, progressLogs: false })
      : // a custom cmake option names a build folder that does not exist: node-llama-cpp takes its prebuilt binary
        await getLlama({
          gpu: false,
          build: "never",
          usePrebuiltBinaries: true,
          cmakeOptions: { PASTA_BENCH_BASELINE: "1" },
          logLevel: LlamaLogLevel.error,
          progressLogs: false,
        });
  const expected = binary === "ours" ? "localBuild" : "prebuilt";
  if (llama.buildType !== expected) throw new Error(`expected a ${expected} binary, got ${llama.buildType}`);
  const model = await llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: 1024, threads: os.availableParallelism(), flashAttention: true });
  const sequence = context.getSequence();
  const prefill: number[] = [],
    decode: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await sequence.clearHistory();
    const tokens = model.tokenize(prompt(round));
    const [tP] = await timed(() => sequence.evaluateWithoutGeneratingNewTokens(tokens));
    prefill.push(tokens.length / tP);
    let n = 0;
    const [tD] = await timed(async () => {
      for await (const _ of sequence.evaluate([model.tokenize(" and")[0]!] as Token[], { temperature: 0 })) if (++n >= DECODE_TOKENS) break;
    });
    decode.push(n / tD);
  }
  console.log(JSON.stringify({ buildType: llama.buildType, prefill: best(prefill), decode: best(decode) }));
  await context.dispose();
  await model.dispose();
}

/** Profiler passes per second: the scorer on `parallel` sequences / every token of one example at a time. */
async function profilerSpeed(parallel: number) {
  const examples = loadBuiltinTasks().flatMap((task) => splitExamples(task, 0).profiling.slice(0, parallel));
  const selections: HeadSelection[] = [{ "3": [1] }, { "12": [4] }, { "19": [1] }, { "24": [5] }];
  const passes = examples.length * selections.length;

  const plain = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 512, parallel: 1, threads: os.availableParallelism() });
  const [before] = await timed(async () => {
    for (const heads of selections) {
      for (const e of examples) {
        const prompt = e.context + e.target;
        const start = e.context.indexOf(e.emphasis);
        const emphasis = [
          { start, end: start + e.emphasis.length },
          { start: e.context.length, end: prompt.length },
        ];
        await plain.score({ prompt, topLogprobs: 0, steering: { emphasis, heads, alpha: 0.01 } });
      }
    }
  });
  await plain.dispose();

  const engine = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 512, parallel, threads: os.availableParallelism() });
  const scorer = new TargetScorer(engine, { alpha: 0.01 });
  await scorer.meanGains(examples, []); // the unsteered passes, which the old loop did not time either
  const [after] = await timed(() => scorer.meanGains(examples, selections));
  await engine.dispose();
  return { passes, before: passes / before, after: passes / after };
}

async function printProfilerSpeed() {
  const parallel = Number(process.env.BENCH_PROFILE_PARALLEL ?? 4);
  const profiler = await profilerSpeed(parallel);
  console.log(`\nhead profiling, SmolLM2-135M Q4_1, built-in tasks (${profiler.passes} steered passes):`);
  console.log(
    `passes/s  profiler (${parallel} examples per decode, prefix cached) ${profiler.after.toFixed(1)}   one example at a time, every token ${profiler.before.toFixed(1)}   ratio ${(profiler.after / profiler.before).toFixed(2)}`,
  );
}

if (process.argv[2] === "--worker") {
  await plainLoop(process.argv[3]!, process.argv[4] as "ours" | "unpatched");
} else if (process.argv[2] === "--profiler") {
  // npm run bench -- --profiler: this part alone
  await printProfilerSpeed();
} else {
  const path = modelPath();
  console.log(`machine: ${os.cpus()[0]?.model}, ${os.availableParallelism()} CPUs, Node ${process.version}`);
  console.log(
    `model: ${SHAPE.embedding} x ${SHAPE.layers} layers, ${SHAPE.heads}/${SHAPE.kvHeads} heads, F16 (~125M parameters); steered heads ${JSON.stringify(HEADS)}`,
  );

  const rates = await steeringCost(path);
  const row = (label: string, s: number[], u: number[]) =>
    console.log(
      `${label.padEnd(8)} steered ${best(s).toFixed(1).padStart(7)} t/s   unsteered ${best(u).toFixed(1).padStart(7)} t/s   ratio ${(best(s) / best(u)).toFixed(3)}`,
    );
  console.log("\nsteered / unsteered (our engine, flash attention on):");
  row("prefill", rates.prefill.steered, rates.prefill.unsteered);
  row("decode", rates.decode.steered, rates.decode.unsteered);

  const latency = await autoPastaCost(path);
  console.log(
    `\nAutoPASTA end to end / one unsteered answer (${DECODE_TOKENS} answer tokens; pass 1 generated ${latency.selectionTokens} tokens):`,
  );
  console.log(
    `latency  auto ${latency.auto.toFixed(2)} s   plain ${latency.plain.toFixed(2)} s   ratio ${(latency.auto / latency.plain).toFixed(2)}`,
  );

  const self = fileURLToPath(import.meta.url);
  const runWorker = (binary: string) =>
    JSON.parse(
      execFileSync(process.execPath, ["--import", "tsx", self, "--worker", path, binary], { encoding: "utf8" }).trim().split("\n").at(-1)!,
    );
  const ours: { prefill: number; decode: number }[] = [],
    base: { prefill: number; decode: number }[] = [];
  for (let i = 0; i < 2; i++) {
    ours.push(runWorker("ours"));
    base.push(runWorker("unpatched"));
  }
  const bestOf = (xs: { prefill: number; decode: number }[], k: "prefill" | "decode") => best(xs.map((x) => x[k]));
  console.log("\nsteering off, node-llama-cpp's evaluation loop: ours / unpatched prebuilt node-llama-cpp 3.21.1:");
  for (const k of ["prefill", "decode"] as const) {
    console.log(
      `${k.padEnd(8)} ours ${bestOf(ours, k).toFixed(1).padStart(7)} t/s   unpatched ${bestOf(base, k).toFixed(1).padStart(7)} t/s   ratio ${(bestOf(ours, k) / bestOf(base, k)).toFixed(3)}`,
    );
  }

  const parallel = 4;
  const profiler = await profilerSpeed(parallel);
  console.log(`
head profiling, SmolLM2-135M Q4_1, built-in tasks (${profiler.passes} steered passes):`);
  console.log(
    `passes/s  profiler (${parallel} examples per decode, prefix cached) ${profiler.after.toFixed(1)}   one example at a time, every token ${profiler.before.toFixed(1)}   ratio ${(profiler.after / profiler.before).toFixed(2)}`,
  );
}
