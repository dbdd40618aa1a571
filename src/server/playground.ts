// GET /playground: a page to try steering in a browser (playground/ in the package: plain HTML, CSS
// and JavaScript, no build step, nothing fetched from elsewhere). The page is static and open; the
// API calls it makes carry the API key the user types in, like any other client's.
import { join } from "node:path";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";
import { PACKAGE_ROOT } from "../util/packageRoot.js";

export const PLAYGROUND_ROOT = join(PACKAGE_ROOT, "playground");

/** Routes the playground serves without an API key (auth.ts): the page and its assets. */
export const PLAYGROUND_ROUTES = ["/playground", "/playground/", "/playground/*"];

export async function registerPlayground(app: FastifyInstance): Promise<void> {
  await app.register(fastifyStatic, {
    root: PLAYGROUND_ROOT,
    prefix: "/playground/",
    schemaHide: true,
    // the page may talk to this server only: no script, style or connection elsewhere
    setHeaders: (res) => {
      res.header("content-security-policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
      res.header("x-content-type-options", "nosniff");
    },
  });
  app.get("/playground", { schema: { hide: true } }, async (_request, reply) => reply.redirect("/playground/", 302));
}
