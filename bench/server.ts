// npm run bench:server: pasta-server over HTTP against llama.cpp's own llama-server, built from the
// same llama.cpp source that node-llama-cpp bundles (bench/llamaServer.ts), on the same model, threads
// and machine, measured back to back in one run. Also what HTTP costs on top of the in-process engine.
// Model: a generated ~56M-parameter llama (F16, 512 x 8 layers, GQA 8/4 heads, 32k vocab); small on
// purpose, so that any per-token cost outside llama.cpp (JavaScript, HTTP, SSE) is a visible share.
//   1. single-stream decode t/s through HTTP (SSE): pasta-server unsteered and steered, llama-server, and
//      pasta-server's engine in this process; rounds rotate the order.
//   2. prefill t/s: a ~770-token prompt and one generated token, no prompt cache on either side.
//   3. aggregate decode t/s with 1 and 4 concurrent streams (llama-server -np 4), and pasta-server's with 8
//      (--parallel 8).
//   4. `n`: one request for 4 choices of the ~770-token prompt against 4 concurrent requests for one each
//      (pasta-server alone: the prompt is evaluated once for the 4 choices).
// Servers idle while the other side measures; the best round of each side counts (interference on a
// shared machine only ever slows a round down), and the median of adjacent-round ratios is printed too.
// BENCH_ROUNDS (default 10), BENCH_THREADS (default: every CPU) and BENCH_STREAM_INTERVAL_MS (pasta-server's
// --stream-interval-ms; default: the server's default) override.
import os from "node:os";
import { join } from "node:path";
import { SteeringEngine } from "../src/engine/engine.js";
import { postEvents, startServer, type ServerProcess } from "../harness/index.js";
import { benchModel } from "./benchModel.js";
import { startLlamaServer } from "./llamaServer.js";

const SHAPE = {
  architecture: "llama" as const,
  embedding: 512,
  layers: 8,
  heads: 8,
  kvHeads: 4,
  feedForward: 1408,
  weightType: "f16" as const,
  seed: 42,
};
const MAX_TOKENS = 128;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const THREADS = Number(process.env.BENCH_THREADS ?? os.availableParallelism()); // every side gets the same
const SETTINGS = { parallel: 8, contextSize: 1024 }; // pasta-server: 8 sequences of 1024 tokens
const LLAMA_SLOTS = 4; // llama-server: 4 slots of 1024 (the comparison runs 1 and 4 streams)
const PROMPT = "Once upon a time, in a quiet village by the sea, there lived";
/** 5 of 64 heads in 2 of 8 layers, on the prompt's second half */
const STEERING = { emphasis: ["a quiet village by the sea"], heads: { "2": [0, 3, 5], "5": [1, 6] } };
/** a distinct first word per round: nothing for pasta-server's prefix cache to reuse */
const LONG_PROMPT = (round: number) =>
  `${round} ${Array.from({ length: 60 }, (_, i) => `Sentence ${i} tells of the sea and the village.`).join(" ")}`;

const modelPath = () => benchModel("llama-512x8-f16.gguf", SHAPE);

/** Starts `pasta-server serve` on a free port (harness/process.ts) once /ready answers 200; its log in the OS temp folder. */
function startPastaServer(model: string): Promise<ServerProcess> {
  return startServer(
    [
      "--model",
      model,
      "--parallel",
      String(SETTINGS.parallel),
      "--ctx-size",
      String(SETTINGS.contextSize),
      "--threads",
      String(THREADS),
      ...(process.env.BENCH_STREAM_INTERVAL_MS ? ["--stream-interval-ms", process.env.BENCH_STREAM_INTERVAL_MS] : []),
    ],
    {},
    {
      noModel: true, // the --model above, not the tests' stories260K
      readyTimeoutMs: 120_000,
      // every line kept for a post-mortem; errors and the server's stderr shown as they come
      logFile: join(os.tmpdir(), "pasta-server-bench", "server.log"),
      onLine: (line, stream) => {
        if (stream === "stderr") console.error(line);
        else if (/"level":(50|60)/.test(line)) console.error(`server: ${line}`);
      },
    },
  );
}

/** One decoded stream: when its first and last text arrived, and how many tokens it had. */
interface Stream {
  tokens: number;
  firstText: number;
  lastText: number;
}
// the first text comes with the first token, so tokens - 1 were decoded between first and last text
const decodeRate = (s: Stream) => (s.tokens - 1) / ((s.lastText - s.firstText) / 1000);

// a random-weight model could sample EOS early; the rates assume every stream runs MAX_TOKENS
const lengthError = (tokens: number, where: string) =>
  new Error(`${where}: ${tokens} completion tokens, expected ${MAX_TOKENS} (EOS? try another prompt)`);

/** A server under test: its streaming and one-shot requests, in its own API. */
interface Target {
  name: string;
  stream(prompt: string, steered?: boolean): Promise<Stream>;
  /** prompt tokens evaluated and the wall time of a request that generates one token */
  prefill(prompt: string): Promise<{ tokens: number; ms: number }>;
}

/** pasta-server's native endpoint, POST /v1/generate */
function pastaTarget(url: string): Target {
  return {
    name: "pasta-server",
    async stream(prompt, steered = false) {
      let firstText = 0,
        lastText = 0,
        tokens = -1;
      await postEvents(
        `${url}/v1/generate`,
        { prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true, ...(steered ? { steering: STEERING } : {}) },
        (data, now) => {
          const chunk = JSON.parse(data) as { text: string; usage?: { completion_tokens: number } };
          if (chunk.text) {
            firstText ||= now;
            lastText = now;
          }
          if (chunk.usage) tokens = chunk.usage.completion_tokens;
        },
      );
      if (tokens !== MAX_TOKENS) throw lengthError(tokens, "pasta-server");
      return { tokens, firstText, lastText };
    },
    async prefill(prompt) {
      let tokens = -1;
      const t0 = performance.now();
      await postEvents(`${url}/v1/generate`, { prompt, max_tokens: 1, temperature: 0 }, (data) => {
        const body = JSON.parse(data) as { usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
        tokens = body.usage.prompt_tokens - body.usage.prompt_tokens_details.cached_tokens;
      });
      return { tokens, ms: performance.now() - t0 };
    },
  };
}

/** llama-server's native endpoint, POST /completion */
function llamaTarget(url: string): Target {
  return {
    name: "llama-server",
    async stream(prompt) {
      let firstText = 0,
        lastText = 0,
        tokens = -1;
      await postEvents(`${url}/completion`, { prompt, n_predict: MAX_TOKENS, temperature: 0, stream: true }, (data, now) => {
        const chunk = JSON.parse(data) as { content: string; stop: boolean; tokens_predicted?: number };
        if (chunk.content) {
          firstText ||= now;
          lastText = now;
        }
        if (chunk.stop) tokens = chunk.tokens_predicted ?? -1;
      });
      if (tokens !== MAX_TOKENS) throw lengthError(tokens, "llama-server");
      return { tokens, firstText, lastText };
    },
    async prefill(prompt) {
      let tokens = -1;
      const t0 = performance.now();
      await postEvents(`${url}/completion`, { prompt, n_predict: 1, temperature: 0, cache_prompt: false }, (data) => {
        tokens = (JSON.parse(data) as { timings: { prompt_n: number } }).timings.prompt_n;
      });
      return { tokens, ms: performance.now() - t0 };
    },
  };
}

async function engineStream(engine: SteeringEngine, prompt: string): Promise<Stream> {
  let firstText = 0,
    lastText = 0;
  const result = await engine.generate({
    prompt,
    maxTokens: MAX_TOKENS,
    temperature: 0,
    onText: () => {
      const now = performance.now();
      firstText ||= now;
      lastText = now;
    },
  });
  if (result.tokens.length !== MAX_TOKENS) throw lengthError(result.tokens.length, "engine");
  return { tokens: result.tokens.length, firstText, lastText };
}

/** Aggregate decode t/s of n concurrent streams: all tokens over the wall time from the first request sent to the last done. */
async function aggregate(target: Target, n: number): Promise<number> {
  const t0 = performance.now();
  // one prompt for all: llama-server fails a stream (HTTP 500) whose random-model output is not valid UTF-8, and this one's is
  const streams = await Promise.all(Array.from({ length: n }, () => target.stream(PROMPT)));
  return streams.reduce((sum, s) => sum + s.tokens, 0) / ((performance.now() - t0) / 1000);
}

/** Wall ms of one /v1/completions request for `n` choices of `prompt`, each MAX_CHOICE_TOKENS long. */
async function choicesRequest(url: string, prompt: string, n: number, seed: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    // ignore_eos: a random-weight model may sample its end early, and every choice must run as long
    body: JSON.stringify({ prompt, n, seed, temperature: 1, max_tokens: MAX_CHOICE_TOKENS, ignore_eos: true }),
  });
  const body = (await res.json()) as { usage?: { completion_tokens: number } };
  if (res.status !== 200 || body.usage?.completion_tokens !== n * MAX_CHOICE_TOKENS)
    throw new Error(`n = ${n}: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
  return performance.now() - t0;
}
const MAX_CHOICE_TOKENS = 16;

const best = (xs: number[]) => Math.max(...xs);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
};

const path = modelPath();
const ours = await startPastaServer(path);
const theirs = await startLlamaServer({ model: path, threads: THREADS, slots: LLAMA_SLOTS, contextPerSlot: SETTINGS.contextSize });
const exited = new Promise<number | null>((resolve) => ours.proc.once("exit", resolve));
try {
  const pasta = pastaTarget(ours.base);
  const llama = llamaTarget(theirs.url);
  const engine = await SteeringEngine.load({ modelPath: path, ...SETTINGS, threads: THREADS, flashAttention: true });

  // 1. single stream; each round runs every variant, in an order that rotates from round to round
  type Variant = "engine" | "pasta" | "steered" | "llama";
  const measure: Record<Variant, () => Promise<Stream>> = {
    engine: () => engineStream(engine, PROMPT),
    pasta: () => pasta.stream(PROMPT),
    steered: () => pasta.stream(PROMPT, true),
    llama: () => llama.stream(PROMPT),
  };
  const variants = Object.keys(measure) as Variant[];
  for (const v of variants) await measure[v](); // warm-up
  const rates = Object.fromEntries(variants.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length]!;
      rates[v].push(decodeRate(await measure[v]()));
    }
  }
  await engine.dispose(); // from here on the servers have the cores to themselves

  // 2. prefill, alternating; a distinct first word per round leaves nothing for pasta-server's prefix cache
  const prefill = { pasta: [] as number[], llama: [] as number[] };
  let prefillTokens = 0;
  for (let round = 0; round < 3 * ROUNDS; round++) {
    // a round is ~0.3 s: more of them, for a steadier median
    for (const [name, target] of round % 2
      ? ([
          ["llama", llama],
          ["pasta", pasta],
        ] as const)
      : ([
          ["pasta", pasta],
          ["llama", llama],
        ] as const)) {
      const { tokens, ms } = await target.prefill(LONG_PROMPT(round));
      prefillTokens = tokens;
      prefill[name].push(tokens / (ms / 1000));
    }
  }

  // 3. aggregate decode with concurrent streams, alternating which server goes first; pasta-server
  // also with 8 streams (how it scales), llama-server only where it has a slot per stream
  const agg = { pasta: new Map<number, number[]>(), llama: new Map<number, number[]>() };
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of [1, LLAMA_SLOTS, SETTINGS.parallel]) {
      const sides = [
        ["pasta", pasta],
        ["llama", llama],
      ] as const;
      for (const [name, target] of round % 2 ? [...sides].reverse() : sides) {
        if (name === "llama" && n > LLAMA_SLOTS) continue;
        agg[name].set(n, [...(agg[name].get(n) ?? []), await aggregate(target, n)]);
      }
    }
  }

  // 4. n = 4 in one request, or 4 requests at once; a distinct prompt every time leaves nothing cached
  const choices = { many: [] as number[], singles: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    const prompt = (k: number) => LONG_PROMPT(1000 + 4 * round + k);
    const many = () => choicesRequest(ours.base, prompt(0), 4, round);
    const singles = async () => {
      const t0 = performance.now();
      await Promise.all([0, 1, 2, 3].map((i) => choicesRequest(ours.base, prompt(1), 1, round + i)));
      return performance.now() - t0;
    };
    if (round % 2) choices.singles.push(await singles());
    choices.many.push(await many());
    if (!(round % 2)) choices.singles.push(await singles());
  }

  const ratioRow = (label: string, a: number[], b: number[], target: string, unit = "t/s") => {
    const pairs = a.map((x, i) => x / b[i]!);
    console.log(
      `| ${label} | ${best(a).toFixed(1)} ${unit} | ${best(b).toFixed(1)} ${unit} | ${(best(a) / best(b)).toFixed(3)} | ${median(pairs).toFixed(3)} | ${target} |`,
    );
  };
  console.log(
    `\n### ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model}, ${os.availableParallelism()} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
  );
  console.log(
    `\nmodel: generated llama ${SHAPE.embedding} x ${SHAPE.layers} layers, ${SHAPE.heads}/${SHAPE.kvHeads} heads, 32k vocab, F16; threads ${THREADS}; ` +
      `pasta-server --parallel ${SETTINGS.parallel} --ctx-size ${SETTINGS.contextSize}, llama-server -np ${LLAMA_SLOTS} -c ${LLAMA_SLOTS * SETTINGS.contextSize} -fa on; ` +
      `${MAX_TOKENS} greedy tokens per stream; best of ${ROUNDS} rounds (prefill: ${3 * ROUNDS}); steered: ${JSON.stringify(STEERING.heads)}\n`,
  );
  console.log("| measurement | A | B | A / B, best rounds | A / B, median of round pairs | target |\n|---|---|---|---|---|---|");
  ratioRow("single-stream decode, HTTP: pasta-server (A) / llama-server (B)", rates.pasta, rates.llama, ">= 0.90");
  ratioRow("single-stream decode, HTTP: pasta-server steered (A) / llama-server (B)", rates.steered, rates.llama, ">= 0.85");
  ratioRow(`prefill, ${prefillTokens}-token prompt, HTTP: pasta-server (A) / llama-server (B)`, prefill.pasta, prefill.llama, ">= 0.95");
  for (const n of [1, LLAMA_SLOTS]) {
    ratioRow(
      `aggregate decode, ${n} concurrent stream${n > 1 ? "s" : ""}: pasta-server (A) / llama-server (B)`,
      agg.pasta.get(n)!,
      agg.llama.get(n)!,
      n > 1 ? ">= 1.00" : "",
    );
  }
  const [one, eight] = [best(agg.pasta.get(1)!), best(agg.pasta.get(SETTINGS.parallel)!)];
  console.log(
    `| aggregate decode, ${SETTINGS.parallel} concurrent streams: pasta-server (A) / pasta-server, 1 stream (B) | ${eight.toFixed(1)} t/s | ${one.toFixed(1)} t/s | ${(eight / one).toFixed(3)} | | |`,
  );
  ratioRow("single-stream decode: pasta-server HTTP (A) / its engine in-process (B)", rates.pasta, rates.engine, ">= 0.95");
  // times: the best round is the shortest
  const [many, singles] = [Math.min(...choices.many), Math.min(...choices.singles)];
  const pairs = choices.many.map((x, i) => x / choices.singles[i]!);
  console.log(
    `| n = 4 choices, ${prefillTokens}-token prompt, ${MAX_CHOICE_TOKENS} tokens each: one request (A) / 4 concurrent requests (B), wall time | ` +
      `${many.toFixed(0)} ms | ${singles.toFixed(0)} ms | ${(many / singles).toFixed(3)} | ${median(pairs).toFixed(3)} | well under 1 |`,
  );
} finally {
  theirs.proc.kill("SIGTERM");
  ours.proc.kill("SIGTERM"); // the server drains (nothing is in flight) and exits 0
  const code = await exited;
  if (code !== 0) {
    console.error(`the server exited with ${code}`);
    process.exitCode = 1;
  }
}
