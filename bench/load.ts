// npm run load [-- --seconds 30 --clients 16 [--base http://127.0.0.1:8080]]: proof under load, on
// loopback. Starts a real `pasta-server serve` (stories260K, --parallel 4 --max-queue 16 --ctx-size 512)
// unless --base names a running one, and runs `clients` closed loops for `seconds`, each sending its
// next request as soon as the last one ended; requests mix the three generation endpoints, streaming
// and not, steered and not, greedy and sampled. Every failed check is a violation (non-zero exit).
// What is sent and checked: harness/load.ts (runLoad), which test/process/server/load.test.ts runs too.
// Prints throughput (requests/s, completion tokens/s from the server's own counter), latency
// percentiles (whole request; time to first token for streams), answers by status and by kind.
import { parseArgs } from "node:util";
import { formatSummary, runLoad } from "../harness/index.js";

const { values } = parseArgs({
  options: { seconds: { type: "string", default: "30" }, clients: { type: "string", default: "16" }, base: { type: "string" } },
  strict: true,
});
const seconds = Number(values.seconds),
  clients = Number(values.clients);
if (!(seconds > 0) || !Number.isInteger(clients) || clients < 1) {
  console.error("usage: npm run load -- [--seconds 30] [--clients 16] [--base http://127.0.0.1:8080]");
  process.exit(2);
}
try {
  const summary = await runLoad({ seconds, clients, ...(values.base ? { base: values.base } : {}), log: (line) => console.error(line) });
  console.log(formatSummary(summary));
  process.exit(summary.violations.length === 0 ? 0 : 1);
} catch (err) {
  console.error(err);
  process.exit(1);
}
