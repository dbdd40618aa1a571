// Clients that send or read slowly (issue #26, items 8 and 9), against a real server on raw sockets:
// a request trickled a byte at a time is dropped after the read timeout, and on SIGTERM a response
// still being written to a slow reader is finished, not cut, within the shutdown deadline. (A stream
// whose reader stops reading: test/unit/server/sse.test.ts.)
import { connect, type Socket } from "node:net";
import t, { type Test } from "tap";
import { sleep, startServer, waitForExit, type ServerProcess } from "../../../harness/index.js";

async function serverFor(t: Test, args: string[]): Promise<ServerProcess> {
  const server = await startServer(args);
  t.teardown(() => server.stop());
  return server;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with the ms from now until the server closes the socket (or `limitMs`, then null). */
function closedWithin(socket: Socket, limitMs: number): Promise<number | null> {
  const started = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), limitMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
  });
}

/**
 * A request whose answer is megabytes (more than the kernel's socket buffers hold): a long prompt
 * echoed with each token's 20 most likely alternatives, computed in one prompt evaluation.
 */
const LARGE = {
  prompt: "Once upon a time, there was a little girl named Lily. She liked to play in the park with her dog. ".repeat(500),
  max_tokens: 1,
  echo: true,
  logprobs: 20,
};

const post = (path: string, body: string) =>
  `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

t.test("a request body trickled one byte a second is dropped after --read-timeout", async (t) => {
  const server = await serverFor(t, ["--read-timeout", "2"]);
  const socket = await open(server.port);
  socket.on("error", () => {});
  socket.resume();
  const body = JSON.stringify({ prompt: "Once upon a time", max_tokens: 2 });
  socket.write(post("/v1/generate", body).slice(0, -body.length));
  const closed = closedWithin(socket, 15_000);
  let sent = 0;
  const trickle = setInterval(() => {
    if (!socket.destroyed && sent < body.length) socket.write(body[sent++]!);
  }, 1000);
  const ms = await closed;
  clearInterval(trickle);
  t.ok(ms !== null && ms < 5000, `the server closed the connection after ${ms === null ? "more than 15000" : ms.toFixed(0)} ms`);
  t.ok(sent < body.length, `before the body was complete (${sent} of ${body.length} bytes)`);
});

t.test("headers that never end are dropped after --read-timeout", async (t) => {
  const server = await serverFor(t, ["--read-timeout", "2"]);
  const socket = await open(server.port);
  socket.on("error", () => {});
  socket.write("GET /health HTTP/1.1\r\nHost: x\r\n");
  const closed = closedWithin(socket, 15_000);
  const trickle = setInterval(() => !socket.destroyed && socket.write("X-A: b\r\n"), 500);
  const ms = await closed;
  clearInterval(trickle);
  t.ok(ms !== null && ms < 5000, `closed after ${ms === null ? "more than 15000" : ms.toFixed(0)} ms`);
  t.equal((await fetch(`${server.base}/health`)).status, 200, "the server answers others meanwhile");
});

t.test("SIGTERM: a response still being written to a slow reader is finished within the shutdown deadline", async (t) => {
  const server = await serverFor(t, ["--shutdown-timeout", "20", "--ctx-size", "16384"]);
  const socket = await open(server.port);
  socket.on("error", () => {});
  socket.pause();
  socket.write(post("/v1/completions", JSON.stringify(LARGE)));
  // the generation ends within seconds (stories260K); its body of megabytes then waits on this socket
  while (!server.log().includes("generation finished")) await sleep(100);
  const exited = waitForExit(server.proc);
  server.proc.kill("SIGTERM");
  await sleep(2500); // past the old fixed 1 s after which every connection was closed
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.resume();
  await new Promise((resolve) => socket.once("close", resolve));
  const response = Buffer.concat(chunks).toString();
  const [head, ...rest] = response.split("\r\n\r\n");
  const length = Number(/content-length: (\d+)/i.exec(head ?? "")?.[1]);
  const received = Buffer.byteLength(rest.join("\r\n\r\n"));
  t.match(head, /^HTTP\/1\.1 200/);
  t.ok(length > 1_000_000, `a large body (${length} bytes)`);
  t.equal(received, length, "all of it arrived");
  t.equal(JSON.parse(rest.join("\r\n\r\n")).usage.completion_tokens, 1, "and it parses");
  t.equal(await exited, 0, "then the server exited 0");
});
