// AutoPASTA (Zhang et al., 2024, "Model Tells Itself Where to Attend"): pass 1 asks the model which
// sentences of the context matter for the request; its answer is mapped back onto the context's own
// sentences (never its paraphrases); pass 2 answers with those sentences emphasized. Pass 1's prompt
// is the request's prompt plus an instruction, so pass 2 reuses its KV cache up to the first
// emphasized token.
import { readFileSync } from "node:fs";
import { DEFAULT_MAX_TOKENS } from "../defaults.js";
import type { EngineSession, GenerateRequest, GenerateResult, PreparedPrompt, SteeringEngine, SteeringRequest } from "../engine/engine.js";
import type { CharSpan } from "../emphasis/markup.js";
import { matchSentences, namesMostOfContext, type SentenceMatch } from "./sentences.js";

/** The instruction appended for pass 1 (prompts/autopasta-select.txt). */
export const SELECTION_INSTRUCTION = readFileSync(new URL("../../prompts/autopasta-select.txt", import.meta.url), "utf8").trim();

/**
 * Pass 1 quotes a few sentences; more would only cost time. A pass 1 that is still writing at this
 * limit has not chosen: on long passages the Qwen models copy the passage from its first sentence
 * instead of choosing, and emphasizing that copy steers the answer away from the rest of the passage
 * and from the question, so it is not used (docs/quality.md).
 */
export const SELECTION_MAX_TOKENS = 160;

export interface AutoPastaPlan {
  /** pass 1's prompt: the request's prompt with the selection instruction */
  selectionPrompt: { prompt: string; specialTokens: boolean };
  /** where the context is in the answering prompt (character offsets) */
  context: CharSpan;
  /** heads, alpha and mode for pass 2 */
  steering: Omit<SteeringRequest, "emphasis">;
}

/**
 * Why pass 1 chose nothing (the answer is unsteered): it was still writing at its token limit, its
 * answer names none of the context's sentences, or it names most of them (not a choice).
 */
export type UnchosenReason = "length" | "no_match" | "most_of_context";

export interface AutoPastaReport {
  matched: boolean;
  /** set when matched is false */
  reason?: UnchosenReason;
  /** the context's sentences that were emphasized, with offsets into the answering prompt */
  sentences: Array<{ text: string; start: number; end: number; score: number }>;
  /** how many of the context's sentences pass 1's answer names, of how many it could name */
  named: { sentences: number; of: number };
  /** what pass 1 generated, its cost, and whether it ended ("stop") or ran out of tokens ("length": nothing is emphasized) */
  selection: { text: string; promptTokens: number; completionTokens: number; finishReason: "stop" | "length" };
}

/** Pass 1 on the job's sequence: the model names the sentences, mapped onto the context's own. */
export async function selectSentences(session: EngineSession, plan: AutoPastaPlan, answeringPrompt: string): Promise<AutoPastaReport> {
  const selection = await session.generate({ ...plan.selectionPrompt, maxTokens: SELECTION_MAX_TOKENS, temperature: 0 });
  const report = {
    selection: {
      text: selection.text,
      promptTokens: selection.promptTokens,
      completionTokens: selection.tokens.length,
      finishReason: selection.finishReason,
    },
  };
  const context = answeringPrompt.slice(plan.context.start, plan.context.end);
  const match = matchSentences(context, selection.text);
  const named = { sentences: match.sentences.length, of: match.candidates };
  const reason = unchosenReason(selection.finishReason, match);
  if (reason) return { matched: false, reason, sentences: [], named, ...report };
  return {
    matched: true,
    sentences: match.sentences.map((s) => ({ ...s, start: s.start + plan.context.start, end: s.end + plan.context.start })),
    named,
    ...report,
  };
}

function unchosenReason(finishReason: "stop" | "length", match: SentenceMatch): UnchosenReason | undefined {
  if (finishReason === "length") return "length";
  if (!match.matched) return "no_match";
  if (namesMostOfContext(match)) return "most_of_context";
  return undefined;
}

/** Pass 2's steering: the selected sentences emphasized; nothing matched: unsteered (the report says so). */
export function answerSteering(plan: AutoPastaPlan, report: AutoPastaReport): SteeringRequest | undefined {
  if (!report.matched) return undefined;
  return { ...plan.steering, emphasis: report.sentences.map(({ start, end }) => ({ start, end })) };
}

/**
 * The answering prompt, validated before the job waits for a sequence: as if the whole context were
 * emphasized (pass 2 steers a part of it), tokenized once for both passes' needs.
 */
export function prepareAnswer(engine: SteeringEngine, plan: AutoPastaPlan, answer: GenerateRequest): Promise<PreparedPrompt> {
  return engine.prepare({ ...answer, steering: { ...plan.steering, emphasis: [plan.context] } }, answer.maxTokens ?? DEFAULT_MAX_TOKENS);
}

/**
 * Both passes on the job's sequence. `onSelected` gets the report and pass 2's prepared prompt
 * between the passes (a stream announces the sentences before the answer's first token).
 */
export async function answerWithAutoPasta(
  engine: SteeringEngine,
  session: EngineSession,
  plan: AutoPastaPlan,
  prepared: PreparedPrompt,
  answer: GenerateRequest,
  onSelected?: (report: AutoPastaReport, answering: PreparedPrompt) => void,
): Promise<{ result: GenerateResult; report: AutoPastaReport }> {
  const report = await selectSentences(session, plan, prepared.prompt);
  const answering = engine.withSteering(prepared, answerSteering(plan, report));
  onSelected?.(report, answering);
  return { result: await session.generate(answer, answering), report };
}

/** AutoPASTA in process (eval, bench): one job, both passes. */
export async function runAutoPasta(
  engine: SteeringEngine,
  plan: AutoPastaPlan,
  answer: GenerateRequest,
): Promise<{ result: GenerateResult; report: AutoPastaReport }> {
  const prepared = await prepareAnswer(engine, plan, answer);
  return engine.withSequence((session) => answerWithAutoPasta(engine, session, plan, prepared, answer), { signal: answer.signal });
}

/** Pass 1 for a plain prompt: the prompt, then the instruction. */
export function plainSelectionPrompt(prompt: string): AutoPastaPlan["selectionPrompt"] {
  return { prompt: `${prompt}\n\n${SELECTION_INSTRUCTION}\n`, specialTokens: false };
}

/**
 * The context AutoPASTA picks sentences from: what the request's emphasis covers (from its first to
 * its last emphasized character), or `fallback` when it marks nothing.
 */
export function autoContext(emphasis: readonly CharSpan[], fallback: CharSpan): CharSpan {
  if (emphasis.length === 0) return fallback;
  // a reduce, not a spread: the number of spans is the client's
  return emphasis.reduce((all, s) => ({ start: Math.min(all.start, s.start), end: Math.max(all.end, s.end) }));
}
