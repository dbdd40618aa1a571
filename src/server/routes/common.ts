// Helpers the route modules share.
import { randomBytes } from "node:crypto";
import type { SamplingOptions } from "../../engine/engine.js";
import type { GenerationService } from "../generation.js";

/** The service once the model is loaded; throws a 503 before. */
export type ServiceGetter = () => GenerationService;

interface SamplingFields {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
}

/** OpenAI-style sampling fields -> the engine's (temperature 0: greedy argmax). */
export function samplingOptions(body: SamplingFields): SamplingOptions & { stop?: string[] } {
  return {
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    ...(body.seed != null ? { seed: body.seed } : {}),
    ...(body.stop != null ? { stop: typeof body.stop === "string" ? [body.stop] : body.stop } : {}),
  };
}

/** Response ids in OpenAI's style: a prefix and 24 random characters. */
export function responseId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${randomBytes(18).toString("base64url")}`;
}

export function unixSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** OpenAI's system_fingerprint: which backend configuration produced a response. */
export const SYSTEM_FINGERPRINT = "pasta-server-0.1.0";

/** OpenAI's usage object for a generation. */
export function usageOf(result: { promptTokens: number; evaluatedPromptTokens: number; tokens: readonly unknown[] }) {
  return {
    prompt_tokens: result.promptTokens, completion_tokens: result.tokens.length, total_tokens: result.promptTokens + result.tokens.length,
    // prompt tokens taken from the prefix cache instead of evaluated
    prompt_tokens_details: { cached_tokens: result.promptTokens - result.evaluatedPromptTokens },
  };
}
