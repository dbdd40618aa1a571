// What every generation endpoint shares: the request's steering resolved against the server's head
// profile, validation before queueing, a sequence from the scheduler with the client's disconnect
// and the time limit wired to the engine, and the metrics of the result.
import type { FastifyReply, FastifyRequest } from "fastify";
import { runAutoPasta, type AutoPastaPlan, type AutoPastaReport } from "../autopasta/autopasta.js";
import type { GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, SteeredSpan, SteeringEngine, SteeringRequest } from "../engine/engine.js";
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

/** `steering` of a response: the emphasized spans, and AutoPASTA's report when it chose them. */
export interface ResponseSteering {
  spans: SteeredSpan[];
  auto?: AutoPastaReport;
}

export interface Generation {
  result: GenerateResult;
  steering?: ResponseSteering;
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
    if (!body || body.auto) return undefined;
    return { emphasis: rendered.emphasis, heads: this.heads(body.heads), alpha: body.alpha, mode: body.mode };
  }

  /** AutoPASTA's plan for a body with `steering.auto`, else undefined. */
  autoPlan(body: SteeringBody | undefined, selectionPrompt: AutoPastaPlan["selectionPrompt"], context: AutoPastaPlan["context"]): AutoPastaPlan | undefined {
    if (!body?.auto) return undefined;
    if (context.end <= context.start) throw new HttpError(400, "steering.auto: the context to pick sentences from is empty", "invalid_request_error", "steering.auto", "invalid_steering");
    return { selectionPrompt, context, steering: { heads: this.heads(body.heads), alpha: body.alpha, mode: body.mode } };
  }

  private heads(requested: SteeringBody["heads"]): HeadSelection {
    if (requested !== undefined && typeof requested !== "string") return requested;
    if (requested !== undefined && requested !== DEFAULT_PROFILE_NAME) {
      throw new HttpError(400, `steering.heads: unknown head profile ${JSON.stringify(requested)}; this server has "${DEFAULT_PROFILE_NAME}"`, "invalid_request_error", "steering.heads", "invalid_steering");
    }
    if (!this.options.defaultHeads) {
      throw new HttpError(400, 'steering.heads: this server has no head profile: pass the heads to steer, e.g. {"2": [0, 3]}, or restart it with --profile auto (profiles the model at start) or --profile <file> (made by "pasta-server profile")', "invalid_request_error", "steering.heads", "invalid_steering");
    }
    return this.options.defaultHeads;
  }

  /** One generation; with `auto`, AutoPASTA's two passes in one scheduler slot. */
  async generate(endpoint: string, request: FastifyRequest, reply: FastifyReply, input: GenerateRequest, auto?: AutoPastaPlan): Promise<Generation> {
    const startedAt = performance.now();
    // refuse what can be refused before waiting: for AutoPASTA, as if the whole context were emphasized
    const check = auto ? { ...input, steering: { ...auto.steering, emphasis: [auto.context] } } : input;
    const prepared = this.options.engine.prepare(check, input.maxTokens ?? 256);
    this.logStart(endpoint, request, check, prepared.tokens.length);
    let firstTokenAt: number | undefined;
    let stopped: StopReason | undefined;
    let report: AutoPastaReport | undefined;
    const { onText, onPrompt } = input;
    const answer: GenerateRequest = {
      ...input,
      onText: (text, logprobs) => { firstTokenAt ??= performance.now(); onText?.(text, logprobs); },
      onPrompt: (prompt) => onPrompt?.({ ...prompt, steering: responseSteering(prompt.steering, report) }),
    };
    const result = await this.options.scheduler.run(async (signal) => {
      let generated: GenerateResult;
      if (auto) generated = await runAutoPasta(this.options.engine, auto, answer, signal, (selected) => { report = selected; });
      else generated = await this.options.engine.generate({ ...answer, signal }, prepared);
      if (signal.aborted) stopped = (signal.reason as JobStopped).reason;
      return generated;
    }, { signal: clientGone(reply), timeoutMs: this.options.timeoutMs });

    this.options.metrics.observeGeneration({
      endpoint, steered: result.steering !== undefined, promptTokens: result.promptTokens, completionTokens: result.tokens.length,
      timeToFirstToken: firstTokenAt === undefined ? undefined : (firstTokenAt - startedAt) / 1000,
      generationSeconds: result.timings.generationMs / 1000,
    });
    request.log.info({
      endpoint, promptTokens: result.promptTokens, cachedPromptTokens: result.promptTokens - result.evaluatedPromptTokens,
      completionTokens: result.tokens.length, finishReason: result.finishReason, stopped, promptMs: Math.round(result.timings.promptMs),
      generationMs: Math.round(result.timings.generationMs),
    }, "generation finished");
    const steering = responseSteering(result.steering, report);
    return { result, stopped, ...(steering ? { steering } : {}) };
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

function responseSteering(engineSteering: { spans: SteeredSpan[] } | undefined, auto: AutoPastaReport | undefined): ResponseSteering | undefined {
  if (auto) return { spans: engineSteering?.spans ?? [], auto };
  return engineSteering;
}
