// GET /v1/models: the one model this server serves, in OpenAI's list shape.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { ServiceGetter } from "./common.js";

export const modelRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter; startedAt: number }> = async (
  app,
  { service: getService, startedAt },
) => {
  app.get("/v1/models", { schema: { tags: ["openai"], summary: "List the served model" } }, async () => {
    const service = getService();
    return {
      object: "list",
      data: [
        {
          id: service.modelId,
          object: "model",
          created: startedAt,
          owned_by: "pasta-server",
          // llama-server style extras: what a client needs to build steering requests
          meta: {
            context_size: service.modelInfo.contextSize,
            heads_per_layer: service.modelInfo.headsPerLayer,
            steerable: service.modelInfo.steerable,
            // what `steering` without `heads` steers, with which alpha (null: requests must name heads)
            profile: service.modelInfo.profile,
          },
        },
      ],
    };
  });
};
