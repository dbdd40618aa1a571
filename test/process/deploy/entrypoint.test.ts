// The image's ENTRYPOINT command (docker/Dockerfile) run against the built dist/, with the image's
// environment, and its HEALTHCHECK command run against it: healthy once /ready is 200, unhealthy
// while loading or draining and when nothing listens. (The Dockerfile itself: test/unit/deploy/dockerfile.test.ts.)
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { postJson } from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";
import {
  distState,
  DOCKERFILE,
  entrypointCommand,
  freePort,
  healthcheckCommand,
  lastStage,
  parseDockerfile,
  stageEnv,
  startEntrypoint,
} from "../../support/deployment.js";

const cpu = parseDockerfile(DOCKERFILE);

t.test("the ENTRYPOINT serves with the image's environment, and the HEALTHCHECK passes against it", async (t) => {
  const dist = distState();
  if (dist.missing) throw new Error(dist.missing);
  if (dist.stale) t.comment(dist.stale);
  const env = Object.fromEntries(
    Object.entries(stageEnv(cpu, lastStage(cpu))).filter(([k]) => !k.startsWith("NODE_LLAMA_CPP_CMAKE_OPTION_")),
  );
  const server = await startEntrypoint(entrypointCommand(cpu), {
    ...env,
    PASTA_MODEL: STORIES_MODEL,
    PASTA_HOST: "127.0.0.1",
    PASTA_PORT: "0",
    PASTA_MODELS_DIR: mkdtempSync(join(tmpdir(), "pasta-models-")),
  });
  t.teardown(() => server.stop());
  const res = await postJson(`${server.base}/v1/completions`, { prompt: "Once upon a time", max_tokens: 4 });
  t.equal(res.status, 200, "it serves");

  const healthcheck = healthcheckCommand(cpu);
  t.equal(healthcheck[0], "node", "the slim image has node, not curl");
  const run = (port: number) =>
    new Promise<number | null>((resolve) => {
      // as Docker runs it in the container: the image's environment, PASTA_PORT the port listened on
      const child = spawn(process.execPath, healthcheck.slice(1), {
        env: { PATH: process.env.PATH, PASTA_PORT: String(port) },
        stdio: "ignore",
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000); // HEALTHCHECK --timeout=5s
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  t.equal(await run(server.port), 0, "healthy once /ready is 200");

  const loading = createServer((req, res) => {
    res.statusCode = req.url === "/ready" ? 503 : 200;
    res.end('{"status":"loading"}');
  });
  await new Promise<void>((r) => loading.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => loading.close(() => r())));
  t.equal(await run((loading.address() as { port: number }).port), 1, "unhealthy while /ready is 503 (loading, draining)");
  t.equal(await run(await freePort()), 1, "unhealthy when nothing listens");
});
