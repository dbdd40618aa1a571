// Head profiling (src/profiles/): task files, how rankings combine, target scoring, both search
// strategies on stories260K and on a generated llama, held-out checks of the chosen heads, and the
// `profile` command end to end.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { SteeringEngine } from "../src/engine/engine.js";
import type { HeadSelection } from "../src/engine/steering.js";
import { loadHeadProfile, loadHeadProfileWithModel, parseHeadProfile } from "../src/profiles/headProfile.js";
import { formatProfile, modelFileInfo, profileDocument } from "../src/profiles/profileFile.js";
import { profileHeads, type ProfileResult } from "../src/profiles/profiler.js";
import { seededRandom } from "../src/util/random.js";
import { TargetScorer } from "../src/profiles/scoring.js";
import { combineRankings } from "../src/profiles/search.js";
import { loadBuiltinTasks, loadTasks, parseTaskExamples, splitExamples, TaskFileError, type Task, type TaskExample } from "../src/profiles/tasks.js";
import { STORIES_MODEL, tinyModel } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ALPHA = 0.01;
/** Coarse-to-fine may lose at most this fraction of the full search's held-out gain. */
const COARSE_TO_FINE_TOLERANCE = 0.05;
/** Random head sets drawn for the random baseline; their mean is compared. */
const RANDOM_DRAWS = 5;

/**
 * A task stories260K can do (it only knows children's stories): two children with two things; the
 * story continues about the first child's thing, and the sentence saying what it is gets emphasized.
 * Half of the examples put the other child's sentence first, half last.
 */
function storyTask(): Task {
  const names = [["Lily", "Tom"], ["Ben", "Sue"], ["Mia", "Max"], ["Anna", "Sam"], ["Lucy", "Jack"], ["Timmy", "Sara"], ["Emma", "Leo"], ["Kitty", "Bob"]] as const;
  const things = [["red ball", "blue kite"], ["big dog", "small cat"], ["green hat", "yellow box"], ["new toy", "old book"],
    ["pink doll", "brown bear"], ["shiny car", "soft bed"], ["little bird", "big fish"], ["sweet cake", "cold milk"]] as const;
  const examples: TaskExample[] = [];
  for (let i = 0; i < 16; i++) {
    const [a, b] = names[i % 8]!;
    const [x, y] = things[(i * 3) % 8]!;
    const key = `${a} had a ${x}.`;
    const other = `${b} had a ${y}.`;
    const story = i % 2 === 0 ? `${key} ${other}` : `${other} ${key}`;
    examples.push({ context: `${story} ${a} loved the`, emphasis: key, target: ` ${x.split(" ")[1]}` });
  }
  return { name: "stories", examples };
}

function allHeads(headsPerLayer: readonly number[]): Array<[number, number]> {
  return headsPerLayer.flatMap((n, layer) => Array.from({ length: n }, (_, head) => [layer, head] as [number, number]));
}

function countHeads(heads: Record<string, number[]>): number {
  return Object.values(heads).reduce((n, h) => n + h.length, 0);
}

/** k distinct heads drawn uniformly. */
function randomHeads(headsPerLayer: readonly number[], k: number, random: () => number): Record<string, number[]> {
  const pool = allHeads(headsPerLayer);
  const picked: Record<string, number[]> = {};
  for (let i = 0; i < k; i++) {
    const [layer, head] = pool.splice(Math.floor(random() * pool.length), 1)[0]!;
    (picked[String(layer)] ??= []).push(head);
  }
  return picked;
}

/** Everything profileHeads returns that must not change between runs with one seed. */
const stable = (r: ProfileResult) => ({ heads: r.heads, scores: r.scores, heldOut: r.heldOut, passes: r.forwardPasses, fallback: r.fallback });

t.test("task files", async (t) => {
  const tasks = loadBuiltinTasks();
  t.same(tasks.map((task) => task.name), ["counterfactual", "first_person", "json_format", "key_sentence"], "four built-in tasks");
  for (const task of tasks) {
    t.ok(task.examples.length >= 16 && task.examples.length <= 24, `${task.name}: ${task.examples.length} examples`);
    t.ok(task.examples.every((e) => e.context.includes(e.emphasis) && e.target.trim() !== ""), `${task.name}: every emphasis is in its context`);
    t.match(task.file, /^prompts\/tasks\/.*\.jsonl$/, `${task.name}: recorded relative to the package`);
  }

  const task = tasks[0]!;
  const split = splitExamples(task, 0);
  t.same(splitExamples(task, 0), split, "the split is deterministic for a seed");
  t.equal(split.profiling.length, Math.ceil(task.examples.length / 2), "profiling gets the larger half");
  t.same([...split.profiling, ...split.heldOut].sort((a, b) => a.context.localeCompare(b.context)),
    [...task.examples].sort((a, b) => a.context.localeCompare(b.context)), "the halves are disjoint and cover the task");
  t.not(JSON.stringify(splitExamples(task, 1).profiling), JSON.stringify(split.profiling), "another seed, another split");

  t.throws(() => parseTaskExamples('{"context": "a b", "emphasis": "c", "target": " d"}', "x.jsonl"), { name: "TaskFileError", message: /x\.jsonl:1: "emphasis" is not a substring/ });
  t.throws(() => parseTaskExamples('\n{"context": "a b"', "x.jsonl"), { message: /x\.jsonl:2: not JSON/ });
  t.throws(() => parseTaskExamples('{"context": "a b", "emphasis": "a"}', "x.jsonl"), { message: /x\.jsonl:1: .*target/ });
  t.throws(() => parseTaskExamples("// only a comment\n", "x.jsonl"), { message: /has no examples/ });
  t.same(parseTaskExamples('// a comment\n\n{"context": "a b", "emphasis": "a", "target": " c", "note": "ignored"}\n', "x.jsonl"),
    [{ context: "a b", emphasis: "a", target: " c" }], "comments, blank lines and extra fields");

  const dir = mkdtempSync(join(tmpdir(), "pasta-tasks-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "mine.jsonl");
  writeFileSync(file, '{"context": "a b", "emphasis": "a", "target": " c"}\n');
  t.same(loadTasks(`builtin,${file}`).map((x) => x.name), ["counterfactual", "first_person", "json_format", "key_sentence", "mine"], "builtin plus a file");
  t.throws(() => loadTasks(`${file},${file}`), TaskFileError, "two tasks of one name");
  t.throws(() => loadTasks(join(dir, "missing.jsonl")), { message: /cannot read task file/ });
});

t.test("combining per-task rankings", async (t) => {
  const h = (layer: number, head: number) => ({ layer, head });
  const a = [h(1, 0), h(2, 3), h(0, 1), h(3, 3), h(4, 4)];
  const b = [h(2, 3), h(4, 4), h(1, 0), h(0, 1), h(3, 3)];
  t.same(combineRankings([a, b], 2, "intersection"), { heads: [h(2, 3)], fallback: null }, "the intersection of the top 2");
  t.same(combineRankings([a, b], 2, "union"), { heads: [h(1, 0), h(2, 3), h(4, 4)], fallback: null }, "the union of the top 2");
  const c = [h(3, 3), h(0, 1), h(4, 4), h(2, 3), h(1, 0)];
  const fallback = combineRankings([a, c], 1, "intersection");
  t.match(fallback.fallback, /intersection .* is empty/, "an empty intersection says so");
  // mean ranks: (1,0) 2, (2,3) 2, (0,1) 1.5, (3,3) 1.5, (4,4) 3 -> tie broken by layer
  t.same(fallback.heads, [h(0, 1)], "and takes the best mean rank");
});

t.test("profile files load as head profiles", async (t) => {
  const result: ProfileResult = {
    method: "pasta", topK: 2, combine: "intersection", seed: 0, alpha: ALPHA, mode: "exclude", headsPerLayer: [2, 2],
    tasks: [{ name: "x", sha256: "0".repeat(64), examples: 2, profiling: 1, heldOut: 1 }],
    scores: [{ task: "x", unsteered: -1, heads: [[0.5, null], [-0.25, 1]], ranking: [] }],
    forwardPasses: { used: 5, fullSearch: 5, heldOut: 2 }, heads: { "1": [1] }, fallback: null, heldOut: null,
  };
  const model = { name: "m", file: "m.gguf", sha256: "a".repeat(64), size: 1 };
  const text = formatProfile(profileDocument(result, model, "pasta-server profile --test", new Date(0)));
  t.match(text, /"1": \[-0\.25, 1\]/, "score rows on one line");
  const dir = mkdtempSync(join(tmpdir(), "pasta-profile-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "p.json"), text);
  t.same(loadHeadProfile(join(dir, "p.json")), { "1": [1] }, "loadHeadProfile returns the heads");
  t.same(loadHeadProfileWithModel(join(dir, "p.json")), { heads: { "1": [1] }, modelSha256: "a".repeat(64), alpha: ALPHA }, "with the model's hash and the alpha");
  t.same(parseHeadProfile({ "2": [0, 3] }, "bare"), { "2": [0, 3] }, "the bare form still loads");
  writeFileSync(join(dir, "bare.json"), '{"2": [0, 3]}');
  t.same(loadHeadProfileWithModel(join(dir, "bare.json")), { heads: { "2": [0, 3] }, modelSha256: null, alpha: null }, "the bare form has no model hash");
});

t.test("stories260K", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512 });
  t.teardown(() => engine.dispose());
  const task = storyTask();
  const seed = 0;
  const { heldOut } = splitExamples(task, seed);

  t.test("the target's log-likelihood: boundary tokens, and the same as in generation", async (t) => {
    const scorer = new TargetScorer(engine, ALPHA);
    // a clean boundary: the tokens from the target's first character on
    const example = task.examples[0]!;
    const scored = await engine.score({ prompt: example.context + example.target, topLogprobs: 0 });
    const expected = scored.tokens.filter((tok) => tok.offset >= example.context.length).reduce((s, tok) => s + tok.logprob!, 0);
    t.ok(scored.tokens.some((tok) => tok.offset === example.context.length), "a token starts at the target");
    t.equal(await scorer.logLikelihood(example, null), expected, "sum over the target's tokens");
    // a token that straddles the boundary produces the target's first characters: it counts
    const straddle = { context: "Lily had a red ba", emphasis: "Lily", target: "ll." };
    const tokens = (await engine.score({ prompt: straddle.context + straddle.target, topLogprobs: 0 })).tokens;
    const first = tokens.findIndex((tok, i) => (tokens[i + 1]?.offset ?? Infinity) > straddle.context.length);
    t.ok(tokens[first]!.offset < straddle.context.length, `"${tokens[first]!.text}" straddles the boundary`);
    t.equal(await scorer.logLikelihood(straddle, null), tokens.slice(first).reduce((s, tok) => s + tok.logprob!, 0), "and is scored");

    // steered: the target's tokens are not down-weighted, exactly as generated tokens are not
    const heads = { "3": [1, 6], "4": [2, 3] };
    const greedy = await engine.generate({
      prompt: example.context, maxTokens: 3, temperature: 0, logprobs: 0,
      steering: { emphasis: [example.emphasis], heads, alpha: ALPHA },
    });
    // token by token: the generated text drops the first token's leading space, as tokenizers do at a text's start
    const generated = { ...example, target: greedy.logprobs!.map((lp) => lp.text).join("") };
    const viaScore = await scorer.logLikelihood(generated, heads);
    const viaGeneration = greedy.logprobs!.reduce((s, lp) => s + lp.logprob, 0);
    t.ok(Math.abs(viaScore - viaGeneration) < 1e-3, `steered target log-likelihood ${viaScore.toFixed(5)} = the steered generation's ${viaGeneration.toFixed(5)} (${JSON.stringify(generated.target)})`);
    // emphasizing the context's span alone would down-weight the target's own tokens: not what generation does
    const prompt = generated.context + generated.target;
    const contextOnly = (await engine.score({ prompt, topLogprobs: 0, steering: { emphasis: [generated.emphasis], heads, alpha: ALPHA } }))
      .tokens.filter((tok) => tok.offset >= generated.context.length).reduce((s, tok) => s + tok.logprob!, 0);
    t.ok(Math.abs(contextOnly - viaGeneration) > 1e-3, `(with only the context's span emphasized it would be ${contextOnly.toFixed(5)})`);
  });

  let full: ProfileResult | undefined;
  t.test("per-head search: reproducible, and its heads help held-out examples", async (t) => {
    const started = performance.now();
    const progress: Array<[number, number]> = [];
    full = await profileHeads(engine, { tasks: [task], seed, topK: 4, onProgress: (done, total) => progress.push([done, total]) });
    const seconds = (performance.now() - started) / 1000;
    const again = await profileHeads(engine, { tasks: [task], seed, topK: 4 });
    t.same(stable(again), stable(full), "same seed, same heads and scores");
    t.equal(countHeads(full.heads), 4, `chose ${JSON.stringify(full.heads)}`);
    t.equal(full.fallback, null, "one task: its top 4, no fallback");
    const profiling = Math.ceil(task.examples.length / 2);
    t.equal(full.forwardPasses.used, profiling * (40 + 1), "every head on every profiling example, plus each one unsteered");
    t.same(progress.at(-1), [full.forwardPasses.used + full.forwardPasses.heldOut, full.forwardPasses.used + full.forwardPasses.heldOut], "progress reaches its total");
    t.comment(`per-head search: ${full.forwardPasses.used} forward passes in ${seconds.toFixed(1)}s`);

    const scorer = new TargetScorer(engine, ALPHA);
    const none = await scorer.mean(heldOut, null);
    const chosen = await scorer.mean(heldOut, full.heads);
    const random = seededRandom(seed + 1);
    let randomSum = 0;
    for (let i = 0; i < RANDOM_DRAWS; i++) randomSum += await scorer.mean(heldOut, randomHeads(engine.headsPerLayer, 4, random));
    const randomMean = randomSum / RANDOM_DRAWS;
    t.comment(`held-out mean target log-likelihood (${heldOut.length} examples): chosen ${chosen.toFixed(3)}, none ${none.toFixed(3)}, random 4 heads ${randomMean.toFixed(3)} (mean of ${RANDOM_DRAWS} draws)`);
    t.same(full.heldOut, [{ task: "stories", examples: heldOut.length, unsteered: none, steered: chosen }], "the result reports the same held-out check");
    t.ok(chosen > none, "the chosen heads beat no steering");
    t.ok(chosen > randomMean, "and as many random heads");
  });

  t.test("coarse-to-fine: close to the full search with fewer forward passes", async (t) => {
    const started = performance.now();
    const coarse = await profileHeads(engine, { tasks: [task], seed, topK: 4, method: "coarse-to-fine", keepLayers: 2 });
    const seconds = (performance.now() - started) / 1000;
    t.same(stable(await profileHeads(engine, { tasks: [task], seed, topK: 4, method: "coarse-to-fine", keepLayers: 2 })), stable(coarse), "reproducible");
    t.ok(full, "the full search ran");
    const fullGain = full!.heldOut![0]!.steered - full!.heldOut![0]!.unsteered;
    const coarseGain = coarse.heldOut![0]!.steered - coarse.heldOut![0]!.unsteered;
    const { used, fullSearch } = coarse.forwardPasses;
    t.comment(`coarse-to-fine kept layers ${coarse.keptLayers!.join(", ")}, chose ${JSON.stringify(coarse.heads)}; full search chose ${JSON.stringify(full!.heads)}`);
    t.comment(`held-out gain over unsteered: coarse-to-fine ${coarseGain.toFixed(3)}, full ${fullGain.toFixed(3)}; forward passes ${used} vs ${fullSearch} (${(100 * used / fullSearch).toFixed(0)}%), ${seconds.toFixed(1)}s`);
    t.equal(fullSearch, full!.forwardPasses.used, "full_search is what the per-head search used");
    t.equal(used, 8 * (1 + 5 + 2 * 8), "layers, then the heads of 2 layers");
    t.ok(fullGain > 0, "the full search gains on held-out examples");
    t.ok(coarseGain >= (1 - COARSE_TO_FINE_TOLERANCE) * fullGain, `coarse-to-fine keeps at least ${100 * (1 - COARSE_TO_FINE_TOLERANCE)}% of the full search's gain`);
    t.equal(coarse.scores[0]!.layers!.length, 5, "a score per layer");
    t.equal(coarse.scores[0]!.heads.flat().filter((x) => x !== null).length, 16, "heads scored only in the kept layers");
  });

  t.test("the built-in tasks fit and run (one example each, several tasks combined)", async (t) => {
    const result = await profileHeads(engine, { tasks: loadBuiltinTasks(), seed, examples: 1, method: "coarse-to-fine", keepLayers: 1, evaluate: false });
    t.equal(result.forwardPasses.used, 4 * (1 + 5 + 8), "4 tasks x 1 example x (unsteered + 5 layers + 8 heads)");
    t.ok(countHeads(result.heads) >= 1, `chose ${JSON.stringify(result.heads)}${result.fallback ? ` (${result.fallback})` : ""}`);
    t.equal(result.heldOut, null, "no held-out check when not asked");
  });
});

t.test("generated llama", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: tinyModel("llama"), contextSize: 256 });
  t.teardown(() => engine.dispose());
  const task = storyTask();
  const headCount = engine.headsPerLayer.reduce((a, b) => a + b, 0);
  for (const method of ["pasta", "coarse-to-fine"] as const) {
    const started = performance.now();
    const first = await profileHeads(engine, { tasks: [task], seed: 3, topK: 3, method, keepLayers: 1 });
    const seconds = (performance.now() - started) / 1000;
    const second = await profileHeads(engine, { tasks: [task], seed: 3, topK: 3, method, keepLayers: 1 });
    t.same(stable(second), stable(first), `${method}: reproducible`);
    t.equal(countHeads(first.heads), 3, `${method}: chose ${JSON.stringify(first.heads)}`);
    const h = first.heldOut![0]!;
    // random weights: nothing to learn, so the held-out numbers are reported, not asserted
    t.comment(`${method}: ${first.forwardPasses.used} forward passes (full search ${first.forwardPasses.fullSearch}) in ${seconds.toFixed(1)}s; held-out ${h.unsteered.toFixed(3)} unsteered, ${h.steered.toFixed(3)} steered`);
  }
  t.equal((await profileHeads(engine, { tasks: [task], seed: 3, examples: 2, evaluate: false })).forwardPasses.used, 2 * (headCount + 1), "--examples caps the profiling examples");
  await t.rejects(profileHeads(engine, { tasks: [task], topK: 0 }), { name: "ProfileError" });
  await t.rejects(profileHeads(engine, { tasks: [task], alpha: 2 }), { name: "ProfileError", message: /alpha must be in \(0, 1\]/ });
  await t.rejects(profileHeads(engine, { tasks: [{ name: "long", examples: [{ context: "word ".repeat(400), emphasis: "word", target: " end" }] }] }),
    { name: "ProfileError", message: /the context holds 255/ });
});

t.test("pasta-server profile", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-profile-cli-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tasks = join(dir, "stories.jsonl");
  writeFileSync(tasks, storyTask().examples.map((e) => JSON.stringify(e)).join("\n"));
  const run = (args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    // NODE_OPTIONS="": the test runner's loader hooks must not leak into the child
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "profile", ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: "" } });
    let stdout = "", stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
  const outputs = [join(dir, "a.json"), join(dir, "b.json")];
  for (const out of outputs) {
    const started = performance.now();
    const res = await run(["--model", STORIES_MODEL, "--tasks", tasks, "--out", out, "--examples", "4", "--seed", "5"]);
    t.equal(res.code, 0, `exit 0 in ${((performance.now() - started) / 1000).toFixed(1)}s${res.code ? `: ${res.stderr}` : ""}`);
    t.match(res.stdout, /forward passes: 164\n/, "reports its forward passes");
    t.match(res.stdout, /held-out stories \(8 examples\)/, "and the held-out check");
    t.match(res.stderr, /100% 180\/180 forward passes/, "progress on stderr (periodic lines when not a terminal)");
  }
  const [a, b] = outputs.map((f) => readFileSync(f, "utf8"));
  // the two runs differ in --out only, which the recorded command names
  const withoutTime = (text: string) => text.replace(/"created_at": "[^"]*"/, "").replace(/"command": "[^"]*"/, "");
  t.equal(withoutTime(b!), withoutTime(a!), "same seed: same file apart from created_at and the command");
  const doc = JSON.parse(a!);
  t.equal(doc.command, `pasta-server profile --model ${STORIES_MODEL} --tasks ${tasks} --out ${outputs[0]} --examples 4 --seed 5`, "the command that made it");
  t.same(loadHeadProfile(outputs[0]!), doc.heads as HeadSelection, "loadHeadProfile reads the heads");
  const info = await modelFileInfo(STORIES_MODEL);
  t.same(doc.model, { ...info, n_layers: 5, heads_per_layer: [8, 8, 8, 8, 8] }, "the model: name, file, sha256, size, shape");
  t.equal(info.sha256, "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d", "the model's published sha256");
  t.match(doc, { method: "pasta", alpha: ALPHA, seed: 5, tasks: [{ name: "stories", file: tasks, examples: 16, profiling: 4, held_out: 8 }],
    forward_passes: { used: 164, full_search: 164, held_out: 16 }, fallback: null }, "what it was made from");
  t.equal(doc.scores.stories.heads["0"].length, 8, "a score per head");
  t.ok(!Number.isNaN(Date.parse(doc.created_at)), "created_at");

  const bad = await run(["--model", STORIES_MODEL, "--out", join(dir, "c.json"), "--method", "grid"]);
  t.equal(bad.code, 2, "a bad flag exits 2");
  t.match(bad.stderr, /--method must be pasta or coarse-to-fine/, "and says why");
});
