// EventStream's backpressure on a real socket (#26 item 9): a reader that leaves what it was sent
// unread for the slow-reader timeout is disconnected; one that reads keeps its stream.
import { createServer, type ServerResponse } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import type { FastifyReply } from "fastify";
import t, { type Test } from "tap";
import { EventStream } from "../../../src/server/sse.js";

const TIMEOUT_MS = 300;
const BIG = { text: "x".repeat(16 * 1024 * 1024) }; // more than the kernel's socket buffers hold

/** A server whose one response is an EventStream sending BIG, then [DONE]; resolves with a client socket that sent the request. */
async function streamTo(t: Test, pause: boolean): Promise<Socket> {
  const server = createServer((_req, res: ServerResponse) => {
    const reply = { hijack() {}, raw: res, getHeaders: () => ({}), slowReaderTimeoutMs: TIMEOUT_MS } as unknown as FastifyReply;
    const stream = new EventStream(reply);
    stream.send(BIG);
    stream.done();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
  socket.on("error", () => {});
  if (pause) socket.pause();
  socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  return socket;
}

t.test("a reader that leaves the stream unread past the slow-reader timeout is disconnected", async (t) => {
  const socket = await streamTo(t, true);
  await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 1500));
  // what the kernel had buffered still arrives; then the connection ends, without the rest
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    received += chunk;
  });
  socket.resume();
  const closed = await Promise.race([
    new Promise((resolve) => socket.once("close", () => resolve(true))),
    new Promise((resolve) => setTimeout(() => resolve(false), 10_000)),
  ]);
  t.ok(closed, "the server closed the connection");
  t.ok(received.length < BIG.text.length, `only ${received.length} of ${BIG.text.length + 30} characters were sent`);
  t.notMatch(received, /data: \[DONE\]/, "the stream was cut, not finished");
});

t.test("a reader that reads gets the whole stream, and the connection stays open", async (t) => {
  const socket = await streamTo(t, false);
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    received += chunk;
  });
  while (!received.includes("data: [DONE]")) await new Promise((resolve) => setTimeout(resolve, 20));
  t.ok(received.length > BIG.text.length, `all ${received.length} characters arrived`);
  await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS * 2));
  t.notOk(socket.destroyed, "the keep-alive connection is not dropped afterwards");
});
