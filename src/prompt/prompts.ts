// Request text -> the prompt the engine evaluates, with emphasis resolved (once, here) into
// character spans of that prompt: markup, explicit spans and substrings alike.
// Plain prompts (native /v1/generate, /v1/completions) are used as they are; chat messages go
// through the model's chat template, and each message's emphasis is moved to where its content
// landed in the rendered text.
import { MAX_EMPHASIS_ITEMS } from "../defaults.js";
import { EmphasisError, parseMarkup, resolveEmphasis, type CharSpan, type MarkupKind } from "../emphasis/markup.js";
import type { ChatMessage, ChatTemplate, TemplateTool } from "./chatTemplate.js";

export interface EmphasisRequest {
  markup: MarkupKind;
  emphasis: ReadonlyArray<(CharSpan & { message?: number }) | string>;
}

export interface RenderedPrompt {
  prompt: string;
  /** special-token text in the prompt is parsed (chat templates) */
  specialTokens: boolean;
  /** emphasized character spans of `prompt`, in request order (they may overlap) */
  emphasis: CharSpan[];
}

export interface RenderedChat extends RenderedPrompt {
  /** message contents after markup removal */
  contents: string[];
  /** where each message's content lies in `prompt` (null: the template rewrote it) */
  contentSpans: Array<CharSpan | null>;
}

export function plainPrompt(source: string, steering: EmphasisRequest | undefined): RenderedPrompt {
  if (!steering) return { prompt: source, specialTokens: false, emphasis: [] };
  const { text, spans } = parseMarkup(source, steering.markup, MAX_EMPHASIS_ITEMS - steering.emphasis.length);
  for (const [i, item] of steering.emphasis.entries()) {
    if (typeof item === "object" && item.message !== undefined) {
      throw new EmphasisError(`steering.emphasis[${i}].message only applies to chat requests`, `steering.emphasis.${i}.message`);
    }
  }
  return { prompt: text, specialTokens: false, emphasis: [...spans, ...resolveEmphasis(text, steering.emphasis)] };
}

/**
 * Chat messages rendered by the template. Emphasis objects point into one message's content
 * (`message`, default: the last user message); plain strings are looked up in the contents in order.
 */
export function chatPrompt(
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  steering: EmphasisRequest | undefined,
  tools?: readonly TemplateTool[],
): RenderedChat {
  let budget = MAX_EMPHASIS_ITEMS - (steering?.emphasis.length ?? 0);
  const parsed = messages.map((m) => {
    if (!steering) return { text: m.content, spans: [] };
    const markup = parseMarkup(m.content, steering.markup, budget);
    budget -= markup.spans.length;
    return markup;
  });
  const perMessage: CharSpan[][] = parsed.map((p) => [...p.spans]);
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");

  for (const [i, item] of (steering?.emphasis ?? []).entries()) {
    const param = `steering.emphasis.${i}`;
    if (typeof item === "string") {
      const index = parsed.findIndex((p) => p.text.includes(item));
      if (index < 0) throw new EmphasisError(`${param}: ${JSON.stringify(item.slice(0, 80))} occurs in no message`, param);
      perMessage[index]!.push(...resolveEmphasis(parsed[index]!.text, [item], param));
      continue;
    }
    const index = item.message ?? lastUser;
    if (index < 0 || index >= messages.length) {
      throw new EmphasisError(
        `${param}.message: ${index} is not a message index (the request has ${messages.length} messages)`,
        `${param}.message`,
      );
    }
    perMessage[index]!.push(...resolveEmphasis(parsed[index]!.text, [{ start: item.start, end: item.end }], param));
  }

  const rendered = template.render(
    messages.map((m, i) => ({ ...m, content: parsed[i]!.text })),
    tools,
  );
  const emphasis: CharSpan[] = [];
  perMessage.forEach((spans, index) => {
    if (spans.length === 0) return;
    const placement = rendered.placements[index];
    if (!placement) {
      throw new EmphasisError(
        `message ${index}: the model's chat template rewrites message contents, so emphasis in them cannot be placed exactly; emphasize with /v1/completions on a rendered prompt instead`,
      );
    }
    for (const span of spans) {
      // characters the template dropped (trimmed whitespace) are not in the prompt
      const start = Math.max(span.start - placement.dropped, 0);
      const end = Math.min(span.end - placement.dropped, placement.length);
      if (end <= start)
        throw new EmphasisError(
          `message ${index}: the emphasized characters ${span.start}-${span.end} are whitespace the chat template removes`,
        );
      emphasis.push({ start: placement.start + start, end: placement.start + end });
    }
  });
  const contentSpans = rendered.placements.map((p) => (p ? { start: p.start, end: p.start + p.length } : null));
  return { prompt: rendered.text, specialTokens: true, emphasis, contents: parsed.map((p) => p.text), contentSpans };
}
