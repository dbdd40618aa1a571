// `pasta-server serve`: resolve the model (downloading the default one if needed), listen at once
// (/health), load the model in the background (/ready turns 200), and drain on SIGTERM.
import { existsSync, mkdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { FastifyInstance } from "fastify";
import { RETRY_AFTER_SECONDS } from "../defaults.js";
import { SteeringEngine } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import { loadHeadProfileWithModel } from "../profiles/headProfile.js";
import { modelFileInfo, writeProfile } from "../profiles/profileFile.js";
import { profileHeads } from "../profiles/profiler.js";
import { findShippedProfile } from "../profiles/shipped.js";
import { loadBuiltinTasks } from "../profiles/tasks.js";
import { CHATML_TEMPLATE } from "../prompt/chatTemplate.js";
import { modelChatTemplate } from "../prompt/modelTemplate.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { buildApp } from "../server/app.js";
import { sha256File } from "../util/fileHash.js";
import { GenerationService } from "../server/generationService.js";
import { ServerMetrics } from "../server/metrics.js";
import { watchResponses } from "../server/responseWatch.js";
import type { ServeConfig } from "./config.js";
import { modelCacheDir, resolveModel } from "./modelSource.js";

/** The least time responses get to finish writing after the drain, even past the deadline: the last chunks of a cut stream. */
const CLOSE_GRACE_MS = 1000;

/** The server's head profile: its heads, and the alpha they were chosen with (null: not recorded). */
type ServerProfile = { heads: HeadSelection; alpha: number | null };

/**
 * `--profile`: a file's heads now; "auto" or, without the flag, "shipped" (decided once the model
 * file is known); or none.
 */
function profileOption(profile: string | undefined): ServerProfile | null | "auto" | "shipped" {
  if (profile === undefined) return "shipped";
  if (profile === "none" || profile === "auto") return profile === "auto" ? "auto" : null;
  const { heads, alpha } = loadHeadProfileWithModel(profile);
  return { heads, alpha };
}

/**
 * The profile steered when a request names no heads: the file given, else the profile that ships
 * for this exact model file (profiles/), else with `--profile auto` one made now, else none.
 */
async function serverProfile(
  option: ReturnType<typeof profileOption>,
  engine: SteeringEngine,
  modelPath: string,
  log: Logger,
): Promise<ServerProfile | null> {
  if (option !== "auto" && option !== "shipped") return option;
  const shipped = findShippedProfile(await sha256File(modelPath));
  if (shipped) {
    const { heads, alpha } = loadHeadProfileWithModel(shipped);
    log.info({ profile: shipped, alpha }, "head profile: shipped for this model file");
    return { heads, alpha };
  }
  if (option === "auto") return autoProfile(engine, modelPath, log);
  log.info("head profile: none ships for this model file; steering requests must name their heads (or restart with --profile auto|<file>)");
  return null;
}

/**
 * `--profile auto`: the cached profile of this exact model file, or one made now with the built-in
 * tasks (coarse-to-fine: a fraction of the full search's forward passes) and cached for next time.
 */
async function autoProfile(engine: SteeringEngine, modelPath: string, log: Logger): Promise<ServerProfile> {
  const model = await modelFileInfo(modelPath);
  const cached = join(modelCacheDir(), "profiles", `${model.sha256}.json`);
  if (existsSync(cached)) {
    const profile = loadHeadProfileWithModel(cached);
    if (profile.modelSha256 === model.sha256) {
      log.info({ profile: cached, heads: profile.heads }, "head profile: cached for this model file");
      return { heads: profile.heads, alpha: profile.alpha };
    }
  }
  log.info("head profile: none cached for this model file; profiling with the built-in tasks (/ready stays 503 until done)");
  let reported = -1;
  const result = await profileHeads(engine, {
    tasks: loadBuiltinTasks(),
    // as the model is served: in its own chat template (raw text for a model without one)
    template: modelChatTemplate(engine),
    // the profiler's defaults (coarse-to-fine, 6 examples a task): a 0.5B model on a CPU in minutes
    evaluate: false,
    onProgress: (done, total) => {
      const tenth = Math.floor((10 * done) / Math.max(total, 1));
      if (tenth > reported) {
        reported = tenth;
        log.info({ done, total }, `head profiling: ${tenth * 10}%`);
      }
    },
  });
  mkdirSync(dirname(cached), { recursive: true });
  writeProfile(cached, result, model, "pasta-server serve --profile auto");
  log.info({ profile: cached, heads: result.heads, forwardPasses: result.forwardPasses.used }, "head profile: written");
  return { heads: result.heads, alpha: result.alpha };
}

interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(msg: string): void;
}

async function loadService(
  config: ServeConfig,
  modelPath: string,
  profile: ReturnType<typeof profileOption>,
  scheduler: Scheduler,
  metrics: ServerMetrics,
  log: Logger,
) {
  const engine = await SteeringEngine.load({
    modelPath,
    scheduler,
    contextSize: config["ctx-size"],
    flashAttention: !config["no-flash-attn"],
    gpu: config.gpu === "cuda" ? "cuda" : false,
    ...(config.threads ? { threads: config.threads } : {}),
    deliveryIntervalMs: config["stream-interval-ms"],
    samplingBudgetMs: config["sampling-budget-ms"],
  });
  let chatTemplate = modelChatTemplate(engine);
  if (!chatTemplate) {
    log.warn("the model has no chat template; /v1/chat/completions uses ChatML");
    chatTemplate = modelChatTemplate(engine, CHATML_TEMPLATE)!;
  }
  return new GenerationService({
    engine,
    metrics,
    chatTemplate,
    profile: await serverProfile(profile, engine, modelPath, log),
    modelId: config["model-alias"] ?? basename(modelPath).replace(/\.gguf$/i, ""),
    timeoutMs: config.timeout * 1000,
    logPrompts: config["log-prompts"],
  });
}

export async function serve(config: ServeConfig): Promise<void> {
  // what can fail fast fails before the port opens
  const profile = profileOption(config.profile);
  const modelPath = await resolveModel(config.model, { cacheDir: modelCacheDir(), progress: true });

  const scheduler = new Scheduler({ parallel: config.parallel, maxQueue: config["max-queue"], retryAfterSeconds: RETRY_AFTER_SECONDS });
  const metrics = new ServerMetrics(scheduler);
  // the app's logger, once there is an app (loading starts before it exists)
  let app: FastifyInstance | undefined;
  const log: Logger = { info: (obj, msg) => app?.log.info(obj, msg), warn: (msg) => app?.log.warn(msg) };
  const service = loadService(config, modelPath, profile, scheduler, metrics, log);
  const server = await buildApp({
    service,
    scheduler,
    metrics,
    apiKeys: config["api-key"],
    corsOrigins: config["cors-origin"],
    bodyLimit: config["body-limit"],
    readTimeoutMs: config["read-timeout"] * 1000,
    playground: !config["no-playground"],
    logger: { level: config["log-level"], redact: ["req.headers.authorization"] },
  });
  app = server;
  const responses = watchResponses(server.server);
  await server.listen({ host: config.host, port: config.port });
  if (config["api-key"].length === 0 && !isLoopback(config.host))
    server.log.warn(
      `serving on ${config.host} with no API key: anyone who reaches this address can use every route. ` +
        "Set --api-key-file (or PASTA_API_KEYS_FILE, PASTA_API_KEYS), or keep the server behind a gateway that checks keys",
    );
  service.then(
    (s) =>
      server.log.info(
        { model: modelPath, modelId: s.modelId, parallel: config.parallel, contextSize: s.engine.contextSize },
        "model loaded; ready",
      ),
    (err: Error) => {
      const message = `cannot load the model ${modelPath}: ${err.message} (is it a complete GGUF file that this llama.cpp supports?)`;
      server.log.fatal(message);
      console.error(`pasta-server: ${message}`);
      process.exit(1);
    },
  );

  const shutdown = async (signal: string) => {
    const deadline = performance.now() + config["shutdown-timeout"] * 1000;
    server.log.info({ signal, active: scheduler.active, queued: scheduler.queued }, `draining (up to ${config["shutdown-timeout"]} s)`);
    await scheduler.drain(config["shutdown-timeout"] * 1000);
    // responses still being written (a large body, a slow reader) get until the deadline
    await responses.flushed(Math.max(deadline, performance.now() + CLOSE_GRACE_MS));
    // Node's server never closes a connection that has not sent a request (a client's spare
    // keep-alive socket): after a moment, close what is left
    const closing = server.close();
    setTimeout(() => server.server.closeAllConnections(), CLOSE_GRACE_MS).unref();
    await closing;
    await (await service.catch(() => null))?.engine.dispose();
    server.log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

/** Whether only this machine can reach `host`: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare) || bare === "::ffff:127.0.0.1";
}
