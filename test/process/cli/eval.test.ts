// `pasta-server eval` on stories260K: each arm answers exactly as the server answers the same item
// (its numbers are the server's numbers), and the command prints the table, writes the JSON and
// records the summary in the profile. (AutoPASTA's arm in the engine: test/model/eval/runner.test.ts.)
import t from "tap";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { buildArms } from "../../../src/eval/arms.js";
import { familyNamed, loadItems } from "../../../src/eval/families.js";
import { runEval } from "../../../src/eval/runner.js";
import { loadHeadProfile } from "../../../src/profiles/headProfile.js";
import { postOk, PROJECT_ROOT, runCli, startServer } from "../../../harness/index.js";
import { SMOLLM2_MODEL, STORIES_MODEL, unprofiledStoriesModel } from "../../support/models.js";

const PROFILE = join(PROJECT_ROOT, "profiles", "stories260K.json");
const heads = loadHeadProfile(PROFILE);

t.test("every arm's answer and likelihoods are what the server gives for the same request", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512 });
  t.teardown(() => engine.dispose());
  const server = await startServer(["--ctx-size", "512"]);
  t.teardown(() => server.stop());

  const item = loadItems(familyNamed("knowledge_conflict"))[0]!;
  const arms = buildArms(["unsteered", "prompting", "profile", "target_share", "random_heads"], heads, engine.headsPerLayer, 0, 0.7);
  const outcomes = await runEval(engine, null, [item], arms, { alpha: 0.01 });
  t.same(
    outcomes.map((o) => o.arm),
    ["unsteered", "prompting", "profile", "target_share", "random_heads"],
  );

  // stories260K has no chat template: the item is its message and a newline
  const prompt = `${item.message}\n`;
  for (const [i, arm] of arms.entries()) {
    const text = arm.markdown ? prompt.replace(item.emphasis, `**${item.emphasis}**`) : prompt;
    const steering = arm.heads
      ? { emphasis: [item.emphasis], heads: arm.heads, alpha: 0.01, ...(arm.targetShare !== null ? { target_share: arm.targetShare } : {}) }
      : undefined;
    const answer = await postOk(server.base, "/v1/generate", {
      prompt: text,
      max_tokens: item.maxTokens,
      temperature: 0,
      ...(steering ? { steering } : {}),
    });
    t.equal(outcomes[i]!.output, answer.text, `${arm.name}: the greedy answer`);

    // the likelihood of each answer: /v1/completions scores the reply under the same steering
    for (const side of ["right", "wrong"] as const) {
      const reply = `${item.contrast!.prefix} ${item.contrast![side]}`;
      const scored = await postOk(server.base, "/v1/completions", {
        prompt: text + reply,
        max_tokens: 0,
        echo: true,
        logprobs: 0,
        ...(steering
          ? { steering: { ...steering, emphasis: [item.emphasis, { start: text.length, end: text.length + reply.length }] } }
          : {}),
      });
      const { token_logprobs: logprobs, text_offset: offsets } = scored.choices[0].logprobs;
      const boundary = text.length + item.contrast!.prefix.length;
      let sum = 0;
      for (let k = 1; k < logprobs.length; k++) if ((offsets[k + 1] ?? Infinity) > boundary) sum += logprobs[k];
      t.ok(
        Math.abs(outcomes[i]!.contrast![side] - sum) < 1e-4,
        `${arm.name}: log P(${side}) ${outcomes[i]!.contrast![side].toFixed(4)} == server's ${sum.toFixed(4)}`,
      );
    }
  }
});

t.test("the command prints the table, writes the JSON and records the summary in the profile", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-eval-"));
  const profile = join(dir, "profile.json");
  copyFileSync(PROFILE, profile);
  const out = join(dir, "eval.json");
  const run = await runCli(
    [
      "eval",
      "--model",
      STORIES_MODEL,
      "--profile",
      profile,
      "--tasks",
      "knowledge_conflict,pronoun_change",
      "--limit",
      "2",
      "--json",
      out,
      "--record",
    ],
    {},
    240_000,
  );
  t.equal(run.code, 0, run.stderr);
  t.match(
    run.stdout,
    /^\| task \| metric \| items \| unsteered \| `\*\*\.\.\.\*\*` in the text \| profile \| every head \| random heads \| AutoPASTA \| `response_format` \| `response_format` \+ profile \|$/m,
  );
  t.match(
    run.stdout,
    /^\| knowledge conflict \| new fact more likely than the old one \| 2 \| \d+\.\d% \| \d+\.\d% \| \d+\.\d% \| \d+\.\d% \| \d+\.\d% \| – \| – \| – \|$/m,
  );
  t.match(run.stdout, /^\| pronoun change \| greedy rewrite is in the asked person \| 2 \|/m);
  t.match(run.stdout, /command: pasta-server eval --model/);
  t.match(run.stderr, /eval stories260K\.gguf \[#+\] 100% 20\/20 item-arm runs/, "progress on stderr");

  const json = JSON.parse(readFileSync(out, "utf8"));
  t.equal(json.items.length, 20, "2 tasks x 2 items x 5 arms (AutoPASTA only where there is a passage)");
  t.ok(
    json.items.every((i: any) => typeof i.output === "string"),
    "every answer is kept",
  );
  t.equal(json.model.sha256, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
  const recorded = JSON.parse(readFileSync(profile, "utf8"));
  t.same(recorded.heads, heads, "the profile keeps its heads");
  const latest = recorded.eval.at(-1);
  t.same(latest.summary, json.summary, "and carries the run's numbers");
  t.match(latest.command, /^pasta-server eval /);
  t.same(
    [...new Set(recorded.eval[0].summary.map((row: { task: string }) => row.task))],
    ["json_format", "open_book"],
    "the run recorded before keeps the families this one did not measure",
  );
  t.equal(recorded.eval.length, 2);

  const bad = await runCli(["eval", "--model", STORIES_MODEL, "--tasks", "nope"]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown eval task "nope"/);
});

t.test("a cell does not depend on which other arms ran (SmolLM2: every run starts from a cold cache)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-eval-"));
  const profileAnswers = async (arms: string) => {
    const out = join(dir, `${arms}.json`);
    const args = ["eval", "--model", SMOLLM2_MODEL, "--tasks", "json_format", "--limit", "3", "--arms", arms, "--json", out];
    const run = await runCli(args, {}, 240_000);
    t.equal(run.code, 0, run.stderr);
    const items: Array<{ arm: string; output: string }> = JSON.parse(readFileSync(out, "utf8")).items;
    return items.filter((i) => i.arm === "profile").map((i) => i.output);
  };
  const alone = await profileAnswers("profile");
  t.equal(alone.length, 3);
  t.same(await profileAnswers("unsteered,prompting,profile"), alone, "the profile's answers, alone and after two other arms");
});

t.test("a model without a profile: the arms that need none run, the others are refused by name before any work", async (t) => {
  const model = unprofiledStoriesModel();
  const refused = await runCli(["eval", "--model", model, "--tasks", "knowledge_conflict", "--limit", "1"]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /no head profile ships for .*the arms profile, random_heads, auto, schema_profile steer a profile's heads/);
  t.match(refused.stderr, /--arms without them \(unsteered, prompting, all_heads, schema\)/);
  t.notMatch(refused.stderr, /item-arm runs/, "refused before the model is loaded");

  const run = await runCli(
    ["eval", "--model", model, "--tasks", "knowledge_conflict,long_open_book", "--limit", "1", "--arms", "unsteered,prompting,all_heads"],
    {},
    240_000,
  );
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /steering with no head profile/);
  t.match(run.stdout, /^\| task \| metric \| items \| unsteered \| `\*\*\.\.\.\*\*` in the text \| every head \|$/m);
  t.match(run.stdout, /^\| long open-book QA \| greedy answer is right \| 1 \| \d+\.\d% \| \d+\.\d% \| \d+\.\d% \|$/m);

  const record = await runCli(["eval", "--model", model, "--arms", "unsteered", "--record"]);
  t.equal(record.code, 2);
  t.match(record.stderr, /--record writes into the head profile, and there is none/);
});
