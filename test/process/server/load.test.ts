// Proof under load (harness/load.ts's runLoad, what `npm run load` runs): 16 closed-loop clients for
// ~11 s against a real server (--parallel 4 --max-queue 16 --ctx-size 512), mixing endpoints,
// streaming and steering. Every answer is a success or a documented 429/503, every stream is
// well-formed, RSS is stable, the server is idle afterwards and exits 0. (That the checks catch what
// they should: test/unit/harness/load.test.ts.)
import t from "tap";
import { formatSummary, MEMORY_TOLERANCE, runLoad } from "../../../harness/index.js";

const SECONDS = 11;
const CLIENTS = 16;

t.test(`${CLIENTS} clients for ${SECONDS} s: no violations, every kind served, memory stable`, async (t) => {
  const summary = await runLoad({ seconds: SECONDS, clients: CLIENTS });
  t.comment(formatSummary(summary));

  t.same(summary.violations, [], "no violations");
  t.ok(summary.ok > 0 && summary.ok === (summary.statuses["200"] ?? 0), `every 200 was well-formed (${summary.ok} ok)`);
  const refused = Object.entries(summary.statuses).filter(([status]) => status !== "200");
  t.ok(
    refused.every(([status]) => status === "429" || status === "503"),
    `anything else is a 429 or 503: ${JSON.stringify(summary.statuses)}`,
  );
  for (const kind of ["steered/plain", "steered/stream", "unsteered/plain", "unsteered/stream"]) {
    t.ok((summary.kinds[kind]?.ok ?? 0) > 0, `${kind}: ${summary.kinds[kind]?.ok ?? 0} successful requests`);
  }
  for (const endpoint of ["generate", "chat", "completions"]) {
    for (const mode of ["plain", "stream"]) t.ok((summary.endpoints[`${endpoint}/${mode}`]?.ok ?? 0) > 0, `${endpoint}/${mode} served`);
  }
  t.ok(summary.ttftMs.count > 0, `time to first token measured on ${summary.ttftMs.count} streams`);
  t.ok(summary.completionTokens > 0, `${summary.completionTokens} completion tokens generated`);

  const m = summary.memory;
  t.ok(
    m.ok,
    `RSS stable: middle third ${(m.middleMeanBytes / 2 ** 20).toFixed(1)} MiB, last third ${(m.lastMeanBytes / 2 ** 20).toFixed(1)} MiB (${(m.growth * 100).toFixed(1)}%, allowed +${MEMORY_TOLERANCE * 100}%)`,
  );
  t.ok(m.samples >= SECONDS - 2, `RSS sampled every second (${m.samples} samples)`);
});
