// profiles/: each shipped head profile belongs to one model file of ../shared (by sha256), says
// how it was made and carries its own eval numbers; a file with another sha256 gets none.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QWEN25_CODER_05B, QWEN25_CODER_15B } from "../../../src/cli/modelCatalog.js";
import { readEvalRecord, type EvalRecordRow, type EvalRecordRun } from "../../../src/profiles/evalRecord.js";
import { findShippedProfile, SHIPPED_PROFILES_DIR } from "../../../src/profiles/shipped.js";
import { sha256File } from "../../../src/util/fileHash.js";
import { SMOLLM2_MODEL, STORIES_MODEL, unprofiledStoriesModel } from "../../support/models.js";

for (const [model, file] of [
  [SMOLLM2_MODEL, "SmolLM2-135M-Instruct.Q4_1.json"],
  [STORIES_MODEL, "stories260K.json"],
] as const) {
  t.test(file, async (t) => {
    const path = join(SHIPPED_PROFILES_DIR, file);
    t.equal(findShippedProfile(await sha256File(model)), path, "found by the model file's sha256");
    const doc = JSON.parse(readFileSync(path, "utf8"));
    t.match(doc.command, /^pasta-server profile --model \S+ --out profiles\//, "how it was made");
    t.ok(doc.tasks.length > 0 && doc.tasks.every((task: { sha256: string }) => /^[0-9a-f]{64}$/.test(task.sha256)), "the tasks' digests");
    t.equal(doc.alpha, 0.01);
    t.ok(!Number.isNaN(Date.parse(doc.created_at)), "its date");
    const runs = readEvalRecord(doc.eval);
    t.ok(
      runs.length > 0 && runs.every((run) => /^pasta-server eval --model \S+ .*--record/.test(run.command)),
      "the evals that measured it",
    );
    t.ok(
      rows(runs).some((row) => row.task === "knowledge_conflict" && row.metric === "efficacy" && typeof row.by_arm.profile === "number"),
      "and their numbers",
    );
  });
}

for (const [model, name] of [
  [QWEN25_CODER_05B, "qwen2.5-coder-0.5b-instruct"],
  [QWEN25_CODER_15B, "qwen2.5-coder-1.5b-instruct"],
] as const) {
  t.test(`${name}-q4_k_m.json: found by the catalog's sha256, with its command and eval`, async (t) => {
    const path = join(SHIPPED_PROFILES_DIR, `${name}-q4_k_m.json`);
    t.equal(findShippedProfile(model.sha256), path);
    const doc = JSON.parse(readFileSync(path, "utf8"));
    t.ok(doc.command.startsWith(`pasta-server profile --model ${name} --out `), "how it was made");
    t.equal(doc.model.size, model.size);
    t.same(doc.model.heads_per_layer, Array(model.layers).fill(model.heads), "the catalog's shape is the file's");
    const runs = readEvalRecord(doc.eval);
    t.ok(
      runs.length > 0 &&
        runs.every((run) => run.command.startsWith(`pasta-server eval --model ${name} `) && run.command.includes(" --record")),
      "the evals that measured it",
    );
    t.ok(
      rows(runs).some(
        (row) =>
          row.task === "pronoun_change" &&
          row.items === 48 &&
          typeof row.by_arm.profile === "number" &&
          typeof row.by_arm.unsteered === "number",
      ),
      "and their numbers: the rewrites on all 48 items, unsteered and steered",
    );
  });
}

t.test("the 0.5B profile's record shows the rewrite gain its CI gate asks for (test/model/eval/qwenQuality.test.ts)", async (t) => {
  const doc = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, "qwen2.5-coder-0.5b-instruct-q4_k_m.json"), "utf8"));
  const rewrites = rows(readEvalRecord(doc.eval)).find((row) => row.task === "pronoun_change" && row.items === 48)!;
  t.ok(rewrites.by_arm.profile! - rewrites.by_arm.unsteered! >= 0.15, "at least 15 points over unsteered on all 48 items");
});

function rows(runs: EvalRecordRun[]): EvalRecordRow[] {
  return runs.flatMap((run) => run.summary);
}

t.test("a model file no profile was made for gets none", async (t) => {
  t.equal(findShippedProfile(await sha256File(unprofiledStoriesModel())), null);
});
