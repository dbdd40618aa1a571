// POST /v1/chat/completions: OpenAI's chat API. Messages go through the model's chat template;
// emphasis in their contents is moved onto the rendered prompt (src/prompt/prompts.ts).
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { autoContext, SELECTION_INSTRUCTION } from "../../autopasta/autopasta.js";
import { DEFAULT_MAX_TOKENS } from "../../defaults.js";
import type { GeneratedTokenLogprobs } from "../../engine/engine.js";
import { InvalidRequestError } from "../../errors.js";
import type { ChatMessage, ChatTemplate } from "../../prompt/chatTemplate.js";
import { chatPrompt, type RenderedChat } from "../../prompt/prompts.js";
import { handleCompletion, type CompletionFormat } from "../completion.js";
import type { CompletionInput, Generation } from "../generation.js";
import { chatCompletionSchema, type ChatCompletionBody } from "../schemas.js";
import {
  checkPromptChars,
  responseFormatInput,
  responseId,
  samplingOptions,
  SYSTEM_FINGERPRINT,
  unixSeconds,
  type ServiceGetter,
  usageOf,
  withDiagnostics,
  withSteering,
} from "./common.js";

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
    ...(body.steering ? { steering: body.steering } : {}),
    ...(body.steering?.auto ? { autoSelection: autoSelection(template, messages, rendered) } : {}),
    ...(body.logprobs === true ? { logprobs: body.top_logprobs ?? 0 } : {}),
  };
}

function chatFormat(modelId: string, body: ChatCompletionBody): CompletionFormat {
  const wantLogprobs = body.logprobs === true;
  const head = { id: responseId("chatcmpl"), created: unixSeconds(), model: modelId, system_fingerprint: SYSTEM_FINGERPRINT };
  const chunk = (delta: object, finishReason: string | null, logprobs: GeneratedTokenLogprobs[] | null = null) => ({
    ...head,
    object: "chat.completion.chunk",
    choices: [{ index: 0, delta, logprobs: logprobs && wantLogprobs ? chatLogprobs(logprobs) : null, finish_reason: finishReason }],
  });
  return {
    body: (g: Generation) => ({
      ...head,
      object: "chat.completion",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: g.result.text, refusal: null },
          logprobs: wantLogprobs ? chatLogprobs(g.result.logprobs ?? []) : null,
          finish_reason: g.result.finishReason,
        },
      ],
      usage: usageOf(g),
      ...withSteering(g.steering),
    }),
    first: (steering) => ({ ...chunk({ role: "assistant", content: "" }, null), ...withSteering(steering) }),
    piece: (text, logprobs) => chunk({ content: text }, null, logprobs),
    last: (g) => [
      { ...chunk({}, g.result.finishReason), ...withDiagnostics(g.steering) },
      ...(body.stream_options?.include_usage ? [{ ...head, object: "chat.completion.chunk", choices: [], usage: usageOf(g) }] : []),
    ],
  };
}

export const chatRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post(
    "/v1/chat/completions",
    { schema: { body: chatCompletionSchema, tags: ["openai"], summary: "OpenAI chat completions, with steering" } },
    async (request, reply) => {
      const service = getService();
      const body = request.body;
      service.checkModel(body.model);
      checkPromptChars(
        service,
        body.messages.reduce((n, m) => n + contentText(m.content).length, 0),
        "messages",
      );
      return handleCompletion(
        service,
        chatInput(service.chatTemplate, body),
        body.stream ?? false,
        chatFormat(service.modelId, body),
        request,
        reply,
      );
    },
  );
};
