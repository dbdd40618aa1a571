// docker/Dockerfile (and Dockerfile.cuda) held to what CI runs outside Docker: every project command
// of the build is one .ci/run runs; the ENTRYPOINT's command is the built CLI (it is run in
// test/process/deploy/entrypoint.test.ts, and behind the gateway in test/process/deploy/gateway.test.ts).
// Plus what the image must be: slim, non-root, an init process, the engine build found at run time,
// a build context without node_modules.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import {
  ciCommands,
  DOCKERFILE,
  DOCKERFILE_CUDA,
  entrypointCommand,
  execForm,
  globalArgs,
  isProjectCommand,
  lastStage,
  parseDockerfile,
  ROOT,
  runCommands,
  runFlags,
  stageBase,
  stageEnv,
  type Instruction,
} from "../../support/deployment.js";

/** Project commands of the image's build that CI does not run, and why that is fine. */
const NOT_RUN_BY_CI: Record<string, string> = {
  "npm prune --omit=dev --omit=optional":
    "packaging only, not run by CI's npm test, whose tests need the dev dependencies (npm run test:docker runs the pruned image)",
  "npm run build:native -- --cuda": "the engine's build CI runs, with --cuda: not run by CI, which has no CUDA toolkit",
};

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  bin: Record<string, string>;
};
/**
 * `npm run build` as two layers: the engine (`build:native`), then TypeScript (`build:ts`), so that a
 * change to src/ does not rebuild the engine. They are the two halves of the build script, which .ci/run runs.
 */
const BUILD_HALVES = ["npm run build:native", "npm run build:ts"];

const cpu = parseDockerfile(DOCKERFILE);
const cuda = parseDockerfile(DOCKERFILE_CUDA);
const stageNamed = (ins: Instruction[], name: string) =>
  ins.find((i) => i.keyword === "FROM" && new RegExp(`\\bAS ${name}$`, "i").test(i.args))!.stage;
const inStage = (ins: Instruction[], stage: number, keyword: string) => ins.filter((i) => i.stage === stage && i.keyword === keyword);
const projectCommands = (ins: Instruction[]) =>
  ins
    .filter((i) => i.keyword === "RUN")
    .flatMap((i) => runCommands(i.args))
    .filter(isProjectCommand);

t.test("the image's build runs the commands CI runs", async (t) => {
  const ci = ciCommands();
  t.ok(ci.includes("npm ci --no-audit --no-fund") && ci.includes("npm run build"), ".ci/run installs and builds");
  for (const [name, ins] of [
    ["Dockerfile", cpu],
    ["Dockerfile.cuda", cuda],
  ] as const) {
    const commands = projectCommands(ins);
    const why = (command: string) =>
      ci.includes(command)
        ? "run by .ci/run"
        : BUILD_HALVES.includes(command) && ci.includes("npm run build")
          ? "half of `npm run build`, which .ci/run runs"
          : (NOT_RUN_BY_CI[command] ?? null);
    for (const command of commands) t.ok(why(command), `${name}: \`${command}\`: ${why(command) ?? "NOT run by .ci/run"}`);
    const install = commands.indexOf("npm ci --no-audit --no-fund");
    const native = commands.findIndex((c) => c === "npm run build:native" || c === "npm run build:native -- --cuda");
    const ts = commands.indexOf("npm run build:ts");
    t.ok(install >= 0 && native > install && ts > native, `${name}: \`npm ci\`, then the engine, then TypeScript`);
    // .ci/run's own environment for these commands
    const ciEnv = readFileSync(join(ROOT, ".ci", "run"), "utf8")
      .match(/^export (\w+)=(\S+)/gm)!
      .map((l) => l.slice("export ".length).split("="));
    const builderEnv = stageEnv(ins, stageNamed(ins, "builder"));
    for (const [k, v] of ciEnv) t.equal(builderEnv[k!], v, `${name}: the builder sets ${k}=${v} as CI does`);
  }
  t.equal(pkg.scripts.build, `${pkg.scripts["build:native"]} && npm run build:ts`, "npm run build is build:native, then build:ts");
  t.match(readFileSync(join(ROOT, "native", "build.mjs"), "utf8"), /args\.has\("--cuda"\)/, "native/build.mjs takes --cuda");
  t.same(
    cuda.filter((i) => ["ENTRYPOINT", "HEALTHCHECK", "VOLUME", "USER", "EXPOSE"].includes(i.keyword)).map((i) => [i.keyword, i.args]),
    cpu.filter((i) => ["ENTRYPOINT", "HEALTHCHECK", "VOLUME", "USER", "EXPOSE"].includes(i.keyword)).map((i) => [i.keyword, i.args]),
    "the CUDA image starts, is checked and runs as the CPU one",
  );
});

t.test("the engine build is found at run time: the same node-llama-cpp build options in both stages", async (t) => {
  // node-llama-cpp names its build folder after NODE_LLAMA_CPP_CMAKE_OPTION_* and looks it up by them:
  // a runtime stage without the builder's values refuses to start ("the patched engine is not built")
  for (const [name, ins] of [
    ["Dockerfile", cpu],
    ["Dockerfile.cuda", cuda],
  ] as const) {
    const options = (stage: number) =>
      Object.fromEntries(Object.entries(stageEnv(ins, stage)).filter(([k]) => k.startsWith("NODE_LLAMA_CPP_CMAKE_OPTION_")));
    const built = options(stageNamed(ins, "builder"));
    t.ok(Object.keys(built).length > 0, `${name}: build options ${JSON.stringify(built)}`);
    t.same(options(lastStage(ins)), built, `${name}: the runtime stage has the same ones`);
    t.equal(
      built.NODE_LLAMA_CPP_CMAKE_OPTION_GGML_NATIVE,
      "OFF",
      `${name}: compiled for any x86-64 CPU with AVX2, not the build machine's`,
    );
  }
  const cudaArchs = stageEnv(cuda, lastStage(cuda)).NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES;
  t.equal(cudaArchs, "80;86;89;90", "the documented default CUDA architectures");
});

t.test("the runtime image: slim, non-root, an init process, the model volume", async (t) => {
  const runtime = lastStage(cpu);
  t.equal(stageBase(cpu, runtime), "node:20-bookworm-slim", "node:20-bookworm-slim by default");
  const user = inStage(cpu, runtime, "USER").at(-1)?.args ?? "root";
  t.notMatch(user, /^(root|0)(:|$)/, `runs as ${user}, not root`);
  const installed = inStage(cpu, runtime, "RUN")
    .flatMap((i) => runCommands(i.args))
    .filter((c) => c.startsWith("apt-get install"))
    .join(" ");
  t.match(installed, /\btini\b/, "tini from Debian");
  const entry = execForm(inStage(cpu, runtime, "ENTRYPOINT")[0]!.args)!;
  t.same(entry.slice(0, 2), ["/usr/bin/tini", "--"], "tini is PID 1 and forwards SIGTERM");
  const env = stageEnv(cpu, runtime);
  t.equal(env.PASTA_HOST, "0.0.0.0", "listens on all interfaces in the container");
  t.same(
    inStage(cpu, runtime, "EXPOSE").map((i) => i.args),
    [env.PASTA_PORT],
    "exposes PASTA_PORT",
  );
  t.match(inStage(cpu, runtime, "VOLUME")[0]!.args, /"\/models"/, "models in a volume");
  t.equal(env.PASTA_MODELS_DIR, "/models", "downloads go to the volume");
  const copies = inStage(cpu, runtime, "COPY").map((i) => i.args);
  for (const path of ["node_modules", "dist"])
    t.ok(
      copies.some((c) => c.startsWith("--from=builder") && c.includes(`/app/${path} `)),
      `${path} from the builder`,
    );
  t.ok(
    copies.some((c) => /^prompts /.test(c)),
    "prompts/ (read at run time: AutoPASTA, built-in profiling tasks)",
  );
  t.ok(
    copies.some((c) => /^profiles /.test(c)),
    "profiles/ (the shipped head profiles, found by model sha256)",
  );
  t.ok(
    copies.some((c) => /^playground /.test(c)),
    "playground/ (the page GET /playground serves)",
  );
  const hc = cpu.find((i) => i.keyword === "HEALTHCHECK")!.args;
  t.match(hc, /--start-period=\d+s/, "a start period for loading the model");
});

t.test("base images are build arguments, the official ones by default; BuildKit's built-in frontend", async (t) => {
  const official: Record<string, Record<string, string>> = {
    Dockerfile: { builder: "node:20-bookworm", runtime: "node:20-bookworm-slim" },
    "Dockerfile.cuda": {
      node: "node:20-bookworm-slim",
      builder: "nvidia/cuda:12.6.3-devel-ubuntu24.04",
      runtime: "nvidia/cuda:12.6.3-runtime-ubuntu24.04",
    },
  };
  for (const [name, path, ins] of [
    ["Dockerfile", DOCKERFILE, cpu],
    ["Dockerfile.cuda", DOCKERFILE_CUDA, cuda],
  ] as const) {
    const args = globalArgs(ins);
    for (const from of ins.filter((i) => i.keyword === "FROM")) {
      const m = /^\$\{(\w+_IMAGE)\}(?: AS (\w+))?$/i.exec(from.args);
      t.ok(m && m[1]! in args, `${name}:${from.line}: FROM a build argument (${from.args})`);
      const stage = m?.[2] ?? "runtime";
      t.equal(stageBase(ins, from.stage), official[name]![stage], `${name}: ${m?.[1]} defaults to ${official[name]![stage]}`);
    }
    t.notMatch(
      readFileSync(path, "utf8"),
      /^#\s*syntax\s*=/im,
      `${name}: no \`# syntax=\` line (it would fetch the frontend from Docker Hub)`,
    );
  }
});

t.test("an extra CA bundle is a build secret for npm ci, never a layer", async (t) => {
  for (const [name, ins] of [
    ["Dockerfile", cpu],
    ["Dockerfile.cuda", cuda],
  ] as const) {
    const install = ins.find((i) => i.keyword === "RUN" && runCommands(i.args).includes("npm ci --no-audit --no-fund"))!;
    t.same(runFlags(install.args), ["--mount=type=secret,id=extra_ca"], `${name}: npm ci mounts the secret extra_ca`);
    t.ok(
      runCommands(install.args).includes("then export NODE_EXTRA_CA_CERTS=/run/secrets/extra_ca"),
      `${name}: npm trusts it, in that RUN only`,
    );
    const elsewhere = ins.filter((i) => i !== install && /extra_ca|NODE_EXTRA_CA_CERTS|\.crt\b|\.pem\b/.test(i.args));
    t.same(
      elsewhere.map((i) => `${i.keyword} ${i.args}`),
      [],
      `${name}: no ENV, ARG, COPY or other RUN names it`,
    );
  }
});

t.test("the drain on SIGTERM fits `docker stop`'s default 10 s", async (t) => {
  const env = stageEnv(cpu, lastStage(cpu));
  const drain = Number(env.PASTA_SHUTDOWN_TIMEOUT);
  const closeGraceS = Number(/const CLOSE_GRACE_MS = (\d+);/.exec(readFileSync(join(ROOT, "src", "cli", "serve.ts"), "utf8"))![1]) / 1000;
  // and 2 s to spare for the engine's disposal and the exit on a busy machine (npm run test:docker measures it)
  t.ok(drain + closeGraceS + 2 <= 10, `PASTA_SHUTDOWN_TIMEOUT=${drain} s + ${closeGraceS} s to close connections + 2 s to spare <= 10 s`);
  t.equal(stageEnv(cuda, lastStage(cuda)).PASTA_SHUTDOWN_TIMEOUT, env.PASTA_SHUTDOWN_TIMEOUT, "the CUDA image too");
});

t.test("the ENTRYPOINT's command is the built CLI", async (t) => {
  const command = entrypointCommand(cpu);
  t.same(command, ["node", "dist/cli/main.js", "serve"]);
  t.equal(pkg.bin["pasta-server"], command[1], "package.json's bin");
  const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8"));
  t.same(
    [tsconfig.compilerOptions.rootDir, tsconfig.compilerOptions.outDir],
    ["src", "dist"],
    "tsc (npm run build) compiles src/ into dist/",
  );
  t.ok(existsSync(join(ROOT, "src", "cli", "main.ts")), "from src/cli/main.ts");
});

t.test(".dockerignore: the build context has what the build copies, and not node_modules, dist or models", async (t) => {
  const patterns = readFileSync(join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  // Docker's rule: the last pattern that matches a path decides; `dir/` covers what is under it
  const glob = (p: string) =>
    new RegExp(
      `^${p
        .replace(/\/$/, "")
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*\*/g, "\uE000")
        .replace(/\*/g, "[^/]*")
        .replace(/\uE000/g, ".*")}(/.*)?$`,
    );
  const included = (path: string) => {
    let keep = true;
    for (const p of patterns) {
      const negated = p.startsWith("!");
      if (glob(negated ? p.slice(1) : p).test(path)) keep = negated;
    }
    return keep;
  };
  const sources = [...cpu, ...cuda]
    .filter((i) => i.keyword === "COPY" && !i.args.startsWith("--from"))
    .flatMap((i) => i.args.split(" ").slice(0, -1));
  t.ok(sources.length >= 5, `copied from the context: ${[...new Set(sources)].join(", ")}`);
  for (const source of new Set(sources)) {
    t.ok(existsSync(join(ROOT, source)), `${source} exists`);
    t.ok(included(source) && included(`${source}/x`), `${source} is in the build context`);
  }
  for (const path of [
    "node_modules",
    "node_modules/node-llama-cpp/package.json",
    "dist/cli/main.js",
    ".git",
    "scratch",
    "models/model.gguf",
    "stories260K.gguf",
    ".tap",
    "test",
  ]) {
    t.notOk(included(path), `${path} is not`);
  }
});
