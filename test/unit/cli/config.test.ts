// `serve`'s options (issue #26): API keys (a blank key stops the server instead of leaving it open, keys
// come from a file too, which hosts count as this machine only: no warning there), the sampling budget.
import t from "tap";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, parseServeConfig } from "../../../src/cli/config.js";
import { isLoopback } from "../../../src/cli/serve.js";

const dir = mkdtempSync(join(tmpdir(), "pasta-config-"));
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

t.test("keys from flags, the environment and a file, combined", async (t) => {
  t.same(parseServeConfig(["--api-key", "k1", "--api-key", "k2"], {})["api-key"], ["k1", "k2"]);
  t.same(parseServeConfig([], { PASTA_API_KEYS: "a, b" })["api-key"], ["a", "b"], "spaces around a comma are not part of a key");
  const keys = file("keys", "# the gateway's key\nfrom-file-1\n\n  from-file-2  \r\n");
  t.same(parseServeConfig(["--api-key", "k1", "--api-key-file", keys], {})["api-key"], ["k1", "from-file-1", "from-file-2"]);
  t.same(parseServeConfig([], { PASTA_API_KEYS_FILE: keys })["api-key"], ["from-file-1", "from-file-2"]);
  t.same(parseServeConfig([], { PASTA_API_KEYS: "" })["api-key"], [], "an empty variable is unset: no keys");
});

t.test(
  "a blank key, a key with whitespace, an empty or unreadable key file: an error naming the option, never an open server",
  async (t) => {
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [["--api-key", " "], {}, /--api-key \(or PASTA_API_KEYS\): a key is blank/],
      [["--api-key", "k1", "--api-key", ""], {}, /a key is blank/],
      [[], { PASTA_API_KEYS: "," }, /a key is blank/],
      [[], { PASTA_API_KEYS: "a,,b" }, /a key is blank/],
      [["--api-key", "two words"], {}, /a key contains whitespace/],
      [["--api-key-file", file("empty", "\n# no key yet\n\n")], {}, /--api-key-file \(or PASTA_API_KEYS_FILE\): .*empty holds no key/],
      [["--api-key-file", join(dir, "missing")], {}, /cannot read .*missing: ENOENT/],
      [["--api-key-file", file("spaced", "ok\nnot ok\n")], {}, /key 2 of .*spaced contains whitespace/],
    ];
    for (const [argv, env, message] of cases) {
      t.throws(() => parseServeConfig(argv, env), { name: "ConfigError", message }, `${JSON.stringify(argv)} ${JSON.stringify(env)}`);
    }
    t.ok(new ConfigError("x") instanceof Error);
  },
);

t.test("loopback hosts: no warning about serving without keys", async (t) => {
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) t.ok(isLoopback(host), host);
  for (const host of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.internal", "128.0.0.1"]) t.notOk(isLoopback(host), host);
});

t.test("--sampling-budget-ms: 1000 by default, from the environment too, 0 for none, nothing negative", async (t) => {
  t.equal(parseServeConfig([], {})["sampling-budget-ms"], 1000);
  t.equal(parseServeConfig(["--sampling-budget-ms", "250"], {})["sampling-budget-ms"], 250);
  t.equal(parseServeConfig([], { PASTA_SAMPLING_BUDGET_MS: "0" })["sampling-budget-ms"], 0);
  t.throws(() => parseServeConfig(["--sampling-budget-ms", "-1"], {}), { name: "ConfigError", message: /sampling-budget-ms/ });
});
