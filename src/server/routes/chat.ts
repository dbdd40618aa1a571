// POST /v1/chat/completions: OpenAI's chat API. Messages go through the model's chat template;
// emphasis in their contents is moved onto the rendered prompt (src/prompt/prompts.ts).
import { autoContext, SELECTION_INSTRUCTION } from "../../autopasta/autopasta.js";
import { DEFAULT_MAX_TOKENS } from "../../defaults.js";
import type { GeneratedTokenLogprobs, GenerateResult } from "../../engine/engine.js";
import { InvalidRequestError } from "../../errors.js";
import type { ChatMessage, ChatTemplate } from "../../prompt/chatTemplate.js";
import { chatPrompt, type RenderedChat } from "../../prompt/prompts.js";
import { parseToolCalls, ToolCallStream } from "../../prompt/toolCalls.js";
import type { CompletionFormat } from "../completionReply.js";
import type { CompletionInput } from "../completionService.js";
import { chatCompletionSchema, type ChatCompletionBody } from "../schemas.js";
import { CHAT_KIND, openAIFormat } from "../openaiFormat.js";
import { chatCompletionResponse } from "../responseSchemas.js";
import { responseFormatInput, samplingOptions, withSteeringInput } from "./common.js";
import { limitCalls, templateMessage, toolCallsJson, type ToolUse, toolUse } from "./chatTools.js";
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
  const messages = body.messages.map((m, i) => templateMessage(m, i, contentText(m.content)));
  const tools = toolUse(body, template);
  const rendered = chatPrompt(template, messages, body.steering, tools?.tools);
  return {
    endpoint: "chat",
    prompt: rendered,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS,
    // a call's markers may be special tokens of the model (Qwen's <tool_call>): the parser needs their text
    sampling: { ...samplingOptions(body), ...(tools ? { specialTokensInAnswer: true } : {}) },
    ...(tools?.forced ?? responseFormatInput(body.response_format)),
    ...withSteeringInput(body.steering),
    ...(body.steering?.auto ? { autoSelection: autoSelection(template, messages, rendered) } : {}),
    ...(body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {}),
    ...(body.n != null ? { choices: body.n } : {}),
  };
}

type FinishReason = GenerateResult["finishReason"] | "tool_calls";
type ChatLogprobs = ReturnType<typeof chatLogprobs> | null;
interface ChatBodyChoice {
  message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ReturnType<typeof toolCallsJson> };
  logprobs: ChatLogprobs;
  finish_reason: FinishReason;
}
interface ChatChunkChoice {
  delta: { role?: "assistant"; content?: string; tool_calls?: ReturnType<typeof toolCallsJson> };
  logprobs: ChatLogprobs;
  finish_reason: FinishReason | null;
}

function chatFormat(modelId: string, body: ChatCompletionBody, tools: ToolUse | undefined): CompletionFormat {
  const wantLogprobs = body.logprobs === true;
  const logprobsOf = (tokens: GeneratedTokenLogprobs[] | null | undefined) => (wantLogprobs && tokens ? chatLogprobs(tokens) : null);
  // streaming with tools: per choice, content flows until a call may begin (ToolCallStream)
  const streams = new Map<number, ToolCallStream>();
  const streamOf = (index: number, use: ToolUse) =>
    streams.get(index) ?? streams.set(index, new ToolCallStream(use.syntax, use.names)).get(index)!;
  return openAIFormat<ChatBodyChoice, ChatChunkChoice>(CHAT_KIND, modelId, body.stream_options?.include_usage ?? false, {
    body: (result) => {
      const parsed = tools ? limitCalls(parseToolCalls(tools.syntax, result.text, tools.names), tools) : undefined;
      const calls = parsed?.calls.length ? { tool_calls: toolCallsJson(parsed.calls) } : {};
      return {
        message: { role: "assistant", content: parsed ? parsed.content : result.text, refusal: null, ...calls },
        logprobs: logprobsOf(result.logprobs ?? []),
        finish_reason: parsed?.calls.length ? "tool_calls" : result.finishReason,
      };
    },
    first: () => ({ delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }),
    piece: (text, logprobs, index) => {
      const content = tools ? streamOf(index, tools).push(text) : text;
      // held text (a call being written) goes out at the end; its log-probs go now
      if (content === "" && !(wantLogprobs && logprobs.length > 0)) return null;
      return { delta: { content }, logprobs: logprobsOf(logprobs), finish_reason: null };
    },
    last: (result, index) => {
      if (!tools) return { delta: {}, logprobs: null, finish_reason: result.finishReason };
      const rest = limitCalls(streamOf(index, tools).finish(), tools);
      const delta = {
        ...(rest.content ? { content: rest.content } : {}),
        ...(rest.calls.length ? { tool_calls: toolCallsJson(rest.calls, true) } : {}),
      };
      return { delta, logprobs: null, finish_reason: rest.calls.length ? "tool_calls" : result.finishReason };
    },
  });
}

/** What the template renders besides its own text: the contents, the tools and the history's calls (bounded before any rendering). */
function chatChars(body: ChatCompletionBody): number {
  const calls = (m: Message) => (m.tool_calls ?? []).reduce((n, c) => n + c.function.name.length + c.function.arguments.length, 0);
  const tools = body.tools?.length ? JSON.stringify(body.tools).length : 0;
  return body.messages.reduce((n, m) => n + contentText(m.content).length + calls(m), tools);
}

export const chatRoutes = completionRoute({
  url: "/v1/chat/completions",
  body: chatCompletionSchema,
  response: chatCompletionResponse,
  tags: ["openai"],
  summary: "OpenAI chat completions, with steering",
  promptChars: (body) => ({ chars: chatChars(body), param: "messages" }),
  input: (body, service) => chatInput(service.chatTemplate, body),
  format: (body, service) => chatFormat(service.modelId, body, toolUse(body, service.chatTemplate)),
});
