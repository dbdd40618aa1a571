// API keys: `Authorization: Bearer <key>` on every route but the probes and metrics. Keys are
// compared through fixed-length digests with timingSafeEqual, so the time taken reveals nothing
// about a key's content or length.
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { RequestError } from "../errors.js";
import { PLAYGROUND_ROUTES } from "./playground.js";

/** Routes that stay open: orchestrator probes, the Prometheus scrape, the playground's static page. */
export const UNAUTHENTICATED_ROUTES = new Set(["/health", "/ready", "/metrics", ...PLAYGROUND_ROUTES]);

const digest = (key: string) => createHash("sha256").update(key, "utf8").digest();

export function registerApiKeys(app: FastifyInstance, keys: readonly string[]): void {
  if (keys.length === 0) return;
  const digests = keys.map(digest);
  app.addHook("onRequest", async (request) => {
    if (UNAUTHENTICATED_ROUTES.has(request.routeOptions.url ?? "") || request.method === "OPTIONS") return;
    const match = /^Bearer\s+(.+)$/i.exec(request.headers.authorization ?? "");
    if (!match)
      throw new RequestError("missing API key: send Authorization: Bearer <key>", {
        status: 401,
        type: "authentication_error",
        code: "missing_api_key",
      });
    const presented = digest(match[1]!.trim());
    // every key is compared, so which one matched does not show in the timing either
    let ok = false;
    for (const d of digests) ok = timingSafeEqual(d, presented) || ok;
    if (!ok) throw new RequestError("invalid API key", { status: 401, type: "authentication_error", code: "invalid_api_key" });
  });
}
