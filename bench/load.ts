// npm run load [-- --seconds 30 --clients 16 [--base http://127.0.0.1:8080] [--hostile]]: proof under
// load, on loopback. Starts a real `pasta-server serve` (stories260K, --parallel 4 --max-queue 16
// --ctx-size 512) unless --base names a running one, and runs `clients` closed loops for `seconds`,
// each sending its next request as soon as the last one ended; requests mix the three generation
// endpoints, streaming and not, steered and not, greedy and sampled. Every failed check is a violation
// (non-zero exit). What is sent and checked: harness/load.ts (runLoad), which
// test/process/server/load.test.ts runs too. Prints throughput (requests/s, completion tokens/s from
// the server's own counter), latency percentiles (whole request; time to first token for streams),
// answers by status and by kind.
//
// --hostile: two runs on the same server, the second with one more client sending the hostile
// requests of harness/hostile.ts (megabyte prompts, grammars slow to enforce, ...) in turn; prints
// the normal clients' p99 latency in both and their ratio, which must be at most MAX_P99_RATIO.
import { parseArgs } from "node:util";
import { errorLogLines, formatSummary, HOSTILE_SECRET, LOAD_SERVER_ARGS, runLoad, startServer } from "../harness/index.js";

/** the normal clients' p99 latency with a hostile client among them, over without, at most (#26) */
const MAX_P99_RATIO = 1.5;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "30" },
    clients: { type: "string", default: "16" },
    base: { type: "string" },
    hostile: { type: "boolean", default: false },
  },
  strict: true,
});
const seconds = Number(values.seconds),
  clients = Number(values.clients);
if (!(seconds > 0) || !Number.isInteger(clients) || clients < 1) {
  console.error("usage: npm run load -- [--seconds 30] [--clients 16] [--base http://127.0.0.1:8080] [--hostile]");
  process.exit(2);
}
const log = (line: string) => console.error(line);

async function mixedRun(): Promise<boolean> {
  // one server for both runs, so that the ratio compares like with like
  const server = values.base ? undefined : await startServer([...LOAD_SERVER_ARGS]);
  const base = values.base ?? server!.base;
  try {
    log("run 1 of 2: normal clients only");
    const plain = await runLoad({ seconds, clients, base, log });
    console.log(formatSummary(plain));
    log("run 2 of 2: the same, and one hostile client");
    const mixed = await runLoad({ seconds, clients, base, log, hostile: true });
    console.log(formatSummary(mixed));
    const ratio = mixed.latencyMs.p99 / plain.latencyMs.p99;
    const problems = [...plain.violations, ...mixed.violations];
    if (!(ratio <= MAX_P99_RATIO)) problems.push(`p99 ratio ${ratio.toFixed(2)} above ${MAX_P99_RATIO}`);
    if (server) {
      const serverLog = server.log();
      const errors = errorLogLines(serverLog);
      if (errors.length > 0) problems.push(`the server logged ${errors.length} error(s), first: ${errors[0]!.slice(0, 300)}`);
      if (serverLog.includes(HOSTILE_SECRET)) problems.push("a hostile request's text reached the server's log");
    }
    console.log(
      `normal clients' p99 latency: ${plain.latencyMs.p99.toFixed(0)} ms alone, ${mixed.latencyMs.p99.toFixed(0)} ms with a hostile client ` +
        `(${mixed.hostile!.requests} hostile requests): ratio ${ratio.toFixed(2)} (at most ${MAX_P99_RATIO}); ` +
        `p50 ${plain.latencyMs.p50.toFixed(0)} -> ${mixed.latencyMs.p50.toFixed(0)} ms`,
    );
    for (const problem of problems) console.log(`  - ${problem}`);
    return problems.length === 0;
  } finally {
    await server?.stop();
  }
}

try {
  if (values.hostile) process.exit((await mixedRun()) ? 0 : 1);
  const summary = await runLoad({ seconds, clients, ...(values.base ? { base: values.base } : {}), log });
  console.log(formatSummary(summary));
  process.exit(summary.violations.length === 0 ? 0 : 1);
} catch (err) {
  console.error(err);
  process.exit(1);
}
