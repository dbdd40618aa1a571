// The eval runner (src/eval/runner.ts) in the engine: AutoPASTA's arm, on SmolLM2 in its chat template
// (stories260K's pass 1 never ends its list, so it would emphasize nothing). (Every other arm against
// the server's answers, and the `eval` command: test/process/cli/eval.test.ts.)
import t from "tap";
import { join } from "node:path";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { buildArms } from "../../../src/eval/arms.js";
import { familyNamed, loadItems } from "../../../src/eval/families.js";
import { runEval } from "../../../src/eval/runner.js";
import { modelChatTemplate } from "../../../src/prompt/modelTemplate.js";
import { loadHeadProfile } from "../../../src/profiles/headProfile.js";
import { PROJECT_ROOT } from "../../../harness/index.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

const heads = loadHeadProfile(join(PROJECT_ROOT, "profiles", "SmolLM2-135M-Instruct.Q4_1.json"));

t.test("AutoPASTA's arm: pass 1's sentences are the passage's own, and the answer is steered on them", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 1024 });
  t.teardown(() => engine.dispose());
  const items = loadItems(familyNamed("open_book")).slice(0, 3);
  const [auto] = buildArms(["auto"], heads, engine.headsPerLayer, 0);
  const outcomes = await runEval(engine, modelChatTemplate(engine), items, [auto!], { alpha: 0.01 });
  t.equal(outcomes.length, 3);
  t.ok(
    outcomes.some((o) => o.auto!.finished && o.auto!.sentences.length > 0),
    "pass 1 ended its list and was mapped onto the passage at least once",
  );
  for (const o of outcomes) {
    if (!o.auto!.finished)
      t.same([o.auto!.sentences, o.auto!.reason], [[], "length"], `${o.item.source}: an unfinished pass 1 emphasizes nothing`);
    t.equal(o.auto!.reason === undefined, o.auto!.sentences.length > 0, `${o.item.source}: a reason exactly when nothing is emphasized`);
    for (const s of o.auto!.sentences) t.ok(o.item.passage!.includes(s), `${o.item.source}: "${s.slice(0, 40)}..." is the passage's`);
    t.equal(
      o.auto!.gold,
      o.auto!.sentences.some((s) => s.includes(o.item.emphasis) || o.item.emphasis.includes(s)),
    );
  }
});
