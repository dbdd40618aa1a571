// Profile files (src/profiles/profileFile.ts) load as head profiles (src/profiles/headProfile.ts),
// and so does the bare form.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadHeadProfile, loadHeadProfileWithModel, parseHeadProfile } from "../../../src/profiles/headProfile.js";
import { formatProfile, profileDocument } from "../../../src/profiles/profileFile.js";
import type { ProfileResult } from "../../../src/profiles/profiler.js";
import { ALPHA } from "../../support/profiling.js";

t.test("profile files load as head profiles", async (t) => {
  const result: ProfileResult = {
    format: "chat",
    method: "pasta",
    topK: 2,
    combine: "intersection",
    seed: 0,
    alpha: ALPHA,
    mode: "exclude",
    headsPerLayer: [2, 2],
    tasks: [{ name: "x", sha256: "0".repeat(64), examples: 2, profiling: 1, heldOut: 1 }],
    scores: [
      {
        task: "x",
        unsteered: -1,
        heads: [
          [0.5, null],
          [-0.25, 1],
        ],
        ranking: [],
      },
    ],
    forwardPasses: { used: 5, fullSearch: 5, heldOut: 2 },
    heads: { "1": [1] },
    fallback: null,
    heldOut: null,
    sweep: null,
  };
  const model = { name: "m", file: "m.gguf", sha256: "a".repeat(64), size: 1 };
  const text = formatProfile(profileDocument(result, model, "pasta-server profile --test", new Date(0)));
  t.match(text, /"1": \[-0\.25, 1\]/, "score rows on one line");
  const dir = mkdtempSync(join(tmpdir(), "pasta-profile-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "p.json"), text);
  t.same(loadHeadProfile(join(dir, "p.json")), { "1": [1] }, "loadHeadProfile returns the heads");
  t.same(
    loadHeadProfileWithModel(join(dir, "p.json")),
    { heads: { "1": [1] }, modelSha256: "a".repeat(64), alpha: ALPHA },
    "with the model's hash and the alpha",
  );
  t.same(parseHeadProfile({ "2": [0, 3] }, "bare"), { "2": [0, 3] }, "the bare form still loads");
  writeFileSync(join(dir, "bare.json"), '{"2": [0, 3]}');
  t.same(
    loadHeadProfileWithModel(join(dir, "bare.json")),
    { heads: { "2": [0, 3] }, modelSha256: null, alpha: null },
    "the bare form has no model hash",
  );
});
