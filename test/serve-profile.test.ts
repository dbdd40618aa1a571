// `serve --profile auto`: the first start profiles the model with the built-in tasks (progress in the
// log, /ready 503 meanwhile) and caches the profile for this model file; the next start reuses it;
// steering requests without heads then use the profile's heads.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadHeadProfileWithModel } from "../src/profiles/headProfile.js";
import { modelFileInfo } from "../src/profiles/profileFile.js";
import { STORIES_MODEL } from "./helpers.js";
import { startServer } from "./serverProcess.js";

const modelsDir = mkdtempSync(join(tmpdir(), "pasta-profiles-"));
const env = { PASTA_MODELS_DIR: modelsDir };
const args = ["--profile", "auto", "--ctx-size", "512"];
const messages = (log: string) => log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l).msg as string);

const steer = async (base: string) => {
  const res = await fetch(`${base}/v1/generate`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "Lily had a red ball. Tom had a blue kite.", max_tokens: 4, temperature: 0, steering: { emphasis: ["Tom had a blue kite."] } }),
  });
  return { status: res.status, body: await res.json() as any };
};

t.test("first start profiles and caches; the next start reuses the cache", async (t) => {
  const first = await startServer(args, env, { readyTimeoutMs: 240_000 });
  t.teardown(() => first.stop());
  const log = messages(first.log());
  t.ok(log.some((m) => /^head profiling: \d+%$/.test(m)), "progress is logged");
  t.ok(log.includes("head profile: written"));
  const sha256 = (await modelFileInfo(STORIES_MODEL)).sha256;
  const cached = loadHeadProfileWithModel(join(modelsDir, "profiles", `${sha256}.json`));
  t.equal(cached.modelSha256, sha256, "the cached profile names this model file");
  const answer = await steer(first.base);
  t.equal(answer.status, 200, "steering without heads uses the profile");
  t.equal(answer.body.steering.spans[0].text, "Tom had a blue kite.");
  t.equal(await first.stop(), 0);

  const second = await startServer(args, env, { readyTimeoutMs: 60_000 });
  t.teardown(() => second.stop());
  t.ok(messages(second.log()).includes("head profile: cached for this model file"));
  t.notOk(messages(second.log()).some((m) => m.startsWith("head profiling")), "no profiling the second time");
  t.same((await steer(second.base)).body.text, answer.body.text, "the same heads: the same answer");
});

t.test("without a profile, a steering request without heads is a 400 that says how to get one", async (t) => {
  const server = await startServer([]);
  t.teardown(() => server.stop());
  const { status, body } = await steer(server.base);
  t.equal(status, 400);
  t.equal(body.error.param, "steering.heads");
  t.match(body.error.message, /--profile auto/);
});
