// Runs eval items under each arm on a loaded engine, as the server would answer them: the item's
// message rendered with the model's chat template (raw text for a model without one), greedy
// decoding, steering through the same engine calls as /v1/chat/completions and /v1/completions.
import {
  plainSelectionPrompt,
  runAutoPasta,
  SELECTION_INSTRUCTION,
  type AutoPastaPlan,
  type UnchosenReason,
} from "../autopasta/autopasta.js";
import { isGoldSentence } from "../autopasta/threshold.js";
import { resolveEmphasis, type CharSpan } from "../emphasis/markup.js";
import type { SteeringEngine, SteeringRequest } from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import type { ChatTemplate } from "../prompt/chatTemplate.js";
import { chatPrompt } from "../prompt/prompts.js";
import type { Arm, ArmName } from "./arms.js";
import type { EvalItem } from "./families.js";

export interface ItemOutcome {
  item: EvalItem;
  arm: ArmName;
  /** summed log-probs of the right and the wrong answer after the item's answer prefix */
  contrast?: { right: number; wrong: number };
  /** the greedy answer and its checks */
  output: string;
  checks: Record<string, boolean>;
  /**
   * AutoPASTA: what pass 1 wrote, whether it ended before its token limit (an unfinished pass 1
   * emphasizes nothing), the sentences emphasized, whether the item's deciding sentence is among
   * them, and, when none was, why
   */
  auto?: { selection: string; finished: boolean; sentences: string[]; gold: boolean; reason?: UnchosenReason };
}

export interface EvalRunOptions {
  alpha: number;
  /** (item, arm) pairs run at once, each on its own sequence */
  parallel?: number;
  onProgress?: (done: number, total: number) => void;
}

interface RenderedItem {
  prompt: string;
  specialTokens: boolean;
  /** where the requested parts of the message are in `prompt` */
  spans: CharSpan[];
}

/** The message as the server would render a one-message chat, with where `parts` landed. */
function render(template: ChatTemplate | null, message: string, parts: string[]): RenderedItem {
  if (!template) {
    const prompt = `${message}\n`;
    return { prompt, specialTokens: false, spans: resolveEmphasis(prompt, parts) };
  }
  const rendered = chatPrompt(
    template,
    [{ role: "user", content: message }],
    parts.length > 0 ? { markup: "none", emphasis: parts } : undefined,
  );
  return { prompt: rendered.prompt, specialTokens: rendered.specialTokens, spans: rendered.emphasis };
}

export class EvalRunner {
  constructor(
    private readonly engine: SteeringEngine,
    private readonly template: ChatTemplate | null,
    private readonly alpha: number,
  ) {}

  async run(item: EvalItem, arm: Arm): Promise<ItemOutcome> {
    if (arm.auto) return this.runAuto(item, arm.heads!);
    const message = arm.markdown ? item.message.replace(item.emphasis, `**${item.emphasis}**`) : item.message;
    const base = render(this.template, message, arm.heads ? [item.emphasis] : []);
    const steering = (extra: CharSpan[] = []): SteeringRequest | undefined =>
      arm.heads
        ? {
            emphasis: [...base.spans, ...extra],
            heads: arm.heads,
            alpha: this.alpha,
            ...(arm.targetShare !== null ? { targetShare: arm.targetShare } : {}),
          }
        : undefined;

    const contrast = item.contrast
      ? {
          right: await this.answerLogprob(base, item.contrast.prefix, item.contrast.right, steering),
          wrong: await this.answerLogprob(base, item.contrast.prefix, item.contrast.wrong, steering),
        }
      : undefined;
    if (arm.schema && !item.schema) throw new Error(`${item.source}: the response_format arms need an item with a schema`);
    const grammar = arm.schema ? this.engine.compileGrammar({ type: "json_schema", schema: item.schema! }) : undefined;
    const { text } = await this.engine.generate({
      prompt: base.prompt,
      specialTokens: base.specialTokens,
      steering: steering(),
      maxTokens: item.maxTokens,
      temperature: 0,
      ...(grammar ? { grammar } : {}),
    });
    return { item, arm: arm.name, ...(contrast ? { contrast } : {}), output: text, checks: item.judge(text) };
  }

  /**
   * Log-likelihood of `answer` as the reply's continuation after `prefix`. The reply (prefix and
   * answer) is emphasized too: in exclude mode it then sees itself unbiased, as generated tokens do.
   */
  private async answerLogprob(
    base: RenderedItem,
    prefix: string,
    answer: string,
    steering: (extra: CharSpan[]) => SteeringRequest | undefined,
  ): Promise<number> {
    const prompt = `${base.prompt}${prefix} ${answer}`;
    const boundary = base.prompt.length + prefix.length;
    const { tokens } = await this.engine.score({
      prompt,
      specialTokens: base.specialTokens,
      topLogprobs: 0,
      steering: steering([{ start: base.prompt.length, end: prompt.length }]),
    });
    let sum = 0;
    tokens.forEach((token, i) => {
      // a token belongs to the answer when its characters end after the prefix
      const end = i + 1 < tokens.length ? tokens[i + 1]!.offset : prompt.length;
      if (end > boundary && token.logprob !== null) sum += token.logprob;
    });
    return sum;
  }

  /** AutoPASTA as /v1/chat/completions runs it with `steering.auto` and the passage emphasized as the context. */
  private async runAuto(item: EvalItem, heads: HeadSelection): Promise<ItemOutcome> {
    if (!item.passage) throw new Error(`${item.source}: AutoPASTA needs an item with a passage`);
    const answer = render(this.template, item.message, [item.passage]);
    // pass 1 as the chat route builds it: the instruction appended to the user's message
    const selection = this.template
      ? render(this.template, `${item.message}\n\n${SELECTION_INSTRUCTION}`, [])
      : plainSelectionPrompt(answer.prompt);
    const selectionPrompt = { prompt: selection.prompt, specialTokens: selection.specialTokens };
    const plan: AutoPastaPlan = { selectionPrompt, context: answer.spans[0]!, steering: { heads, alpha: this.alpha } };
    const {
      result: { text },
      report,
    } = await runAutoPasta(this.engine, plan, {
      prompt: answer.prompt,
      specialTokens: answer.specialTokens,
      maxTokens: item.maxTokens,
      temperature: 0,
    });
    const sentences = report.matched ? report.sentences.map((s) => s.text) : [];
    return {
      item,
      arm: "auto",
      output: text,
      checks: item.judge(text),
      auto: {
        selection: report.selection.text,
        finished: report.selection.finishReason === "stop",
        sentences,
        gold: sentences.some((s) => isGoldSentence(s, item.emphasis)),
        ...(report.reason ? { reason: report.reason } : {}),
      },
    };
  }
}

/**
 * Every (item, arm) pair that applies (AutoPASTA only where an item has a passage, the
 * response_format arms where it has a schema), `parallel` at a time, in item order.
 */
export async function runEval(
  engine: SteeringEngine,
  template: ChatTemplate | null,
  items: readonly EvalItem[],
  arms: readonly Arm[],
  options: EvalRunOptions,
): Promise<ItemOutcome[]> {
  const runner = new EvalRunner(engine, template, options.alpha);
  const applies = (item: EvalItem, arm: Arm) => (!arm.auto || item.passage !== undefined) && (!arm.schema || item.schema !== undefined);
  const jobs = items.flatMap((item) => arms.filter((arm) => applies(item, arm)).map((arm) => ({ item, arm })));
  const outcomes: ItemOutcome[] = new Array(jobs.length);
  let next = 0;
  let done = 0;
  options.onProgress?.(0, jobs.length);
  const worker = async () => {
    while (next < jobs.length) {
      const index = next++;
      outcomes[index] = await runner.run(jobs[index]!.item, jobs[index]!.arm);
      options.onProgress?.(++done, jobs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 1) }, worker));
  return outcomes;
}
