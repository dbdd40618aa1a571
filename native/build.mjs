#!/usr/bin/env node
// Builds pasta-server's patched llama.cpp engine, offline, from the llama.cpp source that the
// node-llama-cpp npm package bundles:
//   1. unpack the bundled source (node-llama-cpp's `source download`, from its git bundle),
//   2. copy our llama.cpp files (native/llama.cpp/), apply native/llama.cpp.patch (the hooks in
//      upstream's files that call them) and add our addon methods,
//   3. build with node-llama-cpp's `source build` (CPU, or CUDA with --cuda).
// Safe to run again: patches are applied once, and an up-to-date build is kept.
//
// Usage: node native/build.mjs [--cuda] [--force] [--incremental]
//   --cuda         build for CUDA (NODE_LLAMA_CPP_CMAKE_OPTION_CMAKE_CUDA_ARCHITECTURES=90 limits archs; set it when serving too)
//   --force        rebuild even when the build is up to date
//   --incremental  developer loop: re-run ninja in the existing build folder (seconds, not minutes)
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const EXPECTED_NODE_LLAMA_CPP = "3.21.1"; // its bundled llama.cpp (v0.4.0) is what our patch targets
const here = dirname(fileURLToPath(import.meta.url));
const args = new Set(process.argv.slice(2));
const gpu = args.has("--cuda") ? "cuda" : "false";

const require = createRequire(import.meta.url);
const packageDir = join(dirname(require.resolve("node-llama-cpp")), ".."); // resolves to dist/index.js
const llamaDir = join(packageDir, "llama");
const llamaCppDir = join(llamaDir, "llama.cpp");
const addonDir = join(llamaDir, "addon");
const stampPath = join(llamaDir, "localBuilds", `pasta-steering-${gpu === "cuda" ? "cuda" : "cpu"}.json`);

const log = (msg) => console.log(`[pasta-server build] ${msg}`);
const fail = (msg) => {
  console.error(`[pasta-server build] error: ${msg}`);
  process.exit(1);
};
const run = (cmd, cmdArgs, options = {}) => execFileSync(cmd, cmdArgs, { stdio: "inherit", ...options });
// a file left as it is when its content is the same: its time stamp then does not make ninja rebuild
// everything that includes it (an incremental build recompiles only what changed)
const copyIfChanged = (from, to) => {
  if (!existsSync(to) || !readFileSync(from).equals(readFileSync(to))) copyFileSync(from, to);
};

const version = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")).version;
if (version !== EXPECTED_NODE_LLAMA_CPP) {
  fail(`node-llama-cpp ${version} is installed, but native/llama.cpp.patch targets ${EXPECTED_NODE_LLAMA_CPP}. Run "npm ci".`);
}

// node-llama-cpp clones from the internet instead of its bundle when these are set
const env = { ...process.env, NODE_LLAMA_CPP_POSTINSTALL: "skip" };
delete env.NODE_LLAMA_CPP_REPO;
delete env.NODE_LLAMA_CPP_REPO_RELEASE;

// 1. bundled source
if (!existsSync(join(llamaCppDir, "CMakeLists.txt"))) {
  log("unpacking the llama.cpp source bundled with node-llama-cpp");
  run("npx", ["--no", "node-llama-cpp", "source", "download", "--skipBuild", "--noUsageExample"], { env });
}

// 2. our own llama.cpp files (native/llama.cpp/: the steering code), then the patch that hooks them
// into upstream's files (native/llama.cpp.patch: includes, calls and declarations only)
const ownDir = join(here, "llama.cpp");
const ownFiles = ["include", "src"].flatMap((dir) => readdirSync(join(ownDir, dir)).map((file) => join(dir, file)));
for (const file of ownFiles) copyIfChanged(join(ownDir, file), join(llamaCppDir, file));
const patchPath = join(here, "llama.cpp.patch");
const git = (gitArgs) => execFileSync("git", ["-C", llamaCppDir, ...gitArgs], { stdio: "pipe" });
const applies = (gitArgs) => {
  try {
    git(gitArgs);
    return true;
  } catch {
    return false;
  }
};
if (applies(["apply", "--reverse", "--check", patchPath])) {
  log("llama.cpp steering patch already applied");
} else if (applies(["apply", "--check", patchPath])) {
  git(["apply", "--whitespace=nowarn", patchPath]);
  log("applied native/llama.cpp.patch");
} else {
  fail(`native/llama.cpp.patch does not apply to ${llamaCppDir}. Remove that folder and run the build again to unpack a clean source.`);
}

// our addon files, and the lines that hook them into node-llama-cpp's AddonContext; each inserted
// block is marked, so a changed block replaces the one from an earlier build
const addonFiles = readdirSync(join(here, "addon"));
for (const file of addonFiles) copyIfChanged(join(here, "addon", file), join(addonDir, file));
// the methods' one list (src/engine/addonMethods.ts, which binding.ts types); C++ names are capitalized
const methodList = readFileSync(join(here, "..", "src", "engine", "addonMethods.ts"), "utf8").match(/ADDON_METHODS = \[([^\]]*)\]/);
if (!methodList) fail("cannot read the addon's methods from src/engine/addonMethods.ts");
const methods = [...methodList[1].matchAll(/"(\w+)"/g)].map(([, js]) => [js, js[0].toUpperCase() + js.slice(1)]);
const addonEdits = [
  [
    "AddonContext.h",
    "        bool memoryDisposed = false;\n",
    "        std::shared_ptr<class PastaGenerationLoop> pastaGenerationLoop; // AddonGenerationLoop.cpp\n" +
      methods.map(([, cpp]) => `        Napi::Value ${cpp}(const Napi::CallbackInfo& info);\n`).join(""),
  ],
  ["AddonContext.cpp", '#include "AddonContext.h"\n', '#include "PastaNative.h"\n'],
  [
    "AddonContext.cpp",
    "void AddonContext::disposeMemory() {\n",
    "    pastaStopGenerationLoop(this); // no decode may be running when llama.cpp frees the context\n",
  ],
  [
    "AddonContext.cpp",
    `                InstanceMethod("restoreCheckpoint", &AddonContext::RestoreCheckpoint),\n`,
    methods.map(([js, cpp]) => `                InstanceMethod("${js}", &AddonContext::${cpp}),\n`).join(""),
  ],
];
const BEGIN = "// pasta-server begin\n";
const END = "// pasta-server end\n";
for (const file of new Set(addonEdits.map(([f]) => f))) {
  const path = join(addonDir, file);
  const original = readFileSync(path, "utf8");
  let source = original.replace(/\/\/ pasta-server begin\n[\s\S]*?\/\/ pasta-server end\n/g, "");
  for (const [, anchor, insertion] of addonEdits.filter(([f]) => f === file)) {
    if (!source.includes(anchor)) fail(`cannot find where to hook pasta-server's addon code into ${path}`);
    source = source.replace(anchor, anchor + BEGIN + insertion + END);
  }
  if (source !== original) {
    writeFileSync(path, source);
    log(`hooked pasta-server's addon code into addon/${file}`);
  }
}

// 3. build
const stamp = createHash("sha256")
  .update(readFileSync(patchPath))
  .update(ownFiles.map((file) => readFileSync(join(ownDir, file), "utf8")).join("\0"))
  .update(addonFiles.map((file) => readFileSync(join(here, "addon", file), "utf8")).join("\0"))
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .update(methods.join())
  .update(gpu)
  .digest("hex");

if (args.has("--incremental")) {
  const buildDir = join(llamaDir, "localBuilds", gpu === "cuda" ? "linux-x64-cuda" : "linux-x64");
  if (!existsSync(join(buildDir, "build.ninja"))) fail(`no build in ${buildDir} yet: run without --incremental first`);
  utimesSync(join(llamaDir, "CMakeLists.txt"), new Date(), new Date()); // re-glob addon/*.cpp: a new addon file joins the build
  run("ninja", ["-C", buildDir]);
  // node-llama-cpp loads from Release/; ninja writes to bin/. Each library is replaced by a rename, not
  // rewritten in place: a process that has the old one loaded (an eval running) keeps its copy intact
  for (const file of readdirSync(join(buildDir, "bin"))) {
    if (!(/\.(so|node)$/.test(file) || file.includes(".so."))) continue;
    const target = join(buildDir, "Release", file);
    copyFileSync(join(buildDir, "bin", file), `${target}.new`);
    renameSync(`${target}.new`, target);
  }
  log("incremental build done");
  process.exit(0);
}

if (!args.has("--force") && existsSync(stampPath) && readFileSync(stampPath, "utf8").trim() === stamp) {
  log(`patched engine (${gpu === "cuda" ? "CUDA" : "CPU"}) is up to date`);
  process.exit(0);
}
log(`building the patched engine for ${gpu === "cuda" ? "CUDA" : "CPU"} (a few minutes)`);
run("npx", ["--no", "node-llama-cpp", "source", "build", "--gpu", gpu, "--noUsageExample"], { env });
writeFileSync(stampPath, `${stamp}\n`);
log("done");
