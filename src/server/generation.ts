// What every generation endpoint shares: the request's steering resolved against the server's head
// profile, validation before queueing, a sequence from the scheduler with the client's disconnect
// and the time limit wired to the engine, and the metrics of the result.
import type { FastifyReply, FastifyRequest } from "fastify";
import type { GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, SteeringEngine, SteeringRequest } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import type { ChatTemplate } from "../prompt/chatTemplate.js";
import type { RenderedPrompt } from "../prompt/prompts.js";
import { JobStopped, type Scheduler, type StopReason } from "../scheduler/scheduler.js";
import { HttpError } from "./errors.js";
import type { ServerMetrics } from "./metrics.js";
import type { SteeringBody } from "./schemas.js";

/** Name under which `steering.heads` can ask for the server's head profile explicitly. */
export const DEFAULT_PROFILE_NAME = "default";

export interface GenerationServiceOptions {
  engine: SteeringEngine;
  scheduler: Scheduler;
  metrics: ServerMetrics;
  chatTemplate: ChatTemplate;
  /** the model's id in the API (`model` fields, /v1/models) */
  modelId: string;
  /** heads steered when a request names none; null: requests must name them */
  defaultHeads: HeadSelection | null;
  /** per-request limit, queueing included */
  timeoutMs: number;
  /** log prompt text (off by default: prompts may be private) */
  logPrompts: boolean;
}

export interface Generation {
  result: GenerateResult;
  /** why generation ended early (time limit, shutdown, client gone), if it did */
  stopped?: StopReason;
}

/** Aborts when the client closes the connection before the response is complete. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once("close", () => { if (!reply.raw.writableFinished) controller.abort(); });
  return controller.signal;
}

export class GenerationService {
  constructor(readonly options: GenerationServiceOptions) {}

  get engine(): SteeringEngine {
    return this.options.engine;
  }

  get modelId(): string {
    return this.options.modelId;
  }

  get chatTemplate(): ChatTemplate {
    return this.options.chatTemplate;
  }

  /** The request's `model`, when given, must be this server's. */
  checkModel(model: string | undefined): void {
    if (model !== undefined && model !== this.options.modelId) {
      throw new HttpError(404, `The model \`${model}\` does not exist: this server serves \`${this.options.modelId}\``, "invalid_request_error", "model", "model_not_found");
    }
  }

  /** The engine's steering request for a body's `steering` and the rendered prompt's emphasis. */
  steering(body: SteeringBody | undefined, rendered: RenderedPrompt): SteeringRequest | undefined {
    if (!body) return undefined;
    if (body.auto) throw new HttpError(400, "steering.auto: AutoPASTA is not available on this server yet", "invalid_request_error", "steering.auto", "unsupported");
    return { emphasis: rendered.emphasis, heads: this.heads(body.heads), alpha: body.alpha, mode: body.mode };
  }

  private heads(requested: SteeringBody["heads"]): HeadSelection {
    if (requested !== undefined && typeof requested !== "string") return requested;
    if (requested !== undefined && requested !== DEFAULT_PROFILE_NAME) {
      throw new HttpError(400, `steering.heads: unknown head profile ${JSON.stringify(requested)}; this server has "${DEFAULT_PROFILE_NAME}"`, "invalid_request_error", "steering.heads", "invalid_steering");
    }
    if (!this.options.defaultHeads) {
      throw new HttpError(400, 'steering.heads: this server has no head profile (start it with --profile <file>); pass the heads to steer, e.g. {"2": [0, 3]}', "invalid_request_error", "steering.heads", "invalid_steering");
    }
    return this.options.defaultHeads;
  }

  async generate(endpoint: string, request: FastifyRequest, reply: FastifyReply, input: GenerateRequest): Promise<Generation> {
    const startedAt = performance.now();
    const prepared = this.options.engine.prepare(input, input.maxTokens ?? 256);
    this.logStart(endpoint, request, input, prepared.tokens.length);
    let firstTokenAt: number | undefined;
    let stopped: StopReason | undefined;
    const result = await this.options.scheduler.run(async (signal) => {
      const onText = input.onText;
      const generated = await this.options.engine.generate({
        ...input, signal,
        onText: (text, logprobs) => { firstTokenAt ??= performance.now(); onText?.(text, logprobs); },
      }, prepared);
      if (signal.aborted) stopped = (signal.reason as JobStopped).reason;
      return generated;
    }, { signal: clientGone(reply), timeoutMs: this.options.timeoutMs });

    this.options.metrics.observeGeneration({
      endpoint, steered: input.steering !== undefined, promptTokens: result.promptTokens, completionTokens: result.tokens.length,
      timeToFirstToken: firstTokenAt === undefined ? undefined : (firstTokenAt - startedAt) / 1000,
      generationSeconds: result.timings.generationMs / 1000,
    });
    request.log.info({
      endpoint, promptTokens: result.promptTokens, cachedPromptTokens: result.promptTokens - result.evaluatedPromptTokens,
      completionTokens: result.tokens.length, finishReason: result.finishReason, stopped, promptMs: Math.round(result.timings.promptMs),
      generationMs: Math.round(result.timings.generationMs),
    }, "generation finished");
    return { result, stopped };
  }

  async score(endpoint: string, request: FastifyRequest, reply: FastifyReply, input: ScoreRequest): Promise<ScoreResult> {
    const prepared = this.options.engine.prepare(input, 0);
    this.logStart(endpoint, request, input, prepared.tokens.length);
    const result = await this.options.scheduler.run(async (signal) => {
      const scored = await this.options.engine.score({ ...input, signal }, prepared);
      if (signal.aborted) throw signal.reason;
      return scored;
    }, { signal: clientGone(reply), timeoutMs: this.options.timeoutMs });
    this.options.metrics.observeGeneration({ endpoint, steered: input.steering !== undefined, promptTokens: result.tokens.length, completionTokens: 0, generationSeconds: 0 });
    return result;
  }

  private logStart(endpoint: string, request: FastifyRequest, input: { prompt: string; steering?: SteeringRequest }, promptTokens: number) {
    if (input.steering) this.options.metrics.observeSteeredRequest(endpoint);
    request.log.info({ endpoint, promptTokens, steered: input.steering !== undefined, ...(this.options.logPrompts ? { prompt: input.prompt } : {}) }, "generation requested");
  }
}
