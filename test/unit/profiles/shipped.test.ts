// profiles/: each shipped head profile belongs to one model file of ../shared (by sha256), says
// how it was made and carries its own eval numbers; a file with another sha256 gets none.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QWEN25_CODER_05B } from "../../../src/cli/modelCatalog.js";
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
    t.match(doc.eval.command, /^pasta-server eval --model \S+ .*--record/, "the eval that measured it");
    t.ok(
      doc.eval.summary.some(
        (row: { task: string; metric: string; by_arm: { profile: number } }) =>
          row.task === "knowledge_conflict" && row.metric === "efficacy" && typeof row.by_arm.profile === "number",
      ),
      "and its numbers",
    );
  });
}

t.test("qwen2.5-coder-0.5b-instruct-q4_k_m.json: found by the catalog's sha256, with its command and eval", async (t) => {
  const path = join(SHIPPED_PROFILES_DIR, "qwen2.5-coder-0.5b-instruct-q4_k_m.json");
  t.equal(findShippedProfile(QWEN25_CODER_05B.sha256), path);
  const doc = JSON.parse(readFileSync(path, "utf8"));
  t.match(
    doc.command,
    /^pasta-server profile --model qwen2\.5-coder-0\.5b-instruct --out profiles\/qwen2\.5-coder-0\.5b-instruct-q4_k_m\.json /,
  );
  t.equal(doc.model.size, QWEN25_CODER_05B.size);
  t.same(doc.model.heads_per_layer, Array(QWEN25_CODER_05B.layers).fill(QWEN25_CODER_05B.heads), "the catalog's shape is the file's");
  t.match(doc.eval.command, /^pasta-server eval --model qwen2\.5-coder-0\.5b-instruct .*--record/, "the eval that measured it");
  t.ok(
    doc.eval.summary.some(
      (row: { task: string; by_arm: { profile: number; unsteered: number } }) =>
        row.task === "pronoun_change" && row.by_arm.profile > row.by_arm.unsteered,
    ),
    "and its numbers",
  );
});

t.test("a model file no profile was made for gets none", async (t) => {
  t.equal(findShippedProfile(await sha256File(unprofiledStoriesModel())), null);
});
