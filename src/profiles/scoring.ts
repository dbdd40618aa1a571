// How well a set of steered heads works on one example: the log-likelihood of the example's target
// right after its context, in one forward pass (teacher forcing, no generation).
import type { Token } from "node-llama-cpp";
import type { SteeringEngine } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import { ProfileError } from "./errors.js";
import type { TaskExample } from "./tasks.js";

interface PreparedExample {
  prompt: string;
  tokens: Token[];
  offsets: Array<[number, number]>;
  /** index of the first token that covers a character of the target */
  targetStart: number;
  /** the emphasized part of the context, and the target (see targetLogLikelihood) */
  emphasis: Array<{ start: number; end: number }>;
}

/**
 * Scores examples under steering and counts the forward passes. The unsteered score of each example
 * is computed once and kept.
 */
export class TargetScorer {
  /** forward passes so far */
  passes = 0;
  private readonly prepared = new Map<TaskExample, PreparedExample>();
  private readonly unsteered = new Map<TaskExample, number>();

  constructor(
    private readonly engine: SteeringEngine,
    private readonly alpha: number,
    private readonly onPass?: () => void,
    private readonly signal?: AbortSignal,
  ) {}

  /** Mean over the examples of the target log-likelihood (unsteered when heads is null). */
  async mean(examples: readonly TaskExample[], heads: HeadSelection | null): Promise<number> {
    let sum = 0;
    for (const example of examples) sum += await this.logLikelihood(example, heads);
    return sum / examples.length;
  }

  /** Mean over the examples of (steered - unsteered) target log-likelihood. */
  async meanGain(examples: readonly TaskExample[], heads: HeadSelection): Promise<number> {
    let sum = 0;
    for (const example of examples) sum += (await this.logLikelihood(example, heads)) - (await this.logLikelihood(example, null));
    return sum / examples.length;
  }

  /**
   * Sum of the log-probs of the target's tokens: every token whose characters end after the context
   * does (a token that straddles the boundary is the one that produces the target's first
   * characters, so it counts). The target itself is emphasized along with the emphasis: in exclude
   * mode its tokens then see each other unbiased, as tokens generated under steering do; the
   * context's last token cannot attend to them, so the first target token is predicted exactly
   * as in generation.
   */
  async logLikelihood(example: TaskExample, heads: HeadSelection | null): Promise<number> {
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
            alpha: this.alpha,
            mode: "exclude",
          });
    if (this.signal?.aborted) throw this.signal.reason;
    const result = await this.engine.score(
      { prompt: p.prompt, topLogprobs: 0, ...(this.signal ? { signal: this.signal } : {}) },
      { prompt: p.prompt, tokens: p.tokens, offsets: p.offsets, ...(steering ? { steering } : {}) },
    );
    this.passes++;
    this.onPass?.();
    let sum = 0;
    for (const token of result.tokens.slice(p.targetStart)) sum += token.logprob!;
    if (heads === null) this.unsteered.set(example, sum);
    return sum;
  }

  private prepare(example: TaskExample): PreparedExample {
    const cached = this.prepared.get(example);
    if (cached) return cached;
    const prompt = example.context + example.target;
    const { tokens, offsets } = this.engine.tokenizePrompt(prompt);
    if (tokens.length >= this.engine.contextSize) {
      throw new ProfileError(
        `a profiling example is ${tokens.length} tokens, but the context holds ${this.engine.contextSize - 1} (--ctx-size): ${JSON.stringify(example.context.slice(0, 60))}...`,
      );
    }
    const boundary = example.context.length;
    const targetStart = offsets.findIndex(([, end]) => end > boundary);
    // the first token has no log-prob: the target must come after at least one context token
    if (targetStart < 1)
      throw new ProfileError(`the target of ${JSON.stringify(example.context.slice(0, 60))}... is not scored after any context token`);
    const start = example.context.indexOf(example.emphasis);
    const prepared = {
      prompt,
      tokens,
      offsets,
      targetStart,
      emphasis: [
        { start, end: start + example.emphasis.length },
        { start: boundary, end: prompt.length },
      ],
    };
    this.prepared.set(example, prepared);
    return prepared;
  }
}
