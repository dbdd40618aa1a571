// HTTP helpers for talking to a server under test: JSON requests with fetch, and two node:http
// POSTs for what fetch cannot do well (an answer that arrives before the body is sent; reading SSE
// with as little client CPU as possible).
import http from "node:http";
import { SseParser } from "./sse.js";

/** A request body as sent: a string is taken to be JSON text already (e.g. deliberately broken JSON), anything else is JSON.stringify'd. */
const jsonText = (body: unknown): string => (typeof body === "string" ? body : JSON.stringify(body));

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** the body parsed as JSON; undefined when it is not JSON */
  body: any;
  /** milliseconds from sending the request to having read the whole answer */
  ms: number;
}

export interface RequestInit {
  /** default: GET without a body, POST with one */
  method?: string;
  /** sent as JSON (content-type application/json) */
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** `fetch(base + path)` read to its end: status, headers, text and (when it is JSON) the parsed body. */
export async function request(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { ...(init.body === undefined ? {} : { "content-type": "application/json" }), ...init.headers },
    ...(init.body === undefined ? {} : { body: jsonText(init.body) }),
    ...(init.signal ? { signal: init.signal } : {}),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body, ms: performance.now() - started };
}

/** POST `body` as JSON; the Response itself, unread (for streams, or to read it as it arrives). */
export function postJson(
  url: string,
  body: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...init.headers },
    body: jsonText(body),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

/** POST `body` as JSON and return the parsed answer; throws (with the answer) unless the status is 200. */
export async function postOk(base: string, path: string, body: unknown): Promise<any> {
  const res = await postJson(`${base}${path}`, body);
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

/**
 * A POST with node:http that reads the answer even when the server answers before the body is
 * sent (413): the server then closes the connection, and fetch reports only the failed write.
 */
export function postRaw(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { method: "POST", headers }, (res) => {
      answered = true;
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        data += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(data) }));
    });
    req.on("error", (err) => {
      if (!answered) reject(err);
    });
    req.end(body);
  });
}

/**
 * One POST with a JSON body; each SSE data event (or a non-streamed body, whole) goes to onEvent
 * with the time it arrived. Rejects on a status other than 200 and on an `event: error`.
 * node:http with 'data' events, not fetch: a benchmark client shares the cores with the servers'
 * math threads, and every CPU cycle it spends per SSE chunk slows their decoding (fetch's web
 * streams cost 4-10% of decode speed, node:http, like curl, 2-3%).
 */
export function postEvents(url: string, body: unknown, onEvent: (data: string, now: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    // a new connection per request, like curl: the servers close idle keep-alive sockets (5 s), which races a reuse
    const req = http.request(url, { method: "POST", agent: false, headers: { "content-type": "application/json" } }, (res) => {
      res.setEncoding("utf8");
      const sse = (res.headers["content-type"] ?? "").startsWith("text/event-stream") ? new SseParser() : undefined;
      let text = "";
      res.on("data", (chunk: string) => {
        const now = performance.now();
        if (res.statusCode !== 200 || !sse) {
          text += chunk;
          return;
        }
        for (const e of sse.push(chunk)) {
          if (e.event === "error") return void req.destroy(new Error(`POST ${url}: event: error ${e.data}`));
          if (e.event === undefined && e.data !== "" && e.data !== "[DONE]") onEvent(e.data, now);
        }
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`POST ${url}: ${res.statusCode} ${text}`));
        if (!sse && text.trim()) onEvent(text, performance.now()); // a non-streamed response
        resolve();
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(jsonText(body));
  });
}
