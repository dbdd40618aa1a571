// Generated tokens -> the text a client may see so far: incremental detokenization (only the new
// tokens, with a few before them as context), stop strings (the text ends before the first one), and
// hold-back of a tail that begins a stop string (it may still grow into one) or is an unfinished UTF-8
// character.
import type { Token } from "node-llama-cpp";
import type { GeneratedTokenLogprobs } from "./types.js";

/** Tokens before the new ones that detokenization sees, so that a word-initial space survives. */
const DETOKENIZE_CONTEXT = 8;

/** The text of `tokens` as it reads after `context` (llama.cpp's detokenizer: LlamaModel.detokenize, special tokens as nothing). */
export type Detokenize = (tokens: readonly Token[], context: readonly Token[]) => string;

export class TextAssembler {
  readonly tokens: Token[] = [];
  readonly logprobs: GeneratedTokenLogprobs[] = [];
  private text = "";
  /** text of tokens[0, settledTokens): it ends on a whole character */
  private settledText = "";
  private settledTokens = 0;
  private emitted = 0;
  private emittedLogprobs = 0;
  private readonly promptTail: readonly Token[];

  /**
   * `promptTokens`: the prompt, whose last tokens are the context of the first generated ones: a word-initial
   * first token keeps its leading space, as llama-server keeps it (a tokenizer drops it at a text's start).
   */
  constructor(
    private readonly detokenize: Detokenize,
    private readonly stop: readonly string[],
    promptTokens: readonly Token[] = [],
  ) {
    this.promptTail = promptTokens.slice(-DETOKENIZE_CONTEXT);
  }

  /** Characters at the end of the text that could still grow into a stop string: the longest tail that begins one (as llama-server holds back). */
  private partialStop(): number {
    let longest = 0;
    const last = this.text.charCodeAt(this.text.length - 1);
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, this.text.length); k > longest; k--) {
        // per token: compare the last character before building a prefix to compare
        if (s.charCodeAt(k - 1) === last && this.text.endsWith(s.slice(0, k))) {
          longest = k;
          break;
        }
      }
    }
    return longest;
  }

  /** The tokens before the unsettled ones, at most DETOKENIZE_CONTEXT, reaching back into the prompt. */
  private context(): Token[] {
    const generated = this.tokens.slice(Math.max(0, this.settledTokens - DETOKENIZE_CONTEXT), this.settledTokens);
    if (generated.length >= DETOKENIZE_CONTEXT) return generated;
    return [...this.promptTail.slice(-(DETOKENIZE_CONTEXT - generated.length)), ...generated];
  }

  /** Takes one sampled token (and its log-probs); false once a stop string has ended the text. */
  accept(token: Token, logprobs: GeneratedTokenLogprobs | undefined): boolean {
    this.tokens.push(token);
    if (logprobs) this.logprobs.push(logprobs);
    const tail = this.detokenize(this.tokens.slice(this.settledTokens), this.context());
    this.text = this.settledText + tail;
    if (!tail.endsWith("\uFFFD")) {
      this.settledText = this.text;
      this.settledTokens = this.tokens.length;
    }
    if (this.stop.length === 0) return true;
    const hits = this.stop.map((s) => this.text.indexOf(s, Math.max(0, this.emitted - s.length))).filter((i) => i >= 0);
    if (hits.length === 0) return true;
    this.text = this.text.slice(0, Math.min(...hits));
    return false;
  }

  /** The text that became final since the last call, with the log-probs completed since; null if none. */
  takeFinal(): { text: string; logprobs: GeneratedTokenLogprobs[] } | null {
    const safe = Math.min(this.settledText.length, this.text.length - this.partialStop());
    if (safe <= this.emitted) return null;
    return this.take(safe);
  }

  /** Everything not yet taken, at the end of generation; null if nothing is left. */
  takeRest(): { text: string; logprobs: GeneratedTokenLogprobs[] } | null {
    if (this.text.length <= this.emitted && this.logprobs.length <= this.emittedLogprobs) return null;
    return this.take(this.text.length);
  }

  /** The whole text, stop string excluded. */
  get fullText(): string {
    return this.text;
  }

  private take(until: number) {
    const piece = { text: this.text.slice(this.emitted, until), logprobs: this.logprobs.slice(this.emittedLogprobs) };
    this.emitted = until;
    this.emittedLogprobs = this.logprobs.length;
    return piece;
  }
}
