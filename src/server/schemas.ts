// Request schemas of the native API (docs: ../shared/design/api-contract.md).
import { z } from "zod";

const span = z.object({ start: z.number().int().nonnegative(), end: z.number().int().nonnegative() }).strict();

const steeringSchema = z.object({
  emphasis: z.array(z.union([span, z.string().min(1)])).default([]),
  markup: z.enum(["none", "html", "markdown"]).default("none"),
  alpha: z.number().positive().optional(),
  mode: z.enum(["exclude", "include", "generation"]).optional(),
  heads: z.union([z.record(z.string(), z.array(z.number().int())), z.array(z.number().int())]).optional(),
}).strict();

export const generateSchema = z.object({
  prompt: z.string(),
  steering: steeringSchema.optional(),
  max_tokens: z.number().int().min(1).max(32768).default(256),
  temperature: z.number().min(0).max(2).default(1),
  top_p: z.number().gt(0).max(1).default(1),
  top_k: z.number().int().min(0).default(0),
  seed: z.number().int().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(8)]).optional(),
  stream: z.boolean().default(false),
  logprobs: z.number().int().min(0).max(20).default(0),
}).strict();
