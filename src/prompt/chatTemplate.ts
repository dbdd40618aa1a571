// The model's own chat template (Jinja, from the GGUF's tokenizer.chat_template), rendered with an
// exact map from each message's content to its characters in the rendered prompt, so that emphasis
// inside a message lands on the right tokens.
import { randomBytes } from "node:crypto";
import { Template } from "@huggingface/jinja";
import { InvalidRequestError } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
  /** an assistant's calls; arguments as objects (templates write them with `tojson`, as Hugging Face's do) */
  tool_calls?: TemplateToolCall[];
  /** a tool message: the call it answers */
  tool_call_id?: string;
}

export interface TemplateToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: Record<string, unknown> };
}

/** A tool as templates receive it: OpenAI's `{"type": "function", "function": {name, description, parameters}}`. */
export type TemplateTool = { type: "function"; function: { name: string; description?: string; parameters?: Record<string, unknown> } };

/** Used when the GGUF carries no template, as llama-server does. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** The template failed on these messages (e.g. roles that must alternate). */
export class ChatTemplateError extends InvalidRequestError {
  override name = "ChatTemplateError";
  constructor(message: string) {
    super(message, "messages", "invalid_messages");
  }
}

/** Where a message's content sits in the rendered prompt. */
interface ContentPlacement {
  /** start of the content's kept characters in the rendered text */
  start: number;
  /** characters the template dropped from the content's start (e.g. `| trim`) */
  dropped: number;
  /** characters kept */
  length: number;
}

export interface RenderedChat {
  text: string;
  /** per message; null when the template rewrites contents beyond trimming */
  placements: Array<ContentPlacement | null>;
}

/**
 * Markers that stand in for message contents while the template renders: private-use characters
 * (a template has no reason to alter them) around a random nonce, so that no client can send them
 * (a fixed character could be sent, and made every chat emphasis a 400).
 */
function contentMarkers(messages: readonly ChatMessage[]): { open: string; close: string } {
  for (;;) {
    const nonce = randomBytes(8).toString("hex");
    const [open, close] = [`\uE000${nonce}:`, `:${nonce}\uE001`];
    if (!messages.some((m) => m.content.includes(nonce))) return { open, close };
  }
}

type ContentTransform = (content: string) => { kept: string; dropped: number };
const TRANSFORMS: ContentTransform[] = [
  (c) => ({ kept: c, dropped: 0 }),
  (c) => {
    const kept = c.trim();
    return { kept, dropped: kept.length === 0 ? 0 : c.indexOf(kept) };
  },
];

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly specialTokens: { bos_token: string; eos_token: string },
  ) {
    this.template = new Template(source);
  }

  private renderRaw(messages: readonly ChatMessage[], tools?: readonly TemplateTool[]): string {
    try {
      return this.template.render({ messages, add_generation_prompt: true, ...this.specialTokens, ...(tools ? { tools } : {}) });
    } catch (err) {
      throw new ChatTemplateError(`the model's chat template cannot render these messages: ${(err as Error).message}`);
    }
  }

  /**
   * Whether the template shows the model its tools: a conversation rendered with a tool must
   * mention the tool's name (SmolLM2's template, like any without a tools section, drops them).
   */
  get rendersTools(): boolean {
    this.toolSupport ??= (() => {
      const probe = "pasta_probe_tool_7f3a";
      const tools: TemplateTool[] = [
        { type: "function", function: { name: probe, description: "probe", parameters: { type: "object", properties: {} } } },
      ];
      try {
        return this.renderRaw([{ role: "user", content: "hi" }], tools).includes(probe);
      } catch {
        return false;
      }
    })();
    return this.toolSupport;
  }
  private toolSupport?: boolean;

  render(messages: readonly ChatMessage[], tools?: readonly TemplateTool[]): RenderedChat {
    const text = this.renderRaw(messages, tools);
    const unmapped = { text, placements: messages.map(() => null) };

    // Render with a marker in place of each content, then put the contents back: when that
    // reproduces the real rendering, each content's position is known exactly. Failing that, again
    // with empty contents left empty: a template may test them (Qwen's `{% if message.content %}`
    // before an assistant's calls), and an empty content holds no emphasis anyway.
    const { open, close } = contentMarkers(messages);
    for (const markEmpty of [true, false]) {
      const marked = this.renderRaw(
        messages.map((m, i) => (m.content === "" && !markEmpty ? m : { ...m, content: `${open}${i}${close}` })),
        tools,
      );
      const pieces = marked.split(new RegExp(`${open}(\\d+)${close}`));
      for (const transform of TRANSFORMS) {
        let rebuilt = pieces[0]!;
        const placements: Array<ContentPlacement | null> = messages.map(() => null);
        for (let p = 1; p < pieces.length; p += 2) {
          const index = Number(pieces[p]);
          const { kept, dropped } = transform(messages[index]!.content);
          if (placements[index] === null) placements[index] = { start: rebuilt.length, dropped, length: kept.length };
          rebuilt += kept + pieces[p + 1]!;
        }
        if (rebuilt === text) return { text, placements };
      }
    }
    return unmapped;
  }
}
