// How well a set of steered heads works on one example: the log-likelihood of the example's target
// right after its context, in one forward pass (teacher forcing, no generation).
import type { Token } from "node-llama-cpp";
import type { CharSpan } from "../emphasis/markup.js";
import type { SteeringEngine } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import type { ChatTemplate } from "../prompt/chatTemplate.js";
import { chatPrompt } from "../prompt/prompts.js";
import { ProfileError } from "./errors.js";
import type { TaskExample } from "./tasks.js";

/** An example as the served model reads it: the prompt, where the target starts, what is emphasized. */
export interface RenderedExample {
  prompt: string;
  /** the prompt holds a chat template's special-token text */
  specialTokens: boolean;
  /** where the target starts in `prompt` */
  boundary: number;
  /** the emphasized part of the context, and the target (see TargetScorer.logLikelihood) */
  emphasis: CharSpan[];
}

/**
 * Raw text (`template` null): context + target. With a chat template, as an instruct model is
 * served: the context is the user's message and the target the start of the assistant's reply
 * (its leading whitespace dropped: a reply starts at its first character).
 */
export function renderExample(example: TaskExample, template: ChatTemplate | null): RenderedExample {
  const start = example.context.indexOf(example.emphasis);
  if (!template) {
    const prompt = example.context + example.target;
    const boundary = example.context.length;
    return {
      prompt,
      specialTokens: false,
      boundary,
      emphasis: [
        { start, end: start + example.emphasis.length },
        { start: boundary, end: prompt.length },
      ],
    };
  }
  const rendered = chatPrompt(template, [{ role: "user", content: example.context }], {
    markup: "none",
    emphasis: [{ start, end: start + example.emphasis.length }],
  });
  const boundary = rendered.prompt.length;
  const prompt = rendered.prompt + example.target.trimStart();
  return {
    prompt,
    specialTokens: rendered.specialTokens,
    boundary,
    emphasis: [...rendered.emphasis, { start: boundary, end: prompt.length }],
  };
}

/** The greedy check generates at most this many tokens: enough for a JSON answer's first value or a sentence. */
export const GREEDY_MAX_TOKENS = 24;

const comparable = (text: string) => text.toLowerCase().replace(/\s+/gu, " ").trim();

interface PreparedExample extends RenderedExample {
  tokens: Token[];
  offsets: Array<[number, number]>;
  /** index of the first token that covers a character of the target */
  targetStart: number;
}

/**
 * Scores examples under steering and counts the forward passes. The unsteered score of each example
 * is computed once and kept. Passes are fast where they can be: up to the engine's `parallel`
 * examples decode in the same batches, each on a sequence that keeps its own prompt cached, so a
 * pass evaluates an example only from its first emphasized token on (what steering changes).
 */
export class TargetScorer {
  /** forward passes so far */
  passes = 0;
  private readonly prepared = new Map<TaskExample, PreparedExample>();
  private readonly unsteered = new Map<TaskExample, number>();

  private readonly alpha: number;
  private readonly onPass: (() => void) | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly template: ChatTemplate | null;

  /** `template`: examples are rendered as the model is served (renderExample); none: raw text */
  constructor(
    private readonly engine: SteeringEngine,
    options: { alpha: number; onPass?: () => void; signal?: AbortSignal; template?: ChatTemplate | null },
  ) {
    this.alpha = options.alpha;
    this.onPass = options.onPass;
    this.signal = options.signal;
    this.template = options.template ?? null;
  }

  /** Mean over the examples of the target log-likelihood (unsteered when heads is null). */
  async mean(examples: readonly TaskExample[], heads: HeadSelection | null, alpha = this.alpha): Promise<number> {
    let sum = 0;
    for (const example of examples) sum += await this.logLikelihood(example, heads, alpha);
    return sum / examples.length;
  }

  /**
   * The share of the examples whose greedy reply begins with the target (what the eval judges is
   * generated text, not likelihood): the context alone, steered with its emphasis, as many tokens
   * as the target has (at most GREEDY_MAX_TOKENS: then the reply must begin with what those first
   * target tokens spell). Compared case-blind with whitespace runs as one space, as the eval reads a
   * JSON value or a rewrite. Up to the engine's `parallel` examples at once.
   */
  async greedyRate(examples: readonly TaskExample[], heads: HeadSelection | null, alpha = this.alpha): Promise<number> {
    let hits = 0;
    for (const group of this.groups(examples)) {
      const outcomes = await Promise.all(group.map((e) => this.greedyHit(e, heads, alpha)));
      hits += outcomes.filter(Boolean).length;
    }
    return hits / examples.length;
  }

  private async greedyHit(example: TaskExample, heads: HeadSelection | null, alpha: number): Promise<boolean> {
    const p = this.prepare(example);
    const prompt = p.prompt.slice(0, p.boundary);
    const tokens = Math.min(p.tokens.length - p.targetStart, GREEDY_MAX_TOKENS);
    if (this.signal?.aborted) throw this.signal.reason;
    const result = await this.engine.generate({
      prompt,
      specialTokens: p.specialTokens,
      maxTokens: tokens,
      temperature: 0,
      // the context's emphasis (the last span is the target, which is not in this prompt)
      ...(heads === null ? {} : { steering: { emphasis: p.emphasis.slice(0, -1), heads, alpha, mode: "exclude" as const } }),
      ...(this.signal ? { signal: this.signal } : {}),
    });
    this.passes++;
    this.onPass?.();
    const whole = p.targetStart + tokens === p.tokens.length;
    const want = comparable(p.prompt.slice(p.boundary, whole ? p.prompt.length : p.offsets[p.targetStart + tokens - 1]![1]));
    const got = comparable(result.text);
    // a word target must end where a word ends: " I" is not the start of "It"
    return got.startsWith(want) && !(whole && /[\p{L}\p{N}]$/u.test(want) && /^[\p{L}\p{N}]/u.test(got.slice(want.length)));
  }

  /**
   * For each head selection, the mean over the examples of (steered - unsteered) target
   * log-likelihood. The work goes group by group, every selection on a group before the next group:
   * each example stays on the sequence that caches it. The sums add up in example order.
   */
  async meanGains(examples: readonly TaskExample[], selections: readonly HeadSelection[], alpha = this.alpha): Promise<number[]> {
    const sums = selections.map(() => 0);
    for (const group of this.groups(examples)) {
      const unsteered = await Promise.all(group.map((e) => this.logLikelihood(e, null)));
      for (const [i, heads] of selections.entries()) {
        const steered = await Promise.all(group.map((e) => this.logLikelihood(e, heads, alpha)));
        for (const [j, value] of steered.entries()) sums[i]! += value - unsteered[j]!;
      }
    }
    return sums.map((sum) => sum / examples.length);
  }

  /**
   * Sum of the log-probs of the target's tokens: every token whose characters end after the context
   * does (a token that straddles the boundary is the one that produces the target's first
   * characters, so it counts). The target itself is emphasized along with the emphasis: in exclude
   * mode its tokens then see each other unbiased, as tokens generated under steering do; the
   * context's last token cannot attend to them, so the first target token is predicted exactly
   * as in generation.
   */
  async logLikelihood(example: TaskExample, heads: HeadSelection | null, alpha = this.alpha): Promise<number> {
    if (heads === null) {
      const cached = this.unsteered.get(example);
      if (cached !== undefined) return cached;
    }
    const p = this.prepare(example);
    const steering =
      heads === null
        ? undefined
        : this.engine.resolveSteering(p.prompt, p.offsets, {
            emphasis: p.emphasis,
            heads,
            alpha,
            mode: "exclude",
          });
    if (this.signal?.aborted) throw this.signal.reason;
    const result = await this.engine.score(
      {
        prompt: p.prompt,
        specialTokens: p.specialTokens,
        topLogprobs: 0,
        scoreFrom: p.targetStart,
        ...(this.signal ? { signal: this.signal } : {}),
      },
      { prompt: p.prompt, tokens: p.tokens, offsets: p.offsets, ...(steering ? { steering } : {}) },
    );
    this.passes++;
    this.onPass?.();
    let sum = 0;
    for (const token of result.tokens.slice(p.targetStart)) sum += token.logprob!;
    if (heads === null) this.unsteered.set(example, sum);
    return sum;
  }

  /** The examples in groups of as many as the engine decodes at once (its `parallel`). */
  private *groups(examples: readonly TaskExample[]): Generator<readonly TaskExample[]> {
    const width = Math.max(1, this.engine.scheduler.parallel);
    for (let at = 0; at < examples.length; at += width) yield examples.slice(at, at + width);
  }

  private prepare(example: TaskExample): PreparedExample {
    const cached = this.prepared.get(example);
    if (cached) return cached;
    const rendered = renderExample(example, this.template);
    const { tokens, offsets } = this.engine.tokenizePrompt(rendered.prompt, rendered.specialTokens);
    if (tokens.length >= this.engine.contextSize) {
      throw new ProfileError(
        `a profiling example is ${tokens.length} tokens, but the context holds ${this.engine.contextSize - 1} (--ctx-size): ${JSON.stringify(example.context.slice(0, 60))}...`,
      );
    }
    const targetStart = offsets.findIndex(([, end]) => end > rendered.boundary);
    // the first token has no log-prob: the target must come after at least one context token
    if (targetStart < 1)
      throw new ProfileError(`the target of ${JSON.stringify(example.context.slice(0, 60))}... is not scored after any context token`);
    const prepared = { ...rendered, tokens, offsets, targetStart };
    this.prepared.set(example, prepared);
    return prepared;
  }
}
