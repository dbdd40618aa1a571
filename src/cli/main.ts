#!/usr/bin/env node
// pasta-server CLI: serve a GGUF model, or generate a random-weight test model.
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { SteeringEngine } from "../engine/engine.js";
import { buildApp } from "../server/app.js";
import { generateTestModel, type TestArchitecture } from "../testModels/generate.js";

const USAGE = `usage:
  pasta-server serve --model <file.gguf> [--host 127.0.0.1] [--port 8080] [--parallel 1] [--ctx-size 4096] [--no-flash-attn] [--threads n]
  pasta-server gen-model --out <file.gguf> [--arch llama|qwen2|gemma2|mamba] [--embd 256] [--layers 4] [--heads 8] [--kv-heads 2] [--ff 512] [--f16]`;

function fail(message: string): never {
  console.error(`pasta-server: ${message}\n${USAGE}`);
  process.exit(2);
}

function int(value: string | undefined, name: string, fallback: number, min = 1, max = 1 << 20): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return n;
}

async function serve(argv: string[]) {
  const { values } = parseArgs({ args: argv, strict: true, options: {
    model: { type: "string" }, host: { type: "string", default: "127.0.0.1" }, port: { type: "string" },
    parallel: { type: "string" }, "ctx-size": { type: "string" }, "no-flash-attn": { type: "boolean" }, threads: { type: "string" },
  } });
  if (!values.model) fail("--model <file.gguf> is required");
  if (!existsSync(values.model)) fail(`model file not found: ${values.model}`);
  const port = int(values.port, "port", 8080, 0, 65535);
  const parallel = int(values.parallel, "parallel", 1, 1, 256);
  const contextSize = int(values["ctx-size"], "ctx-size", 4096, 64);
  const threads = values.threads === undefined ? undefined : int(values.threads, "threads", 1, 1, 1024);

  const engine = SteeringEngine.load({ modelPath: values.model, parallel, contextSize, flashAttention: !values["no-flash-attn"], threads });
  const app = buildApp({ engine, logger: { level: process.env.LOG_LEVEL ?? "info" } });
  await app.listen({ host: values.host, port });
  engine.then(() => app.log.info({ model: values.model }, "model loaded; ready"), (err) => {
    app.log.error(`cannot load the model: ${(err as Error).message}`);
    process.exit(1);
  });
  const shutdown = async () => { await app.close(); await (await engine).dispose(); process.exit(0); };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

function genModel(argv: string[]) {
  const { values } = parseArgs({ args: argv, strict: true, options: {
    out: { type: "string" }, arch: { type: "string", default: "llama" }, embd: { type: "string" }, layers: { type: "string" },
    heads: { type: "string" }, "kv-heads": { type: "string" }, ff: { type: "string" }, f16: { type: "boolean" }, seed: { type: "string" },
  } });
  if (!values.out) fail("--out <file.gguf> is required");
  const arch = values.arch as TestArchitecture;
  if (!["llama", "qwen2", "gemma2", "mamba"].includes(arch)) fail(`--arch must be llama, qwen2, gemma2 or mamba`);
  generateTestModel(values.out, {
    architecture: arch, embedding: int(values.embd, "embd", 256), layers: int(values.layers, "layers", 4),
    heads: int(values.heads, "heads", 8), kvHeads: int(values["kv-heads"], "kv-heads", 2), feedForward: int(values.ff, "ff", 512),
    weightType: values.f16 ? "f16" : "f32", seed: int(values.seed, "seed", 1234, 0),
  });
  console.log(`wrote ${values.out}`);
}

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === "serve") await serve(rest);
  else if (command === "gen-model") genModel(rest);
  else fail(command ? `unknown command ${JSON.stringify(command)}` : "a command is required");
} catch (err) {
  if ((err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) fail((err as Error).message);
  throw err;
}
