// POST /v1/generate: the native endpoint. A plain prompt (no chat template) with emphasis markup.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { autoContext, plainSelectionPrompt } from "../../autopasta/autopasta.js";
import { plainPrompt } from "../../prompt/prompts.js";
import type { Generation } from "../generation.js";
import { respond } from "../respond.js";
import { generateSchema } from "../schemas.js";
import { samplingOptions, type ServiceGetter, usageOf } from "./common.js";

export const generateRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post("/v1/generate", { schema: { body: generateSchema, tags: ["native"], summary: "Generate from a plain prompt with emphasis" } }, async (request, reply) => {
    const service = getService();
    const body = request.body;
    const rendered = plainPrompt(body.prompt, body.steering);
    const usage = (g: Generation) => usageOf(g.result);
    const auto = service.autoPlan(body.steering, plainSelectionPrompt(rendered.prompt),
      autoContext(rendered.prompt, rendered.emphasis, { start: 0, end: rendered.prompt.length }));
    const input = {
      prompt: rendered.prompt, steering: service.steering(body.steering, rendered), maxTokens: body.max_tokens,
      ...samplingOptions(body), ...(body.logprobs > 0 ? { logprobs: body.logprobs } : {}),
    };
    return respond(service, "generate", request, reply, input, auto, body.stream ?? false, {
      body: (g) => ({
        model: service.modelId,
        text: g.result.text,
        finish_reason: g.result.finishReason,
        usage: usage(g),
        ...(g.steering ? { steering: g.steering } : {}),
        ...(g.result.logprobs ? { logprobs: { tokens: g.result.logprobs } } : {}),
      }),
      first: (steering) => ({ text: "", ...(steering ? { steering } : {}) }),
      piece: (text, logprobs) => ({ text, ...(logprobs.length > 0 && body.logprobs > 0 ? { logprobs: { tokens: logprobs } } : {}) }),
      last: (g) => [{ text: "", finish_reason: g.result.finishReason, usage: usage(g) }],
    });
  });
};
