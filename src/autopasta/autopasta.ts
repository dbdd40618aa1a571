// AutoPASTA (Zhang et al., 2024, "Model Tells Itself Where to Attend"): pass 1 asks the model which
// sentences of the context matter for the request; its answer is mapped back onto the context's own
// sentences (never its paraphrases); pass 2 answers with those sentences emphasized. Pass 1's prompt
// is the request's prompt plus an instruction, so pass 2 reuses its KV cache up to the first
// emphasized token.
import { readFileSync } from "node:fs";
import type { GenerateRequest, GenerateResult, SteeringEngine, SteeringRequest } from "../engine/engine.js";
import { resolveEmphasis, type CharSpan, type EmphasisItem } from "../emphasis/markup.js";
import { matchSentences } from "./sentences.js";

/** The instruction appended for pass 1 (prompts/autopasta-select.txt). */
export const SELECTION_INSTRUCTION = readFileSync(new URL("../../prompts/autopasta-select.txt", import.meta.url), "utf8").trim();

/** Pass 1 quotes a few sentences; more would only cost time. */
const SELECTION_MAX_TOKENS = 160;

export interface AutoPastaPlan {
  /** pass 1's prompt: the request's prompt with the selection instruction */
  selectionPrompt: { prompt: string; specialTokens: boolean };
  /** where the context is in the answering prompt (character offsets) */
  context: { start: number; end: number };
  /** heads, alpha and mode for pass 2 */
  steering: Omit<SteeringRequest, "emphasis">;
}

export interface AutoPastaReport {
  matched: boolean;
  /** the context's sentences that were emphasized, with offsets into the answering prompt */
  sentences: Array<{ text: string; start: number; end: number; score: number }>;
  /** what pass 1 generated, and its cost */
  selection: { text: string; prompt_tokens: number; completion_tokens: number };
}

/**
 * Runs both passes on the engine; `answer` is pass 2's request without steering. `onSelected` gets
 * the report between the passes (a stream announces it before the answer's first token).
 */
export async function runAutoPasta(
  engine: SteeringEngine, plan: AutoPastaPlan, answer: GenerateRequest, signal: AbortSignal, onSelected: (report: AutoPastaReport) => void,
): Promise<GenerateResult> {
  const selection = await engine.generate({ ...plan.selectionPrompt, maxTokens: SELECTION_MAX_TOKENS, temperature: 0, signal });
  const context = answer.prompt.slice(plan.context.start, plan.context.end);
  const match = matchSentences(context, selection.text);
  const sentences = match.sentences.map((s) => ({ ...s, start: s.start + plan.context.start, end: s.end + plan.context.start }));
  const report: AutoPastaReport = {
    matched: match.matched,
    sentences,
    selection: { text: selection.text, prompt_tokens: selection.promptTokens, completion_tokens: selection.tokens.length },
  };
  // nothing matched: the answer is unsteered, and the report says so
  onSelected(report);
  const steering = match.matched ? { ...plan.steering, emphasis: sentences.map(({ start, end }) => ({ start, end })) } : undefined;
  return engine.generate({ ...answer, steering, signal });
}

/** Pass 1 for a plain prompt: the prompt, then the instruction. */
export function plainSelectionPrompt(prompt: string): AutoPastaPlan["selectionPrompt"] {
  return { prompt: `${prompt}\n\n${SELECTION_INSTRUCTION}\n`, specialTokens: false };
}

/**
 * The context AutoPASTA picks sentences from: what the request's emphasis covers (from its first to
 * its last emphasized character), or `fallback` when it marks nothing.
 */
export function autoContext(prompt: string, emphasis: readonly EmphasisItem[], fallback: CharSpan): CharSpan {
  if (emphasis.length === 0) return fallback;
  const spans = resolveEmphasis(prompt, emphasis);
  return { start: Math.min(...spans.map((s) => s.start)), end: Math.max(...spans.map((s) => s.end)) };
}
