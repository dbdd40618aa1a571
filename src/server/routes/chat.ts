// POST /v1/chat/completions: OpenAI's chat API. Messages go through the model's chat template;
// emphasis in their contents is moved onto the rendered prompt (src/prompt/prompts.ts).
import { autoContext, SELECTION_INSTRUCTION } from "../../autopasta/autopasta.js";
import { DEFAULT_MAX_TOKENS } from "../../defaults.js";
import type { GeneratedTokenLogprobs, GenerateResult } from "../../engine/engine.js";
import { InvalidRequestError } from "../../errors.js";
import type { ChatMessage, ChatTemplate } from "../../prompt/chatTemplate.js";
import { chatPrompt, type RenderedChat } from "../../prompt/prompts.js";
import type { CompletionFormat } from "../completionReply.js";
import type { CompletionInput } from "../completionService.js";
import { chatCompletionSchema, type ChatCompletionBody } from "../schemas.js";
import { CHAT_KIND, openAIFormat } from "../openaiFormat.js";
import { chatCompletionResponse } from "../responseSchemas.js";
import { responseFormatInput, samplingOptions, withSteeringInput } from "./common.js";
import { completionRoute } from "./completionRoute.js";

type Message = ChatCompletionBody["messages"][number];

/** Text parts of a content array are joined as llama-server does. */
export function contentText(content: Message["content"]): string {
  if (content == null) return "";
  return typeof content === "string" ? content : content.map((part) => part.text).join("\n");
}

const tokenBytes = (text: string) => [...Buffer.from(text, "utf8")];

/** The engine's log-probs in the chat API's shape. */
function chatLogprobs(tokens: GeneratedTokenLogprobs[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: tokenBytes(t.text),
      top_logprobs: t.top.map((alt) => ({ token: alt.text, logprob: alt.logprob, bytes: tokenBytes(alt.text) })),
    })),
    refusal: null,
  };
}

/**
 * AutoPASTA in a chat: the context is what `steering.emphasis` covers, else the last user message;
 * pass 1 renders the same conversation with the instruction appended to the last user message, so
 * the two prompts share everything up to there.
 */
function autoSelection(template: ChatTemplate, messages: ChatMessage[], rendered: RenderedChat): CompletionInput["autoSelection"] {
  const last = messages.map((m) => m.role).lastIndexOf("user");
  const lastSpan = last >= 0 ? rendered.contentSpans[last] : null;
  if (!lastSpan)
    throw new InvalidRequestError("steering.auto needs a user message whose content the chat template keeps as it is", "steering.auto");
  const withInstruction = messages.map((m, i) => ({
    ...m,
    content: rendered.contents[i]! + (i === last ? `\n\n${SELECTION_INSTRUCTION}` : ""),
  }));
  const selection = chatPrompt(template, withInstruction, undefined);
  return { selectionPrompt: { prompt: selection.prompt, specialTokens: true }, context: autoContext(rendered.emphasis, lastSpan) };
}

function chatInput(template: ChatTemplate, body: ChatCompletionBody): CompletionInput {
  const messages = body.messages.map((m) => ({ role: m.role, content: contentText(m.content), ...(m.name ? { name: m.name } : {}) }));
  const rendered = chatPrompt(template, messages, body.steering);
  return {
    endpoint: "chat",
    prompt: rendered,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS,
    sampling: samplingOptions(body),
    ...responseFormatInput(body.response_format),
    ...withSteeringInput(body.steering),
    ...(body.steering?.auto ? { autoSelection: autoSelection(template, messages, rendered) } : {}),
    ...(body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {}),
  };
}

type FinishReason = GenerateResult["finishReason"];
type ChatLogprobs = ReturnType<typeof chatLogprobs> | null;
interface ChatBodyChoice {
  message: { role: "assistant"; content: string; refusal: null };
  logprobs: ChatLogprobs;
  finish_reason: FinishReason;
}
interface ChatChunkChoice {
  delta: { role?: "assistant"; content?: string };
  logprobs: ChatLogprobs;
  finish_reason: FinishReason | null;
}

function chatFormat(modelId: string, body: ChatCompletionBody): CompletionFormat {
  const wantLogprobs = body.logprobs === true;
  const logprobsOf = (tokens: GeneratedTokenLogprobs[] | null | undefined) => (wantLogprobs && tokens ? chatLogprobs(tokens) : null);
  return openAIFormat<ChatBodyChoice, ChatChunkChoice>(CHAT_KIND, modelId, body.stream_options?.include_usage ?? false, {
    body: (g) => ({
      message: { role: "assistant", content: g.result.text, refusal: null },
      logprobs: logprobsOf(g.result.logprobs ?? []),
      finish_reason: g.result.finishReason,
    }),
    first: () => ({ delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }),
    piece: (text, logprobs) => ({ delta: { content: text }, logprobs: logprobsOf(logprobs), finish_reason: null }),
    last: (g) => ({ delta: {}, logprobs: null, finish_reason: g.result.finishReason }),
  });
}

export const chatRoutes = completionRoute({
  url: "/v1/chat/completions",
  body: chatCompletionSchema,
  response: chatCompletionResponse,
  tags: ["openai"],
  summary: "OpenAI chat completions, with steering",
  promptChars: (body) => ({ chars: body.messages.reduce((n, m) => n + contentText(m.content).length, 0), param: "messages" }),
  input: (body, service) => chatInput(service.chatTemplate, body),
  format: (body, service) => chatFormat(service.modelId, body),
});
