// `serve --profile auto`: the first start profiles the model with the built-in tasks (progress in the
// log, /ready 503 meanwhile) and caches the profile for this model file; the next start reuses it;
// steering requests without heads then use the profile's heads.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadHeadProfileWithModel } from "../../../src/profiles/headProfile.js";
import { modelFileInfo } from "../../../src/profiles/profileFile.js";
import { logLines, request, startServer } from "../../../harness/index.js";
import { unprofiledStoriesModel } from "../../support/models.js";

const modelsDir = mkdtempSync(join(tmpdir(), "pasta-profiles-"));
const env = { PASTA_MODELS_DIR: modelsDir };
// a stories260K that no shipped profile is for: `auto` has to profile it
const MODEL = unprofiledStoriesModel();
const args = ["--model", MODEL, "--profile", "auto", "--ctx-size", "512"];
const messages = (log: string) => logLines(log).map((l) => l.msg as string);

const steer = (base: string) =>
  request(base, "/v1/generate", {
    body: {
      prompt: "Lily had a red ball. Tom had a blue kite.",
      max_tokens: 4,
      temperature: 0,
      steering: { emphasis: ["Tom had a blue kite."] },
    },
  });

t.test("first start profiles and caches; the next start reuses the cache", async (t) => {
  const first = await startServer(args, env, { readyTimeoutMs: 240_000 });
  t.teardown(() => first.stop());
  const log = messages(first.log());
  t.ok(
    log.some((m) => /^head profiling: \d+%$/.test(m)),
    "progress is logged",
  );
  t.ok(log.includes("head profile: written"));
  const sha256 = (await modelFileInfo(MODEL)).sha256;
  const cached = loadHeadProfileWithModel(join(modelsDir, "profiles", `${sha256}.json`));
  t.equal(cached.modelSha256, sha256, "the cached profile names this model file");
  const answer = await steer(first.base);
  t.equal(answer.status, 200, "steering without heads uses the profile");
  t.equal(answer.body.steering.spans[0].text, "Tom had a blue kite.");
  t.equal(await first.stop(), 0);

  const second = await startServer(args, env, { readyTimeoutMs: 60_000 });
  t.teardown(() => second.stop());
  t.ok(messages(second.log()).includes("head profile: cached for this model file"));
  t.notOk(
    messages(second.log()).some((m) => m.startsWith("head profiling")),
    "no profiling the second time",
  );
  t.same((await steer(second.base)).body.text, answer.body.text, "the same heads: the same answer");
});

t.test("without a profile, a steering request without heads is a 400 that says how to get one", async (t) => {
  const server = await startServer(["--model", MODEL]);
  t.teardown(() => server.stop());
  const { status, body } = await steer(server.base);
  t.equal(status, 400);
  t.equal(body.error.param, "steering.heads");
  t.match(body.error.message, /--profile auto/);
});

t.test("the profile shipped for a model file is used without --profile; none turns it off", async (t) => {
  const shipped = await startServer([]);
  t.teardown(() => shipped.stop());
  t.ok(messages(shipped.log()).includes("head profile: shipped for this model file"));
  const answer = await steer(shipped.base);
  t.equal(answer.status, 200, "steering without heads uses profiles/stories260K.json");
  t.equal(answer.body.steering.spans[0].text, "Tom had a blue kite.");

  const off = await startServer(["--profile", "none"]);
  t.teardown(() => off.stop());
  t.equal((await steer(off.base)).status, 400, "--profile none: requests must name their heads");
});

t.test("--profile auto takes the shipped profile instead of profiling", async (t) => {
  const server = await startServer(["--profile", "auto"], { PASTA_MODELS_DIR: mkdtempSync(join(tmpdir(), "pasta-profiles-")) });
  t.teardown(() => server.stop());
  t.ok(messages(server.log()).includes("head profile: shipped for this model file"));
  t.notOk(
    messages(server.log()).some((m) => m.startsWith("head profiling")),
    "no profiling",
  );
  t.equal((await steer(server.base)).status, 200);
});

t.test("a profile's alpha: requests that steer its heads without an alpha get it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-alpha-"));
  const heads = { "2": [0, 3, 5], "3": [1, 6] };
  const file = join(dir, "p.json");
  writeFileSync(file, JSON.stringify({ heads, alpha: 1e-6 }));
  const server = await startServer(["--model", MODEL, "--profile", file, "--ctx-size", "512"]);
  t.teardown(() => server.stop());
  const ask = async (steering: object) => {
    const res = await request(server.base, "/v1/generate", {
      body: {
        prompt: "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the",
        max_tokens: 1,
        temperature: 0,
        logprobs: 3,
        steering,
      },
    });
    t.equal(res.status, 200, JSON.stringify(res.body).slice(0, 200));
    return res.body.logprobs.tokens[0];
  };
  // equal up to float rounding: later requests reuse a cached prefix
  type Dist = { top: Array<{ id: number; logprob: number }> };
  const diff = (a: Dist, b: Dist) =>
    Math.max(...a.top.map((x, i) => (x.id === b.top[i]?.id ? Math.abs(x.logprob - b.top[i]!.logprob) : Number.POSITIVE_INFINITY)));
  const emphasis = ["Tom had a blue kite."];
  const implicit = await ask({ emphasis });
  t.ok(diff(implicit, await ask({ emphasis, alpha: 1e-6 })) < 1e-4, "no alpha: the profile's");
  t.ok(diff(implicit, await ask({ emphasis, heads: "default" })) < 1e-4, "the same when the profile is named");
  t.ok(diff(implicit, await ask({ emphasis, alpha: 0.01 })) > 1e-2, "which is not the default 0.01");
  t.ok(diff(await ask({ emphasis, heads }), await ask({ emphasis, heads, alpha: 0.01 })) < 1e-4, "heads named by the request: alpha 0.01");
});
