#!/usr/bin/env node
// pasta-server CLI: serve a GGUF model, profile its steering heads, measure what steering does for it
// (eval), or generate a random-weight test model.
import { parseArgs } from "node:util";
import { UserError } from "../errors.js";
import { generateTestModel, type TestArchitecture } from "../testModels/randomModel.js";
import { parseServeConfig, SERVE_USAGE } from "./config.js";
import { EVAL_USAGE, evalCommand } from "./eval.js";
import { MODELS_USAGE, modelsCommand } from "./models.js";
import { PROFILE_USAGE, profileCommand } from "./profile.js";

const USAGE = `usage:
  ${SERVE_USAGE.replaceAll("\n", "\n  ")}
  ${PROFILE_USAGE.replaceAll("\n", "\n  ")}
  ${EVAL_USAGE.replaceAll("\n", "\n  ")}
  ${MODELS_USAGE}
  pasta-server gen-model --out <file.gguf> [--arch llama|qwen2|gemma2|mamba] [--embd 256] [--layers 4] [--heads 8] [--kv-heads 2] [--ff 512] [--f16]`;

/** Startup errors a user can fix: the message alone, no stack. */
function fail(message: string): never {
  console.error(`pasta-server: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function int(value: string | undefined, name: string, fallback: number, min = 1, max = 1 << 20): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return n;
}

function genModel(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      out: { type: "string" },
      arch: { type: "string", default: "llama" },
      embd: { type: "string" },
      layers: { type: "string" },
      heads: { type: "string" },
      "kv-heads": { type: "string" },
      ff: { type: "string" },
      f16: { type: "boolean" },
      seed: { type: "string" },
    },
  });
  if (!values.out) fail("--out <file.gguf> is required");
  const arch = values.arch as TestArchitecture;
  if (!["llama", "qwen2", "gemma2", "mamba"].includes(arch)) fail(`--arch must be llama, qwen2, gemma2 or mamba`);
  generateTestModel(values.out, {
    architecture: arch,
    embedding: int(values.embd, "embd", 256),
    layers: int(values.layers, "layers", 4),
    heads: int(values.heads, "heads", 8),
    kvHeads: int(values["kv-heads"], "kv-heads", 2),
    feedForward: int(values.ff, "ff", 512),
    weightType: values.f16 ? "f16" : "f32",
    seed: int(values.seed, "seed", 1234, 0),
  });
  console.log(`wrote ${values.out}`);
}

const [command, ...rest] = process.argv.slice(2);
if (command === "--help" || command === "help" || rest.includes("--help")) {
  console.log(USAGE);
  process.exit(0);
}
try {
  if (command === "serve") {
    const config = parseServeConfig(rest);
    // loaded after the flags are checked: node-llama-cpp takes a second or two to import
    const { serve } = await import("./serve.js");
    await serve(config);
  } else if (command === "profile") await profileCommand(rest);
  else if (command === "eval") await evalCommand(rest);
  else if (command === "models") modelsCommand(rest);
  else if (command === "gen-model") genModel(rest);
  else fail(command ? `unknown command ${JSON.stringify(command)}` : "a command is required");
} catch (err) {
  if (err instanceof UserError) fail(err.message);
  if ((err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) fail((err as Error).message);
  throw err;
}
