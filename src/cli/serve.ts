// `pasta-server serve`: resolve the model (downloading the default one if needed), listen at once
// (/health), load the model in the background (/ready turns 200), and drain on SIGTERM.
import { basename } from "node:path";
import { SteeringEngine } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import { loadHeadProfile } from "../profiles/headProfile.js";
import { ChatTemplate, CHATML_TEMPLATE } from "../prompt/chatTemplate.js";
import { Scheduler } from "../scheduler/scheduler.js";
import { buildApp } from "../server/app.js";
import { GenerationService } from "../server/generation.js";
import { ServerMetrics } from "../server/metrics.js";
import { ConfigError, type ServeConfig } from "./config.js";
import { modelCacheDir, resolveModel } from "./modelSource.js";

/** Seconds a client is told to wait when the queue is full. */
const RETRY_AFTER_SECONDS = 2;

function defaultHeads(profile: string): HeadSelection | null {
  if (profile === "none") return null;
  if (profile === "auto") throw new ConfigError("--profile auto is not available yet: profile the model with a head profile file, or use --profile none");
  return loadHeadProfile(profile);
}

async function loadService(config: ServeConfig, modelPath: string, heads: HeadSelection | null, scheduler: Scheduler, metrics: ServerMetrics, log: (msg: string) => void) {
  const engine = await SteeringEngine.load({
    modelPath, parallel: config.parallel, contextSize: config["ctx-size"], flashAttention: !config["no-flash-attn"],
    gpu: config.gpu === "cuda" ? "cuda" : false, ...(config.threads ? { threads: config.threads } : {}),
  });
  const tokens = engine.model.tokens;
  let template = engine.model.fileInfo.metadata.tokenizer?.chat_template;
  if (!template) {
    log("the model has no chat template; /v1/chat/completions uses ChatML");
    template = CHATML_TEMPLATE;
  }
  const chatTemplate = new ChatTemplate(template, {
    bos_token: tokens.bos != null ? engine.tokenText(tokens.bos) : "",
    eos_token: tokens.eos != null ? engine.tokenText(tokens.eos) : "",
  });
  return new GenerationService({
    engine, scheduler, metrics, chatTemplate, defaultHeads: heads,
    modelId: config["model-alias"] ?? basename(modelPath).replace(/\.gguf$/i, ""),
    timeoutMs: config.timeout * 1000, logPrompts: config["log-prompts"],
  });
}

export async function serve(config: ServeConfig): Promise<void> {
  // what can fail fast fails before the port opens
  const heads = defaultHeads(config.profile);
  const modelPath = await resolveModel(config.model, { cacheDir: modelCacheDir(), progress: true });

  const scheduler = new Scheduler({ parallel: config.parallel, maxQueue: config["max-queue"], retryAfterSeconds: RETRY_AFTER_SECONDS });
  const metrics = new ServerMetrics(scheduler);
  let logInfo: (msg: string) => void = () => {};
  const service = loadService(config, modelPath, heads, scheduler, metrics, (msg) => logInfo(msg));
  const app = await buildApp({
    service, scheduler, metrics, apiKeys: config["api-key"], corsOrigins: config["cors-origin"], bodyLimit: config["body-limit"],
    logger: { level: config["log-level"], redact: ["req.headers.authorization"] },
  });
  logInfo = (msg) => app.log.warn(msg);
  await app.listen({ host: config.host, port: config.port });
  service.then(
    (s) => app.log.info({ model: modelPath, modelId: s.modelId, parallel: config.parallel, contextSize: s.engine.contextSize }, "model loaded; ready"),
    (err: Error) => {
      app.log.fatal(`cannot load the model ${modelPath}: ${err.message}`);
      process.exit(1);
    },
  );

  const shutdown = async (signal: string) => {
    app.log.info({ signal, active: scheduler.active, queued: scheduler.queued }, `draining (up to ${config["shutdown-timeout"]} s)`);
    await scheduler.drain(config["shutdown-timeout"] * 1000);
    await app.close();
    await (await service.catch(() => null))?.engine.dispose();
    app.log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}
