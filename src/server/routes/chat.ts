// POST /v1/chat/completions: OpenAI's chat API. Messages go through the model's chat template;
// emphasis in their contents is moved onto the rendered prompt (src/prompt/prompts.ts).
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { GeneratedTokenLogprobs } from "../../engine/engine.js";
import { autoContext, SELECTION_INSTRUCTION } from "../../autopasta/autopasta.js";
import { HttpError } from "../errors.js";
import type { GenerationService } from "../generation.js";
import { chatPrompt, type RenderedChat } from "../../prompt/prompts.js";
import type { Generation } from "../generation.js";
import { respond } from "../respond.js";
import { chatCompletionSchema, type ChatCompletionBody } from "../schemas.js";
import { responseId, samplingOptions, SYSTEM_FINGERPRINT, unixSeconds, type ServiceGetter, usageOf } from "./common.js";

type Message = ChatCompletionBody["messages"][number];

/** Text parts of a content array are joined as llama-server does. */
function contentText(content: Message["content"]): string {
  if (content == null) return "";
  return typeof content === "string" ? content : content.map((part) => part.text).join("\n");
}

const tokenBytes = (text: string) => [...Buffer.from(text, "utf8")];

/** The engine's log-probs in the chat API's shape. */
function chatLogprobs(tokens: GeneratedTokenLogprobs[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text, logprob: t.logprob, bytes: tokenBytes(t.text),
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
function autoPlan(service: GenerationService, body: ChatCompletionBody, messages: Array<{ role: string; content: string }>, rendered: RenderedChat) {
  const last = messages.map((m) => m.role).lastIndexOf("user");
  const lastSpan = last >= 0 ? rendered.contentSpans[last] : null;
  if (!lastSpan) throw new HttpError(400, "steering.auto needs a user message whose content the chat template keeps as it is", "invalid_request_error", "steering.auto");
  const withInstruction = messages.map((m, i) => ({ ...m, content: rendered.contents[i]! + (i === last ? `\n\n${SELECTION_INSTRUCTION}` : "") }));
  const selection = chatPrompt(service.chatTemplate, withInstruction, undefined);
  return service.autoPlan(body.steering, { prompt: selection.prompt, specialTokens: true }, autoContext(rendered.prompt, rendered.emphasis, lastSpan));
}

export const chatRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post("/v1/chat/completions", { schema: { body: chatCompletionSchema, tags: ["openai"], summary: "OpenAI chat completions, with steering" } }, async (request, reply) => {
    const service = getService();
    const body = request.body;
    service.checkModel(body.model);
    const messages = body.messages.map((m) => ({ role: m.role, content: contentText(m.content), ...(m.name ? { name: m.name } : {}) }));
    const rendered = chatPrompt(service.chatTemplate, messages, body.steering);
    const auto = body.steering?.auto ? autoPlan(service, body, messages, rendered) : undefined;
    const wantLogprobs = body.logprobs === true;
    const input = {
      prompt: rendered.prompt, specialTokens: rendered.specialTokens, steering: service.steering(body.steering, rendered),
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? 256, ...samplingOptions(body),
      ...(wantLogprobs ? { logprobs: body.top_logprobs ?? 0 } : {}),
    };
    const id = responseId("chatcmpl");
    const created = unixSeconds();
    const head = { id, created, model: service.modelId, system_fingerprint: SYSTEM_FINGERPRINT };
    const usage = (g: Generation) => usageOf(g.result);
    const chunk = (delta: object, finishReason: string | null, logprobs: GeneratedTokenLogprobs[] | null = null) => ({
      ...head, object: "chat.completion.chunk",
      choices: [{ index: 0, delta, logprobs: logprobs && wantLogprobs ? chatLogprobs(logprobs) : null, finish_reason: finishReason }],
    });

    return respond(service, "chat", request, reply, input, auto, body.stream ?? false, {
      body: (g) => ({
        ...head, object: "chat.completion",
        choices: [{
          index: 0, message: { role: "assistant", content: g.result.text, refusal: null },
          logprobs: wantLogprobs ? chatLogprobs(g.result.logprobs ?? []) : null, finish_reason: g.result.finishReason,
        }],
        usage: usage(g),
        ...(g.steering ? { steering: g.steering } : {}),
      }),
      first: (steering) => ({ ...chunk({ role: "assistant", content: "" }, null), ...(steering ? { steering } : {}) }),
      piece: (text, logprobs) => chunk({ content: text }, null, logprobs),
      last: (g) => [
        chunk({}, g.result.finishReason),
        ...(body.stream_options?.include_usage ? [{ ...head, object: "chat.completion.chunk", choices: [], usage: usage(g) }] : []),
      ],
    });
  });
};
