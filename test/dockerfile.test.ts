// docker/Dockerfile (and Dockerfile.cuda) held to what CI runs outside Docker: every project command
// of the build is one .ci/run runs; the ENTRYPOINT's command is run here (and behind the gateway in
// test/gateway.test.ts) against the built dist/, with the image's environment; the HEALTHCHECK's
// command is run against it. Plus what the image must be: slim, non-root, an init process, the engine
// build found at run time, a build context without node_modules.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { STORIES_MODEL } from "./helpers.js";
import {
  ciCommands, distState, DOCKERFILE, DOCKERFILE_CUDA, entrypointCommand, execForm, freePort, healthcheckCommand, isProjectCommand, parseDockerfile,
  ROOT, runCommands, stageEnv, startEntrypoint, type Instruction,
} from "./deployment.js";

/** Project commands of the image's build that CI does not run, and why that is fine. */
const NOT_RUN_BY_CI: Record<string, string> = {
  "npm prune --omit=dev --omit=optional": "packaging only, not run by CI, whose tests need the dev dependencies (docs/deployment.md: how the pruned tree was checked)",
  "npm run build -- --cuda": "the build CI runs, with --cuda: not run by CI, which has no CUDA toolkit",
};

const cpu = parseDockerfile(DOCKERFILE);
const cuda = parseDockerfile(DOCKERFILE_CUDA);
const lastStage = (ins: Instruction[]) => Math.max(...ins.map((i) => i.stage));
const stageNamed = (ins: Instruction[], name: string) => ins.find((i) => i.keyword === "FROM" && new RegExp(`\\bAS ${name}$`, "i").test(i.args))!.stage;
const inStage = (ins: Instruction[], stage: number, keyword: string) => ins.filter((i) => i.stage === stage && i.keyword === keyword);
const projectCommands = (ins: Instruction[]) => ins.filter((i) => i.keyword === "RUN").flatMap((i) => runCommands(i.args)).filter(isProjectCommand);

t.test("the image's build runs the commands CI runs", async (t) => {
  const ci = ciCommands();
  t.ok(ci.includes("npm ci --no-audit --no-fund") && ci.includes("npm run build"), ".ci/run installs and builds");
  for (const [name, ins] of [["Dockerfile", cpu], ["Dockerfile.cuda", cuda]] as const) {
    const commands = projectCommands(ins);
    for (const command of commands) {
      t.ok(ci.includes(command) || command in NOT_RUN_BY_CI, `${name}: \`${command}\`: ${ci.includes(command) ? "run by .ci/run" : NOT_RUN_BY_CI[command] ?? "NOT run by .ci/run"}`);
    }
    const install = commands.indexOf("npm ci --no-audit --no-fund");
    const build = commands.findIndex((c) => c === "npm run build" || c === "npm run build -- --cuda");
    t.ok(install >= 0 && build > install, `${name}: \`npm ci\`, then the build`);
    // .ci/run's own environment for these commands
    const ciEnv = readFileSync(join(ROOT, ".ci", "run"), "utf8").match(/^export (\w+)=(\S+)/gm)!.map((l) => l.slice("export ".length).split("="));
    const builderEnv = stageEnv(ins, stageNamed(ins, "builder"));
    for (const [k, v] of ciEnv) t.equal(builderEnv[k!], v, `${name}: the builder sets ${k}=${v} as CI does`);
  }
  t.match(readFileSync(join(ROOT, "native", "build.mjs"), "utf8"), /args\.has\("--cuda"\)/, "native/build.mjs takes --cuda");
  t.same(cuda.filter((i) => ["ENTRYPOINT", "HEALTHCHECK", "VOLUME", "USER", "EXPOSE"].includes(i.keyword)).map((i) => [i.keyword, i.args]),
    cpu.filter((i) => ["ENTRYPOINT", "HEALTHCHECK", "VOLUME", "USER", "EXPOSE"].includes(i.keyword)).map((i) => [i.keyword, i.args]),
    "the CUDA image starts, is checked and runs as the CPU one");
});

t.test("the engine build is found at run time: the same node-llama-cpp build options in both stages", async (t) => {
  // node-llama-cpp names its build folder after NODE_LLAMA_CPP_CMAKE_OPTION_* and looks it up by them:
  // a runtime stage without the builder's values refuses to start ("the patched engine is not built")
  for (const [name, ins] of [["Dockerfile", cpu], ["Dockerfile.cuda", cuda]] as const) {
    const options = (stage: number) => Object.fromEntries(Object.entries(stageEnv(ins, stage)).filter(([k]) => k.startsWith("NODE_LLAMA_CPP_CMAKE_OPTION_")));
    const built = options(stageNamed(ins, "builder"));
    t.ok(Object.keys(built).length > 0, `${name}: build options ${JSON.stringify(built)}`);
    t.same(options(lastStage(ins)), built, `${name}: the runtime stage has the same ones`);
    t.equal(built.NODE_LLAMA_CPP_CMAKE_OPTION_GGML_NATIVE, "OFF", `${name}: compiled for any x86-64 CPU with AVX2, not the build machine's`);
  }
  const cudaArchs = stageEnv(cuda, lastStage(cuda)).NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES;
  t.equal(cudaArchs, "80;86;89;90", "the documented default CUDA architectures");
});

t.test("the runtime image: slim, non-root, an init process, the model volume", async (t) => {
  const runtime = lastStage(cpu);
  t.match(inStage(cpu, runtime, "FROM")[0]!.args, /^node:\$\{NODE_VERSION\}-bookworm-slim$/, "node:20-bookworm-slim");
  t.match(cpu.find((i) => i.stage === -1 && i.keyword === "ARG" && i.args.startsWith("NODE_VERSION="))!.args, /^NODE_VERSION=20$/, "Node 20");
  const user = inStage(cpu, runtime, "USER").at(-1)?.args ?? "root";
  t.notMatch(user, /^(root|0)(:|$)/, `runs as ${user}, not root`);
  const installed = inStage(cpu, runtime, "RUN").flatMap((i) => runCommands(i.args)).filter((c) => c.startsWith("apt-get install")).join(" ");
  t.match(installed, /\btini\b/, "tini from Debian");
  const entry = execForm(inStage(cpu, runtime, "ENTRYPOINT")[0]!.args)!;
  t.same(entry.slice(0, 2), ["/usr/bin/tini", "--"], "tini is PID 1 and forwards SIGTERM");
  const env = stageEnv(cpu, runtime);
  t.equal(env.PASTA_HOST, "0.0.0.0", "listens on all interfaces in the container");
  t.same(inStage(cpu, runtime, "EXPOSE").map((i) => i.args), [env.PASTA_PORT], "exposes PASTA_PORT");
  t.match(inStage(cpu, runtime, "VOLUME")[0]!.args, /"\/models"/, "models in a volume");
  t.equal(env.PASTA_MODELS_DIR, "/models", "downloads go to the volume");
  const copies = inStage(cpu, runtime, "COPY").map((i) => i.args);
  for (const path of ["node_modules", "dist"]) t.ok(copies.some((c) => c.startsWith("--from=builder") && c.includes(`/app/${path} `)), `${path} from the builder`);
  t.ok(copies.some((c) => /^prompts /.test(c)), "prompts/ (read at run time: AutoPASTA, built-in profiling tasks)");
  const hc = cpu.find((i) => i.keyword === "HEALTHCHECK")!.args;
  t.match(hc, /--start-period=\d+s/, "a start period for loading the model");
});

t.test("the ENTRYPOINT's command is the built CLI", async (t) => {
  const command = entrypointCommand(cpu);
  t.same(command, ["node", "dist/cli/main.js", "serve"]);
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  t.equal(pkg.bin["pasta-server"], command[1], "package.json's bin");
  const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8"));
  t.same([tsconfig.compilerOptions.rootDir, tsconfig.compilerOptions.outDir], ["src", "dist"], "tsc (npm run build) compiles src/ into dist/");
  t.ok(existsSync(join(ROOT, "src", "cli", "main.ts")), "from src/cli/main.ts");
});

t.test("the ENTRYPOINT serves with the image's environment, and the HEALTHCHECK passes against it", async (t) => {
  const dist = distState();
  if (dist.missing) throw new Error(dist.missing);
  if (dist.stale) t.comment(dist.stale);
  const env = Object.fromEntries(Object.entries(stageEnv(cpu, lastStage(cpu))).filter(([k]) => !k.startsWith("NODE_LLAMA_CPP_CMAKE_OPTION_")));
  const server = await startEntrypoint(entrypointCommand(cpu), {
    ...env, PASTA_MODEL: STORIES_MODEL, PASTA_HOST: "127.0.0.1", PASTA_PORT: "0", PASTA_MODELS_DIR: mkdtempSync(join(tmpdir(), "pasta-models-")),
  });
  t.teardown(() => server.stop());
  const res = await fetch(`${server.base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 4 }) });
  t.equal(res.status, 200, "it serves");

  const healthcheck = healthcheckCommand(cpu);
  t.equal(healthcheck[0], "node", "the slim image has node, not curl");
  const run = (port: number) => new Promise<number | null>((resolve) => {
    // as Docker runs it in the container: the image's environment, PASTA_PORT the port listened on
    const child = spawn(process.execPath, healthcheck.slice(1), { env: { PATH: process.env.PATH, PASTA_PORT: String(port) }, stdio: "ignore" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000); // HEALTHCHECK --timeout=5s
    child.once("exit", (code) => { clearTimeout(timer); resolve(code); });
  });
  t.equal(await run(server.port), 0, "healthy once /ready is 200");

  const loading = createServer((req, res) => { res.statusCode = req.url === "/ready" ? 503 : 200; res.end('{"status":"loading"}'); });
  await new Promise<void>((r) => loading.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => loading.close(() => r())));
  t.equal(await run((loading.address() as { port: number }).port), 1, "unhealthy while /ready is 503 (loading, draining)");
  t.equal(await run(await freePort()), 1, "unhealthy when nothing listens");
});

t.test(".dockerignore: the build context has what the build copies, and not node_modules, dist or models", async (t) => {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  // Docker's rule: the last pattern that matches a path decides; `dir/` covers what is under it
  const glob = (p: string) => new RegExp(`^${p.replace(/\/$/, "").replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*/g, "\u0000").replace(/\*/g, "[^/]*").replace(/\u0000/g, ".*")}(/.*)?$`);
  const included = (path: string) => {
    let keep = true;
    for (const p of patterns) {
      const negated = p.startsWith("!");
      if (glob(negated ? p.slice(1) : p).test(path)) keep = negated;
    }
    return keep;
  };
  const sources = [...cpu, ...cuda].filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from")).flatMap((i) => i.args.split(" ").slice(0, -1));
  t.ok(sources.length >= 5, `copied from the context: ${[...new Set(sources)].join(", ")}`);
  for (const source of new Set(sources)) {
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
    t.ok(included(source) && included(`${source}/x`), `${source} is in the build context`);
  }
  for (const path of ["node_modules", "node_modules/node-llama-cpp/package.json", "dist/cli/main.js", ".git", "scratch", "models/model.gguf", "stories260K.gguf", ".tap", "test"]) {
    t.notOk(included(path), `${path} is not`);
  }
});
