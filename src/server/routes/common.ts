// What the endpoint modules share: OpenAI's sampling fields -> the engine's, and the API's shapes
// of usage and steering (snake_case lives in src/server/ only).
import { randomBytes } from "node:crypto";
import { API_DEFAULT_TEMPERATURE, DEFAULT_REPEAT_LAST_N, MAX_PROMPT_CHARS_PER_TOKEN } from "../../defaults.js";
import type { AttentionDiagnostics, SamplingOptions } from "../../engine/engine.js";
import { ContextLengthError } from "../../engine/errors.js";
import type {
  CompletionInput,
  CompletionSampling,
  CompletionService,
  Generation,
  ResponseSteering,
  SteeringInput,
} from "../completionService.js";
import type { ResponseFormatBody, SteeringBody } from "../schemas.js";

export { SYSTEM_FINGERPRINT } from "../../defaults.js";

/** The service once the model is loaded; throws a 503 before. */
export type ServiceGetter = () => CompletionService;

interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  repeat_penalty?: number | null;
  repeat_last_n?: number | null;
  logit_bias?: Record<string, number> | null;
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  stop?: string | string[] | null;
}

/**
 * Text that cannot fit the context, refused before any work per character (tokenization, markup,
 * emphasis lookup): more than MAX_PROMPT_CHARS_PER_TOKEN characters per context token.
 */
export function checkPromptChars(service: CompletionService, chars: number, param: string): void {
  const { contextSize } = service.modelInfo;
  const max = contextSize * MAX_PROMPT_CHARS_PER_TOKEN;
  if (chars > max)
    throw new ContextLengthError(
      `${param} is ${chars} characters, more than a context of ${contextSize} tokens can hold (at most ${max}: ${MAX_PROMPT_CHARS_PER_TOKEN} per token)`,
      param,
    );
}

/** OpenAI-style sampling fields -> the engine's (temperature 0: greedy argmax). */
export function samplingOptions(body: SamplingFields): CompletionSampling {
  return {
    temperature: body.temperature ?? API_DEFAULT_TEMPERATURE,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    ...(body.min_p ? { minP: body.min_p } : {}),
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...penaltiesOf(body),
    ...(body.logit_bias ? { logitBias: logitBiasOf(body.logit_bias) } : {}),
    ...(body.ignore_eos ? { ignoreEos: true } : {}),
    ...(body.min_tokens ? { minTokens: body.min_tokens } : {}),
    ...(body.stop != null ? { stop: typeof body.stop === "string" ? [body.stop] : body.stop } : {}),
  };
}

/** `{penalties}` when any penalty is on (llama-server's semantics: one window over prompt and answer). */
function penaltiesOf(body: SamplingFields): Pick<SamplingOptions, "penalties"> {
  const repeat = body.repetition_penalty ?? body.repeat_penalty ?? 1;
  const presence = body.presence_penalty ?? 0;
  const frequency = body.frequency_penalty ?? 0;
  if (repeat === 1 && presence === 0 && frequency === 0) return {};
  return { penalties: { repeat, presence, frequency, lastTokens: body.repeat_last_n ?? DEFAULT_REPEAT_LAST_N } };
}

/** OpenAI's logit_bias: -100 bans the token (as OpenAI documents it), any other value is added to its logit. */
function logitBiasOf(bias: Record<string, number>): SamplingOptions["logitBias"] {
  return Object.entries(bias).map(([token, value]) => [Number(token), value <= -100 ? Number.NEGATIVE_INFINITY : value] as const);
}

/** The body's `steering` -> the service's (its emphasis is resolved into the prompt, src/prompt/). */
function steeringInput(body: SteeringBody): SteeringInput {
  const diagnostics = body.diagnostics === true ? {} : body.diagnostics || undefined;
  return {
    auto: body.auto,
    ...(body.markup !== "none" && body.emphasis.length === 0 ? { markupOnly: true } : {}),
    ...(body.heads !== undefined ? { heads: body.heads } : {}),
    ...(body.alpha !== undefined ? { alpha: body.alpha } : {}),
    ...(body.mode !== undefined ? { mode: body.mode } : {}),
    ...(body.target_share !== undefined ? { targetShare: body.target_share } : {}),
    ...(diagnostics ? { diagnostics: { allHeads: diagnostics.all_heads ?? false, everyToken: diagnostics.every_token ?? false } } : {}),
  };
}

/** `{steering}` of a CompletionInput, to spread into it, or nothing for an unsteered request. */
export const withSteeringInput = (body: SteeringBody | undefined) => (body ? { steering: steeringInput(body) } : {});

/** OpenAI's `response_format` -> CompletionInput's structured output (`text`: none), to spread into it. */
export function responseFormatInput(format: ResponseFormatBody): Pick<CompletionInput, "output"> {
  if (!format || format.type === "text") return {};
  const param = "response_format";
  if (format.type === "json_object") return { output: { constraint: { type: "json_object" }, param } };
  // OpenAI's default for a json_schema format without a schema: any JSON object
  const schema = format.json_schema.schema;
  return { output: { constraint: schema ? { type: "json_schema", schema } : { type: "json_object" }, param } };
}

/** Response ids in OpenAI's style: a prefix and 24 random characters. */
export function responseId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${randomBytes(18).toString("base64url")}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** OpenAI's usage object for a generation: the prompt counted once, whatever the number of choices. */
export function usageOf({ choices }: Generation) {
  const first = choices[0]!;
  const completionTokens = choices.reduce((n, c) => n + c.tokens.length, 0);
  return {
    prompt_tokens: first.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: first.promptTokens + completionTokens,
    // prompt tokens taken from the prefix cache instead of evaluated
    prompt_tokens_details: { cached_tokens: first.promptTokens - first.evaluatedPromptTokens },
  };
}

/** A response's `steering` field (docs/api.md): the emphasized spans, AutoPASTA's report, attention diagnostics. */
export function steeringJson(steering: ResponseSteering) {
  const spans = steering.spans.map((s) => ({ start: s.start, end: s.end, text: s.text, token_start: s.tokenStart, token_end: s.tokenEnd }));
  return { spans, ...autoJson(steering.auto), ...diagnosticsJson(steering.diagnostics) };
}

function autoJson(auto: ResponseSteering["auto"]) {
  if (!auto) return {};
  const { matched, reason, sentences, named, selection } = auto;
  return {
    auto: {
      matched,
      ...(reason ? { reason } : {}),
      sentences,
      named_sentences: named.sentences,
      context_sentences: named.of,
      selection: {
        text: selection.text,
        prompt_tokens: selection.promptTokens,
        completion_tokens: selection.completionTokens,
        finish_reason: selection.finishReason,
      },
    },
  };
}

/** `{diagnostics}` (known once generation ends: the body, or a stream's finishing chunk), or nothing. */
export function diagnosticsJson(diagnostics: AttentionDiagnostics | undefined) {
  if (!diagnostics) return {};
  return {
    diagnostics: {
      tokens: diagnostics.tokens.map((heads) => ({
        heads: heads.map((h) => ({
          layer: h.layer,
          head: h.head,
          steered_head: h.steeredHead,
          share_steered: h.steered,
          share_unsteered: h.unsteered,
        })),
      })),
    },
  };
}

/** A stream's finishing chunk carries what only the end knows: the diagnostics. */
export const withDiagnostics = (steering: ResponseSteering | undefined) =>
  steering?.diagnostics ? { steering: diagnosticsJson(steering.diagnostics) } : {};

/** `{steering}` to spread into a body or first chunk, or nothing for an unsteered request. */
export const withSteering = (steering: ResponseSteering | undefined) => (steering ? { steering: steeringJson(steering) } : {});
