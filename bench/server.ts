// npm run bench:server: what the HTTP server costs on top of the engine, and how decoding scales with
// concurrent requests, in one run on a generated ~56M-parameter llama (F16, 512 x 8 layers, GQA 8/4
// heads, 32k vocab). The model is small on purpose: a single stream decodes at ~200 tokens/s on 2 cores,
// so the per-token cost of HTTP (one SSE chunk per token) is a visible share of each token's time.
//   1. single-stream decode tokens/s: POST /v1/generate (stream: true) on a real `pasta-server serve`
//      process vs SteeringEngine.generate in this process, same prompt, settings and threads.
//   2. aggregate decode tokens/s through HTTP with 1, 4 and 8 concurrent streams (--parallel 8).
// The two processes share the machine's cores, so they never decode at the same time; rounds alternate
// and the best round counts (interference on a shared machine only ever slows a round down).
// BENCH_ROUNDS (default 20) and BENCH_THREADS (default: every CPU) override.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import http from "node:http";
import os from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { SteeringEngine } from "../src/engine/engine.js";
import { benchModel } from "./benchModel.js";

const SHAPE = { architecture: "llama" as const, embedding: 512, layers: 8, heads: 8, kvHeads: 4, feedForward: 1408, weightType: "f16" as const, seed: 42 };
const MAX_TOKENS = 128;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const THREADS = Number(process.env.BENCH_THREADS ?? os.availableParallelism()); // server and in-process engine alike
const SETTINGS = { parallel: 8, contextSize: 1024 }; // per sequence; the engine gets the server's exact context layout
const CONCURRENCY = [1, 4, 8];
const PROMPT = "Once upon a time, in a quiet village by the sea, there lived";

const modelPath = () => benchModel("llama-512x8-f16.gguf", SHAPE);

/** One decoded stream: when its first and last text arrived, and how many tokens it had. */
interface Stream { tokens: number; firstText: number; lastText: number }
// the first text comes with the first token, so tokens - 1 were decoded between first and last text
const decodeRate = (s: Stream) => (s.tokens - 1) / ((s.lastText - s.firstText) / 1000);

// a random-weight model could sample EOS early; the rates assume every stream runs MAX_TOKENS
const lengthError = (tokens: number, where: string) => new Error(`${where}: ${tokens} completion tokens, expected ${MAX_TOKENS} (EOS? try another prompt)`);

/** Starts `pasta-server serve` on a free port; resolves with its URL once /ready answers 200. */
async function startServer(model: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "--model", model, "--port", "0",
    "--parallel", String(SETTINGS.parallel), "--ctx-size", String(SETTINGS.contextSize), "--threads", String(THREADS)],
  { env: { ...process.env, NODE_OPTIONS: "" }, stdio: ["ignore", "pipe", "inherit"] });
  process.once("exit", () => proc.kill("SIGKILL")); // never leave it behind, whatever happens here
  // read every log line (a full pipe would stall the server), keep them for a post-mortem, and catch the listening address
  const log = createWriteStream(join(os.tmpdir(), "pasta-server-bench", "server.log"));
  const url = await new Promise<string>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`the server exited (${code}) before listening`)));
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      log.write(line + "\n");
      const m = /Server listening at (http:\/\/[^\s"]+)/.exec(line);
      if (m) resolve(m[1]!);
      if (/"level":(50|60)/.test(line)) console.error(`server: ${line}`);
    });
  });
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    if ((await fetch(`${url}/ready`)).status === 200) return { proc, url };
  }
  throw new Error("the server was not ready within 120 s");
}

/**
 * One streamed POST /v1/generate; usage comes from the final chunk. node:http with 'data' events, not
 * fetch: this client shares the cores with the server's math threads, and every CPU cycle it spends per
 * SSE chunk slows the server's decoding. Against a non-streamed request, fetch's web streams cost the
 * server 4-10% of its decode speed in our runs, node:http (like curl) 2-3%.
 */
function httpStream(url: string, prompt: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/generate`, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      res.setEncoding("utf8");
      let buffer = "", firstText = 0, lastText = 0, tokens = -1;
      res.on("data", (text: string) => {
        const now = performance.now();
        buffer += text;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (res.statusCode !== 200 || event.startsWith("event: error")) return req.destroy(new Error(`POST /v1/generate: ${res.statusCode} ${event}`));
          const data = event.slice("data: ".length);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data) as { text: string; usage?: { completion_tokens: number } };
          if (chunk.text) { firstText ||= now; lastText = now; }
          if (chunk.usage) tokens = chunk.usage.completion_tokens;
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`POST /v1/generate: ${res.statusCode} ${buffer}`));
        if (tokens < 0) return reject(new Error("the stream ended without usage"));
        if (tokens !== MAX_TOKENS) return reject(lengthError(tokens, "HTTP"));
        resolve({ tokens, firstText, lastText });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(JSON.stringify({ prompt, max_tokens: MAX_TOKENS, temperature: 0, stream: true }));
  });
}

async function engineStream(engine: SteeringEngine, prompt: string): Promise<Stream> {
  let firstText = 0, lastText = 0;
  const result = await engine.generate({
    prompt, maxTokens: MAX_TOKENS, temperature: 0,
    onText: () => { const now = performance.now(); firstText ||= now; lastText = now; },
  });
  if (result.tokens.length !== MAX_TOKENS) throw lengthError(result.tokens.length, "engine");
  return { tokens: result.tokens.length, firstText, lastText };
}

const path = modelPath();
const { proc, url } = await startServer(path);
const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
try {
  const engine = await SteeringEngine.load({ modelPath: path, ...SETTINGS, threads: THREADS, flashAttention: true });
  await engineStream(engine, PROMPT); // warm-up, both sides
  await httpStream(url, PROMPT);

  // 1. single stream, alternating engine and HTTP rounds (which goes first alternates too). This VM's
  // speed drifts by tens of percent over seconds, so besides each side's best round we report the
  // median of the ratios of adjacent rounds, which a drift slower than one round pair cancels out of.
  const rates = { engine: [] as number[], http: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 ? ["http", "engine"] as const : ["engine", "http"] as const) {
      rates[side].push(decodeRate(side === "engine" ? await engineStream(engine, PROMPT) : await httpStream(url, PROMPT)));
    }
  }
  const pairRatios = rates.http.map((h, i) => h / rates.engine[i]!).sort((a, b) => a - b);
  const medianRatio = (pairRatios[(ROUNDS - 1) >> 1]! + pairRatios[ROUNDS >> 1]!) / 2;
  await engine.dispose(); // from here on the server has the cores to itself

  // 2. aggregate: n streams at once, distinct prompts; wall time from the first request sent to the last done
  const aggregate = new Map<number, number>();
  for (let round = 0; round < 3; round++) {
    for (const n of CONCURRENCY) {
      const t0 = performance.now();
      const streams = await Promise.all(Array.from({ length: n }, (_, i) => httpStream(url, `${PROMPT} (${i})`)));
      const rate = streams.reduce((sum, s) => sum + s.tokens, 0) / ((performance.now() - t0) / 1000);
      aggregate.set(n, Math.max(aggregate.get(n) ?? 0, rate));
    }
  }

  const best = (xs: number[]) => Math.max(...xs);
  const [e, h] = [best(rates.engine), best(rates.http)];
  console.log(`\n### ${new Date().toISOString().slice(0, 10)}, ${os.cpus()[0]?.model}, ${os.availableParallelism()} CPUs, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
  console.log(`\nmodel: generated llama ${SHAPE.embedding} x ${SHAPE.layers} layers, ${SHAPE.heads}/${SHAPE.kvHeads} heads, 32k vocab, F16; --parallel ${SETTINGS.parallel} --threads ${THREADS}; ${MAX_TOKENS} tokens per stream, temperature 0, unsteered; best of ${ROUNDS} (single) / 3 (aggregate) rounds\n`);
  console.log("| measurement | value | ratio | target |\n|---|---|---|---|");
  console.log(`| single-stream decode, HTTP (SSE) / engine in-process, best rounds | ${h.toFixed(1)} / ${e.toFixed(1)} t/s | ${(h / e).toFixed(3)} | >= 0.95 |`);
  console.log(`| single-stream decode, HTTP / engine, median of ${ROUNDS} adjacent-round ratios | ${pairRatios[0]!.toFixed(2)} to ${pairRatios.at(-1)!.toFixed(2)} | ${medianRatio.toFixed(3)} | >= 0.95 |`);
  for (const n of CONCURRENCY) {
    console.log(`| aggregate through HTTP, ${n} stream${n > 1 ? "s" : ""} | ${aggregate.get(n)!.toFixed(1)} t/s | ${(aggregate.get(n)! / aggregate.get(1)!).toFixed(2)} x 1 stream | |`);
  }
} finally {
  proc.kill("SIGTERM"); // the server drains (nothing is in flight) and exits 0
  const code = await exited;
  if (code !== 0) { console.error(`the server exited with ${code}`); process.exitCode = 1; }
}
