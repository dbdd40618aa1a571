// `pasta-server profile` end to end on stories260K: the same file from the same seed, what the file
// records (command, model, method, tasks, forward passes, scores), progress on stderr, a bad flag.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import type { HeadSelection } from "../../../src/engine/steering.js";
import { loadHeadProfile } from "../../../src/profiles/headProfile.js";
import { modelFileInfo } from "../../../src/profiles/profileFile.js";
import { runCli } from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";
import { ALPHA, storyTask } from "../../support/profiling.js";

t.test("pasta-server profile", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-profile-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tasks = join(dir, "stories.jsonl");
  writeFileSync(
    tasks,
    storyTask()
      .examples.map((e) => JSON.stringify(e))
      .join("\n"),
  );
  // no time limit of its own: tap's per-file timeout is the limit
  const run = (args: string[]) => runCli(["profile", ...args], {}, 600_000);
  const outputs = [join(dir, "a.json"), join(dir, "b.json")];
  for (const out of outputs) {
    const started = performance.now();
    const res = await run(["--model", STORIES_MODEL, "--tasks", tasks, "--out", out, "--examples", "4", "--seed", "5"]);
    t.equal(res.code, 0, `exit 0 in ${((performance.now() - started) / 1000).toFixed(1)}s${res.code ? `: ${res.stderr}` : ""}`);
    // the defaults: coarse-to-fine, layers ranked on 4 examples (all 4 here), then the kept 2 layers' 8 heads each
    t.match(res.stdout, /forward passes: 88 \(the full per-head search takes 164: 54%\)\n/, "reports its forward passes");
    t.match(res.stdout, /held-out stories \(8 examples\)/, "and the held-out check");
    // the search, the default sweep of 3 k x 2 alpha on the 8 held-out examples (a scored pass each, a
    // greedy one for the 4 best by likelihood, and both unsteered once), then the chosen heads steered on them
    const total = 88 + (6 * 8 + 4 * 8 + 8 * 2) + 8;
    t.match(res.stderr, `100% ${total}/${total} forward passes`, "progress on stderr (periodic lines when not a terminal)");
    t.match(res.stdout, /chosen on the held-out examples among 6 \(k, alpha\) points: top-k \d+, alpha [\d.]+\n/, "the sweep's choice");
  }
  const [a, b] = outputs.map((f) => readFileSync(f, "utf8"));
  // the two runs differ in --out only, which the recorded command names
  const withoutTime = (text: string) => text.replace(/"created_at": "[^"]*"/, "").replace(/"command": "[^"]*"/, "");
  t.equal(withoutTime(b!), withoutTime(a!), "same seed: same file apart from created_at and the command");
  const doc = JSON.parse(a!);
  t.equal(
    doc.command,
    `pasta-server profile --model ${STORIES_MODEL} --tasks ${tasks} --out ${outputs[0]} --examples 4 --seed 5`,
    "the command that made it",
  );
  t.same(loadHeadProfile(outputs[0]!), doc.heads as HeadSelection, "loadHeadProfile reads the heads");
  const info = await modelFileInfo(STORIES_MODEL);
  t.same(doc.model, { ...info, n_layers: 5, heads_per_layer: [8, 8, 8, 8, 8] }, "the model: name, file, sha256, size, shape");
  t.equal(info.sha256, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d", "the model's published sha256");
  t.match(
    doc,
    {
      prompt_format: "raw", // stories260K's GGUF has no chat template
      method: "coarse-to-fine",
      seed: 5,
      tasks: [{ name: "stories", file: tasks, examples: 16, profiling: 4, held_out: 8 }],
      // every point scored, the best 4 also greedy, unsteered scored and greedy, the chosen point's final check
      forward_passes: { used: 88, full_search: 164, held_out: 6 * 8 + 4 * 8 + 8 * 2 + 8 },
      sweep: { grid: { top_k: [4, 8, 16], alpha: [0.01, 0.1] } },
    },
    "what it was made from",
  );
  t.same([doc.top_k, doc.alpha], [doc.sweep.chosen.top_k, doc.sweep.chosen.alpha], "the chosen k and alpha are the profile's");
  const fixed = await run([
    "--model",
    STORIES_MODEL,
    "--tasks",
    tasks,
    "--out",
    join(dir, "fixed.json"),
    "--method",
    "pasta",
    "--examples",
    "all",
    "--seed",
    "5",
    "--alpha",
    String(ALPHA),
    "--top-k",
    "4",
  ]);
  t.equal(fixed.code, 0, fixed.stderr);
  const fixedDoc = JSON.parse(readFileSync(join(dir, "fixed.json"), "utf8"));
  t.match(
    fixedDoc,
    {
      alpha: ALPHA,
      top_k: 4,
      sweep: null,
      method: "pasta",
      tasks: [{ profiling: 8 }],
      // every head on every profiling example, each one unsteered too
      forward_passes: { used: 8 * (40 + 1), full_search: 8 * (40 + 1), held_out: 16 },
    },
    "--top-k and --alpha fixed: no sweep; --method pasta --examples all: the full search on every profiling example",
  );
  t.equal(fixedDoc.scores.stories.heads["0"].length, 8, "the full search: a score per head");
  t.equal(doc.scores.stories.layers.length, 5, "coarse-to-fine: a score per layer");
  t.same(Object.keys(doc.scores.stories.heads).sort(), doc.kept_layers.map(String).sort(), "and head scores in the kept layers only");
  t.ok(!Number.isNaN(Date.parse(doc.created_at)), "created_at");

  const bad = await run(["--model", STORIES_MODEL, "--out", join(dir, "c.json"), "--method", "grid"]);
  t.equal(bad.code, 2, "a bad flag exits 2");
  t.match(bad.stderr, /--method must be pasta or coarse-to-fine/, "and says why");
  const badExamples = await run(["--model", STORIES_MODEL, "--out", join(dir, "e.json"), "--examples", "every"]);
  t.equal(badExamples.code, 2, "--examples other than a count or all exits 2");
  t.match(badExamples.stderr, /--examples must be an integer >= 1 or all, got "every"/);
  const noTemplate = await run(["--model", STORIES_MODEL, "--out", join(dir, "d.json"), "--format", "chat"]);
  t.equal(noTemplate.code, 2, "--format chat on a model without a chat template exits 2");
  t.match(noTemplate.stderr, /has no chat template; profile it with --format raw/);
});
