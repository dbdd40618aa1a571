// `serve` configuration: command-line flags, each with an environment variable as fallback
// (flags win), validated once with zod so that a bad value stops the process with a clear message.
import { DEFAULT_MODEL } from "./modelCatalog.js";
import { UserError } from "../errors.js";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_CONTEXT_SIZE,
  DEFAULT_MAX_QUEUE,
  DEFAULT_PARALLEL,
  DEFAULT_READ_TIMEOUT_SECONDS,
  DEFAULT_SAMPLING_BUDGET_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
  DEFAULT_STREAM_INTERVAL_MS,
  DEFAULT_TIMEOUT_SECONDS,
} from "../defaults.js";

/** flag -> environment variable */
const ENV: Record<string, string> = {
  model: "PASTA_MODEL",
  "model-alias": "PASTA_MODEL_ALIAS",
  host: "PASTA_HOST",
  port: "PASTA_PORT",
  parallel: "PASTA_PARALLEL",
  "max-queue": "PASTA_MAX_QUEUE",
  "ctx-size": "PASTA_CTX_SIZE",
  threads: "PASTA_THREADS",
  "stream-interval-ms": "PASTA_STREAM_INTERVAL_MS",
  gpu: "PASTA_GPU",
  profile: "PASTA_PROFILE",
  "api-key": "PASTA_API_KEYS",
  "api-key-file": "PASTA_API_KEYS_FILE",
  "cors-origin": "PASTA_CORS_ORIGINS",
  timeout: "PASTA_TIMEOUT",
  "shutdown-timeout": "PASTA_SHUTDOWN_TIMEOUT",
  "read-timeout": "PASTA_READ_TIMEOUT",
  "sampling-budget-ms": "PASTA_SAMPLING_BUDGET_MS",
  "body-limit": "PASTA_BODY_LIMIT",
  "log-level": "LOG_LEVEL",
  "log-prompts": "PASTA_LOG_PROMPTS",
  "no-flash-attn": "PASTA_NO_FLASH_ATTN",
  "no-playground": "PASTA_NO_PLAYGROUND",
};

const BOOLEAN_FLAGS = new Set(["log-prompts", "no-flash-attn", "no-playground"]);

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const flag = z.union([z.boolean(), z.enum(["1", "true", "0", "false", ""]).transform((v) => v === "1" || v === "true")]);
const list = z
  .union([z.array(z.string()), z.string().transform((v) => v.split(","))])
  .transform((items) => items.map((s) => s.trim()).filter((s) => s.length > 0));
// A blank key is refused, never dropped: `--api-key " "` or PASTA_API_KEYS="," meant to set a key,
// and serving every route open instead would fail open without a word.
const keyList = z
  .union([z.array(z.string()), z.string().transform((v) => v.split(","))])
  .transform((items) => items.map((s) => s.trim()))
  .refine((keys) => keys.every((k) => k.length > 0), "a key is blank (a stray comma or an empty value?)")
  .refine((keys) => keys.every((k) => !/\s/.test(k)), "a key contains whitespace");

export const serveConfigSchema = z
  .object({
    model: z.string().min(1).optional(),
    "model-alias": z.string().min(1).max(256).optional(),
    host: z.string().min(1).default("127.0.0.1"),
    port: int(0, 65535).default(8080),
    parallel: int(1, 256).default(DEFAULT_PARALLEL),
    "max-queue": int(0, 100_000).default(DEFAULT_MAX_QUEUE),
    "ctx-size": int(64, 1 << 20).default(DEFAULT_CONTEXT_SIZE),
    threads: int(1, 1024).optional(),
    "stream-interval-ms": int(0, 1000).default(DEFAULT_STREAM_INTERVAL_MS),
    gpu: z.enum(["none", "cuda"]).default("none"),
    profile: z.string().min(1).optional(),
    "api-key": keyList.default([]),
    "api-key-file": z.string().min(1).optional(),
    "cors-origin": list.optional(),
    timeout: z.coerce.number().positive().max(86_400).default(DEFAULT_TIMEOUT_SECONDS),
    "shutdown-timeout": z.coerce.number().min(0).max(3600).default(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS),
    "body-limit": int(1024, 1 << 30).default(DEFAULT_BODY_LIMIT_BYTES),
    "read-timeout": z.coerce.number().positive().max(3600).default(DEFAULT_READ_TIMEOUT_SECONDS),
    "sampling-budget-ms": int(0, 600_000).default(DEFAULT_SAMPLING_BUDGET_MS),
    "log-level": z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    "log-prompts": flag.default(false),
    "no-flash-attn": flag.default(false),
    "no-playground": flag.default(false),
  })
  .strict();
export type ServeConfig = z.infer<typeof serveConfigSchema>;

export const SERVE_USAGE = `pasta-server serve [--model <name|file.gguf|hf:owner/repo/file.gguf|https://...>] [options]
  --model <name>            a model of the catalog, fetched into the cache on first use ("pasta-server models"
                            lists them); default: ${DEFAULT_MODEL.name}
  --model-alias <id>        model id in the API (default: the file name)
  --host 127.0.0.1  --port 8080
  --parallel ${DEFAULT_PARALLEL}              requests decoded at once (one context sequence each)
  --max-queue ${DEFAULT_MAX_QUEUE}            requests that may wait for a sequence; more get 429
  --ctx-size ${DEFAULT_CONTEXT_SIZE}           context tokens per sequence
  --threads n               math threads (default: one per physical core, within the CPU quota)
  --stream-interval-ms ${DEFAULT_STREAM_INTERVAL_MS}   hand generated tokens to the server (and streams) at most this often;
                            0: every decoding step. The first token and the end are never held back
  --gpu none|cuda           CUDA needs "npm run build -- --cuda"
  --no-flash-attn
  --no-playground           do not serve the browser playground (GET /playground)
  --profile <file>|auto|none  default steering heads: a head profile JSON; auto (profiled at first start, cached);
                            none. Default: the profile that ships for this model file (profiles/), if any
  --api-key <key>           repeatable; requests need Authorization: Bearer <key> (visible in ps: prefer the file)
  --api-key-file <file>     keys, one per line (blank lines and # comments skipped); adds to --api-key
  --cors-origin <origin>    repeatable, or *; CORS is off without it
  --timeout ${DEFAULT_TIMEOUT_SECONDS}             seconds per request, queueing included
  --shutdown-timeout ${DEFAULT_SHUTDOWN_TIMEOUT_SECONDS}     seconds in-flight requests get to finish on SIGTERM
  --body-limit ${DEFAULT_BODY_LIMIT_BYTES}      bytes
  --read-timeout ${DEFAULT_READ_TIMEOUT_SECONDS}        seconds a client gets to send its whole request, and a stream's reader to
                            take what was sent; slower ones are disconnected
  --sampling-budget-ms ${DEFAULT_SAMPLING_BUDGET_MS}  a request whose sampling of one token (its grammar) takes longer ends with
                            a 400: samplers run between decodes and hold up every sequence. 0: no budget
  --log-level info  --log-prompts
Each option can also come from the environment: ${Object.values(ENV).join(", ")}.`;

export class ConfigError extends UserError {
  override name = "ConfigError";
}

export function parseServeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeConfig {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        Object.keys(ENV).map((name) => [
          name,
          {
            type: BOOLEAN_FLAGS.has(name) ? ("boolean" as const) : ("string" as const),
            multiple: name === "api-key" || name === "cors-origin",
          },
        ]),
      ),
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const merged: Record<string, unknown> = {};
  for (const [name, variable] of Object.entries(ENV)) {
    // an empty variable (`PASTA_PORT=` in an env file) is unset, not a value: "" would coerce to 0
    const value = values[name] ?? (env[variable] === "" ? undefined : env[variable]);
    if (value !== undefined) merged[name] = value;
  }
  const parsed = serveConfigSchema.safeParse(merged);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues
        .map((i) => {
          const name = String(i.path[0]);
          return `--${name} (or ${ENV[name]}): ${i.message}`;
        })
        .join("\n"),
    );
  }
  const config = parsed.data;
  if (config["api-key-file"] !== undefined) config["api-key"] = [...config["api-key"], ...readKeyFile(config["api-key-file"])];
  return config;
}

/** The keys of --api-key-file: one a line; a file that holds none is an error (it was meant to hold some). */
function readKeyFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(
      `--api-key-file (or PASTA_API_KEYS_FILE): cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith("#"));
  if (keys.length === 0) throw new ConfigError(`--api-key-file (or PASTA_API_KEYS_FILE): ${file} holds no key`);
  const spaced = keys.findIndex((k) => /\s/.test(k));
  if (spaced >= 0) throw new ConfigError(`--api-key-file (or PASTA_API_KEYS_FILE): key ${spaced + 1} of ${file} contains whitespace`);
  return keys;
}
