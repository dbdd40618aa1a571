// Steering quality on a real instruct model, the gates CI keeps: on SmolLM2-135M-Instruct with the
// head profile that ships for it, emphasizing the new fact of a knowledge conflict must make the
// model prefer it far more often than unsteered, and emphasizing a format instruction must make it
// follow the instruction more often (docs/quality.md has the whole eval).
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
import { SMOLLM2_MODEL } from "../../support/models.js";

/** Issue #12: the shipped profile must beat unsteered by at least this many points on knowledge conflict. */
const MIN_GAIN_POINTS = 15;
/**
 * Issue #15: ... and follow an emphasized format instruction more often. Measured +10.4 points (eval
 * of 2026-12-02) and +8.3 with the same code and build on the machine of 2026-12-06 (one item of 48:
 * CPU-dependent kernels round greedy answers differently), so the gate keeps a margin of two items.
 */
const MIN_INSTRUCTION_GAIN_POINTS = 6;

const file = findShippedProfile(await sha256File(SMOLLM2_MODEL));
if (!file) throw new Error(`no profile in profiles/ is for ${SMOLLM2_MODEL}`);
const profile = loadHeadProfileWithModel(file);
// as `pasta-server eval` loads it: every run from a cold cache, so these are the eval's own cells
const engine = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 1024, prefixReuse: false });
t.teardown(() => engine.dispose());
const template = modelChatTemplate(engine);

/** A task's eval items answered unsteered and with the shipped profile, summarized. */
async function unsteeredAndProfile(task: string) {
  const items = loadItems(familyNamed(task));
  const arms = buildArms(["unsteered", "profile"], profile.heads, engine.headsPerLayer, 0);
  return { items, rows: summarize(await runEval(engine, template, items, arms, { alpha: profile.alpha ?? 0.01 }), arms) };
}

t.test("the shipped SmolLM2 profile wins knowledge conflicts", async (t) => {
  t.ok(template, "SmolLM2 has its own chat template");

  const { items, rows } = await unsteeredAndProfile("knowledge_conflict");
  const efficacy = rows.find((r) => r.metric === "efficacy")!.byArm;
  const gain = 100 * (efficacy.profile! - efficacy.unsteered!);
  t.comment(
    `efficacy on ${items.length} items: unsteered ${(100 * efficacy.unsteered!).toFixed(1)}%, profile ${(100 * efficacy.profile!).toFixed(1)}%`,
  );
  t.ok(gain >= MIN_GAIN_POINTS, `steering gains ${gain.toFixed(1)} points (at least ${MIN_GAIN_POINTS})`);
  const states = rows.find((r) => r.metric === "states_new")!.byArm;
  t.ok(
    states.profile! > states.unsteered!,
    `greedy answers state the new fact more often: ${(100 * states.unsteered!).toFixed(1)}% -> ${(100 * states.profile!).toFixed(1)}%`,
  );
});

t.test("the shipped SmolLM2 profile makes an emphasized JSON instruction followed more often", async (t) => {
  const { items, rows } = await unsteeredAndProfile("json_format");
  const keys = rows.find((r) => r.metric === "json")!.byArm;
  const gain = 100 * (keys.profile! - keys.unsteered!);
  t.ok(
    gain >= MIN_INSTRUCTION_GAIN_POINTS,
    `JSON with the asked keys on ${items.length} items: ${(100 * keys.unsteered!).toFixed(1)}% -> ${(100 * keys.profile!).toFixed(1)}% (+${gain.toFixed(1)}, at least ${MIN_INSTRUCTION_GAIN_POINTS})`,
  );
});
