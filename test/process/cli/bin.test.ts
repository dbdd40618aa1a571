// The README's command: `npx pasta-server ...` runs the built CLI (dist/, from `npm run build`).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import t from "tap";

t.test("npx pasta-server runs the built bin", async (t) => {
  const { stdout } = await promisify(execFile)("npx", ["--no", "--", "pasta-server", "--help"], {
    env: { ...process.env, NODE_OPTIONS: "" },
  });
  t.match(stdout, /pasta-server serve/);
  t.match(stdout, /pasta-server profile/);
});
