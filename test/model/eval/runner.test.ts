// The eval runner (src/eval/runner.ts) in the engine: AutoPASTA's arm. (Every other arm against the
// server's answers, and the `eval` command: test/process/cli/eval.test.ts.)
import t from "tap";
import { join } from "node:path";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { buildArms } from "../../../src/eval/arms.js";
import { familyNamed, loadItems } from "../../../src/eval/families.js";
import { runEval } from "../../../src/eval/runner.js";
import { loadHeadProfile } from "../../../src/profiles/headProfile.js";
import { PROJECT_ROOT } from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";

const heads = loadHeadProfile(join(PROJECT_ROOT, "profiles", "stories260K.json"));

t.test("AutoPASTA's arm: pass 1's sentences are the passage's own, and the answer is steered on them", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 1024 });
  t.teardown(() => engine.dispose());
  const items = loadItems(familyNamed("open_book")).slice(0, 3);
  const [auto] = buildArms(["auto"], heads, engine.headsPerLayer, 0);
  const outcomes = await runEval(engine, null, items, [auto!], { alpha: 0.01 });
  t.equal(outcomes.length, 3);
  for (const o of outcomes) {
    for (const s of o.auto!.sentences) t.ok(o.item.passage!.includes(s), `${o.item.source}: "${s.slice(0, 40)}..." is the passage's`);
    t.equal(
      o.auto!.gold,
      o.auto!.sentences.some((s) => s.includes(o.item.emphasis) || o.item.emphasis.includes(s)),
    );
  }
});
