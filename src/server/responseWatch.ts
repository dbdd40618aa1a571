// Shutdown's last step waits for responses still being written (a large body, a slow reader): Node's
// http.Server.close() destroys every connection whose response has ended, even with megabytes of it
// not yet taken by the client, so the server is closed only once they are flushed.
import type { Server } from "node:http";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface ResponseWatch {
  /** resolves once no connection has a request in flight or bytes its client has not taken, or at `deadline` (a performance.now() time) */
  flushed(deadline: number): Promise<void>;
}

const POLL_MS = 50;

export function watchResponses(server: Server): ResponseWatch {
  const sockets = new Set<Socket>();
  const responding = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      responding.delete(socket);
    });
  });
  server.on("request", (request, response) => {
    responding.add(request.socket);
    response.once("close", () => responding.delete(request.socket));
  });
  const writing = () => [...sockets].filter((s) => !s.destroyed && (responding.has(s) || s.writableLength > 0)).length;
  return {
    async flushed(deadline) {
      while (writing() > 0 && performance.now() < deadline) await sleep(POLL_MS);
    },
  };
}
