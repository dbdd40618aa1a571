// The load driver behind `npm run load` (bench/load.ts, its CLI) and test/process/server/load.test.ts:
// proof under load, on loopback. Starts a real `pasta-server serve` (stories260K, --parallel 4
// --max-queue 16 --ctx-size 512; harness/process.ts) unless `base` names a running one, and runs
// `clients` closed loops for `seconds`, each sending its next request as soon as the last one ended.
// Requests mix the three generation endpoints (/v1/generate with fetch; /v1/chat/completions and
// /v1/completions through the official `openai` client), streaming and not, steered and not, greedy
// and sampled, max_tokens 8..64.
//
// Checked, each failure a violation:
//   - every answer is a success or a documented refusal: 429 rate_limit_error / 503 server_error with
//     OpenAI's error body and a whole-seconds Retry-After; no connection errors, no client timeouts;
//   - every success is well-formed: a finish_reason, usage within max_tokens, text when tokens were
//     generated, steering.spans exactly when steered; every stream (its raw SSE bytes, also for the
//     openai client's, tapped through its `fetch` option) is JSON chunks, no error event, exactly one
//     finish chunk, usage when asked (and only then), `data: [DONE]` last;
//   - the server's RSS (/metrics pasta_process_resident_memory_bytes, sampled every second) is stable:
//     the mean of the run's last third is at most MEMORY_TOLERANCE above the mean of its middle third;
//   - afterwards the server is idle (no active sequence, empty queue); a server started here logged no
//     error and exits 0 on SIGTERM.
// The summary has throughput (requests/s, completion tokens/s from the server's own counter), latency
// percentiles (whole request; time to first token for streams), answers by status and by kind.
// streamProblem, bodyProblem and refusalProblem are the checks, also for the tests' own requests.
import OpenAI from "openai";
import { seededRandom } from "../src/util/random.js";
import { HOSTILE_REQUESTS } from "./hostile.js";
import { postJson } from "./http.js";
import { metricValue, scrapeMetrics } from "./metrics.js";
import { errorLogLines, startServer, type ServerProcess } from "./process.js";
import { sseEvents, SseParser } from "./sse.js";
import { sleep } from "./time.js";

export const LOAD_SERVER_ARGS = ["--parallel", "4", "--max-queue", "16", "--ctx-size", "512"];
const HEADS = { "2": [0, 3, 5], "3": [1, 6] };
/** last third's mean RSS over the middle third's, at most */
export const MEMORY_TOLERANCE = 0.2;
const REQUEST_TIMEOUT_MS = 60_000;
const MIN_TOKENS = 8;
const MAX_TOKENS = 64;

/** Prompts with a sentence to emphasize in them. */
const PROMPTS: Array<{ prompt: string; emphasis: string }> = [
  { prompt: "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the", emphasis: "Tom had a blue kite." },
  {
    prompt: "Once upon a time there was a little dog named Max. Max liked to run in the park. One day",
    emphasis: "Max liked to run in the park.",
  },
  { prompt: "Tom went to the park with his mom. The sun was hot and the sky was blue. Tom saw a", emphasis: "The sun was hot" },
  {
    prompt: "Sue had a big box of toys. She gave her friend Ben a car. Ben was very happy and said",
    emphasis: "She gave her friend Ben a car.",
  },
];

export type Endpoint = "generate" | "chat" | "completions";
const ENDPOINTS: readonly Endpoint[] = ["generate", "chat", "completions"];
/** every combination of endpoint x streaming x steering; a client walks through them in turn */
const KINDS = ENDPOINTS.flatMap((endpoint) =>
  [false, true].flatMap((stream) => [false, true].map((steered) => ({ endpoint, stream, steered }))),
);

export interface LoadOptions {
  seconds: number;
  clients: number;
  /** a running server on loopback; without it, one is started (and stopped) here */
  base?: string;
  /** for a server started with --api-key */
  apiKey?: string;
  /** progress lines; default: none */
  log?: (line: string) => void;
  /**
   * one more client, sending the hostile requests of harness/hostile.ts in turn; each must get its
   * documented status. Its requests are not in the latencies: those are the normal clients'.
   */
  hostile?: boolean;
}

export interface Percentiles {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface KindCount {
  requests: number;
  ok: number;
}

export interface MemoryCheck {
  samples: number;
  /** mean RSS of the middle third of the run (bytes) */
  middleMeanBytes: number;
  /** mean RSS of the last third */
  lastMeanBytes: number;
  /** lastMean / middleMean - 1 */
  growth: number;
  ok: boolean;
  why?: string;
}

export interface LoadSummary {
  seconds: number;
  clients: number;
  base: string;
  /** wall seconds from the first request to the last answer */
  elapsedSeconds: number;
  requests: number;
  ok: number;
  /** by HTTP status; "error" is a failure without one (connection, timeout) */
  statuses: Record<string, number>;
  /** "steered/stream", "unsteered/plain", ... */
  kinds: Record<string, KindCount>;
  /** "chat/stream", "generate/plain", ... */
  endpoints: Record<string, KindCount>;
  requestsPerSecond: number;
  /** completion tokens counted by the server (pasta_completion_tokens_total) during the run */
  completionTokens: number;
  completionTokensPerSecond: number;
  /** successful requests, first byte sent to last byte read (ms) */
  latencyMs: Percentiles;
  /** successful streams: request sent to the first chunk with text (ms) */
  ttftMs: Percentiles;
  memory: MemoryCheck;
  /** with `hostile`: the hostile client's requests, and how many got their documented status */
  hostile?: KindCount;
  /** every broken check, one line each */
  violations: string[];
}

interface Outcome {
  kind: (typeof KINDS)[number];
  status: number | "error";
  ms: number;
  ttftMs?: number;
  /** a refusal's Retry-After */
  retryAfterS?: number;
  violation?: string;
}

type OutcomeOf = (status: number | "error", extra?: { ttftMs?: number; retryAfterS?: number; violation?: string }) => Outcome;

export function percentiles(values: number[]): Percentiles {
  if (values.length === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN };
  const sorted = [...values].sort((a, b) => a - b);
  // nearest rank
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  return { count: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1)! };
}

/** What a documented refusal must look like; undefined when it does. */
export function refusalProblem(
  status: number,
  retryAfter: string | null | undefined,
  error: { type?: unknown; message?: unknown } | undefined,
): string | undefined {
  if (status !== 429 && status !== 503) return `status ${status} is neither a success nor a documented refusal (429/503)`;
  if (!/^\d+$/.test(retryAfter ?? "")) return `${status} without a whole-seconds Retry-After (${JSON.stringify(retryAfter)})`;
  const type = status === 429 ? "rate_limit_error" : "server_error";
  if (error?.type !== type || typeof error.message !== "string")
    return `${status} without OpenAI's error body of type ${type}: ${JSON.stringify(error)}`;
  return undefined;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

function usageProblem(usage: Usage | undefined, maxTokens: number): string | undefined {
  if (!usage || !Number.isInteger(usage.completion_tokens) || !Number.isInteger(usage.prompt_tokens))
    return `malformed usage ${JSON.stringify(usage)}`;
  if (usage.completion_tokens < 0 || usage.completion_tokens > maxTokens)
    return `completion_tokens ${usage.completion_tokens} outside [0, ${maxTokens}]`;
  if (usage.total_tokens !== usage.prompt_tokens + usage.completion_tokens)
    return `total_tokens ${usage.total_tokens} != prompt + completion`;
  return undefined;
}

/** A finished answer's own consistency (streamed or not). */
function answerProblem(a: {
  text: string;
  finishReason: unknown;
  usage?: Usage;
  maxTokens: number;
  steered: boolean;
  spans: unknown;
  cutShort?: boolean;
}): string | undefined {
  if (a.finishReason !== "stop" && a.finishReason !== "length") return `finish_reason ${JSON.stringify(a.finishReason)}`;
  if (a.usage) {
    const bad = usageProblem(a.usage, a.maxTokens);
    if (bad) return bad;
    // unless a time limit or shutdown may stop a request (cutShort), "length" means max_tokens were generated
    if (!a.cutShort && a.finishReason === "length" && a.usage.completion_tokens !== a.maxTokens)
      return `finish_reason length after ${a.usage.completion_tokens} of ${a.maxTokens} tokens`;
    if (a.usage.completion_tokens > 0 && a.text === "") return `empty text for ${a.usage.completion_tokens} completion tokens`;
  } else if (a.finishReason === "length" && a.text === "") {
    return `empty text for ${a.maxTokens} completion tokens (finish_reason length)`;
  }
  const spans = a.spans as Array<{ text?: unknown }> | undefined;
  if (a.steered && !(Array.isArray(spans) && spans.length >= 1 && spans.every((s) => typeof s.text === "string")))
    return `steered, but steering.spans is ${JSON.stringify(spans)}`;
  if (!a.steered && spans !== undefined) return "unsteered, but the answer carries steering";
  return undefined;
}

/** A non-streamed success body's consistency; undefined when it is well-formed. */
export function bodyProblem(
  b: any,
  endpoint: Endpoint,
  o: { maxTokens: number; steered: boolean; cutShort?: boolean },
): string | undefined {
  const choice = b?.choices?.[0];
  const text = endpoint === "generate" ? b?.text : endpoint === "chat" ? choice?.message?.content : choice?.text;
  if (typeof text !== "string") return `no text in ${JSON.stringify(b).slice(0, 200)}`;
  const finishReason = endpoint === "generate" ? b.finish_reason : choice?.finish_reason;
  return answerProblem({
    text,
    finishReason,
    usage: b.usage,
    maxTokens: o.maxTokens,
    steered: o.steered,
    spans: b.steering?.spans,
    cutShort: o.cutShort ?? false,
  });
}

/**
 * A complete SSE body's shape: JSON chunks, no error event, exactly one finish chunk, usage as asked
 * (last before [DONE]), `data: [DONE]` once and last; then the answer's own consistency.
 */
export function streamProblem(
  raw: string,
  endpoint: Endpoint,
  o: { includeUsage: boolean; maxTokens: number; steered: boolean; cutShort?: boolean },
): string | undefined {
  const events = sseEvents(raw);
  const errorEvent = events.find((e) => e.event !== undefined);
  if (errorEvent) return `stream carries an "${errorEvent.event}" event: ${errorEvent.data.slice(0, 200)}`;
  if (events.at(-1)?.data !== "[DONE]")
    return `stream does not end with data: [DONE] (last: ${JSON.stringify(events.at(-1)?.data?.slice(0, 200))})`;
  const chunks: any[] = [];
  for (const e of events.slice(0, -1)) {
    if (e.data === "[DONE]") return "data: [DONE] before the end of the stream";
    try {
      chunks.push(JSON.parse(e.data));
    } catch {
      return `a chunk is not JSON: ${e.data.slice(0, 200)}`;
    }
  }
  if (chunks.length < 2) return `only ${chunks.length} chunks before [DONE]`;
  const finishOf = (c: any) => (endpoint === "generate" ? c.finish_reason : c.choices?.[0]?.finish_reason) ?? null;
  const finishes = chunks.map((c, i) => [i, finishOf(c)] as const).filter(([, f]) => f !== null);
  if (finishes.length !== 1) return `${finishes.length} chunks with a finish_reason`;
  const [finishIndex, finishReason] = finishes[0]!;
  const usageChunks = chunks.filter((c) => c.usage !== undefined && c.usage !== null);
  let usage: Usage | undefined;
  if (endpoint === "generate") {
    if (finishIndex !== chunks.length - 1) return "the finish chunk is not the last before [DONE]";
    usage = chunks[finishIndex].usage;
    if (usageChunks.length !== 1 || !usage) return "/v1/generate's finish chunk carries no usage";
  } else {
    const usageLast = o.includeUsage ? 1 : 0;
    if (finishIndex !== chunks.length - 1 - usageLast)
      return `the finish chunk is at ${finishIndex} of ${chunks.length} chunks (include_usage ${o.includeUsage})`;
    if (o.includeUsage) {
      const last = chunks.at(-1);
      if (usageChunks.length !== 1 || !last.usage || !Array.isArray(last.choices) || last.choices.length !== 0)
        return "include_usage, but no usage chunk (choices: []) last before [DONE]";
      usage = last.usage;
    } else if (usageChunks.length > 0) {
      return "usage arrived without stream_options.include_usage";
    }
    const ids = new Set(chunks.map((c) => c.id));
    if (ids.size !== 1) return `chunks carry ${ids.size} different ids`;
    const object = endpoint === "chat" ? "chat.completion.chunk" : "text_completion";
    if (!chunks.every((c) => c.object === object)) return `a chunk's object is not ${object}`;
    if (endpoint === "chat" && chunks[0].choices?.[0]?.delta?.role !== "assistant")
      return "the first chat chunk has no delta.role assistant";
  }
  const pieceOf = (c: any): string =>
    (endpoint === "generate" ? c.text : endpoint === "chat" ? c.choices?.[0]?.delta?.content : c.choices?.[0]?.text) ?? "";
  const text = chunks.map(pieceOf).join("");
  return answerProblem({
    text,
    finishReason,
    usage,
    maxTokens: o.maxTokens,
    steered: o.steered,
    spans: chunks[0].steering?.spans,
    cutShort: o.cutShort ?? false,
  });
}

const isLoopback = (base: string) => ["127.0.0.1", "localhost", "[::1]", "::1"].includes(new URL(base).hostname);

/** One closed-loop client: its own openai client, whose fetch tees event streams into `raw`. */
class Client {
  private readonly openai: OpenAI;
  /** the raw SSE text of this client's latest openai stream */
  private raw: Promise<string> | undefined;
  private readonly random: () => number;
  private turn: number;

  constructor(
    private readonly base: string,
    private readonly apiKey: string | undefined,
    private readonly model: string,
    readonly index: number,
  ) {
    this.random = seededRandom(0x9e3779b1 ^ (index * 7919));
    this.turn = index; // clients start on different kinds
    const tap: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) return res;
      const [mine, theirs] = res.body.tee();
      this.raw = new Response(mine).text();
      this.raw.catch(() => {}); // awaited after the client's own read; a broken connection is reported there
      return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
    };
    this.openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: apiKey ?? "unused", maxRetries: 0, timeout: REQUEST_TIMEOUT_MS, fetch: tap });
  }

  async loop(until: number, record: (o: Outcome) => void): Promise<void> {
    while (performance.now() < until) {
      const outcome = await this.once();
      record(outcome);
      // a refused client backs off as told (at most a second), instead of spinning on 429s
      if (outcome.retryAfterS !== undefined) await sleep(Math.min(1000, outcome.retryAfterS * 1000, until - performance.now()));
    }
  }

  private async once(): Promise<Outcome> {
    const kind = KINDS[this.turn++ % KINDS.length]!;
    const { prompt, emphasis } = PROMPTS[Math.floor(this.random() * PROMPTS.length)]!;
    const maxTokens = MIN_TOKENS + Math.floor(this.random() * (MAX_TOKENS - MIN_TOKENS + 1));
    const greedy = this.random() < 0.5;
    const sampling = greedy ? { temperature: 0 } : { temperature: 0.9, top_p: 0.95, seed: Math.floor(this.random() * 1e6) };
    const includeUsage = this.random() < 0.5;
    const steering = kind.steered ? { steering: { emphasis: [emphasis], heads: HEADS } } : {};
    const started = performance.now();
    const outcome = (status: number | "error", extra: { ttftMs?: number; retryAfterS?: number; violation?: string } = {}): Outcome => ({
      kind,
      status,
      ms: performance.now() - started,
      ...extra,
      ...(extra.violation
        ? {
            violation: `${kind.endpoint} ${kind.stream ? "stream" : "plain"} ${kind.steered ? "steered" : "unsteered"} max_tokens ${maxTokens}: ${extra.violation}`,
          }
        : {}),
    });
    try {
      if (kind.endpoint === "generate")
        return await this.generate(
          { prompt, max_tokens: maxTokens, ...sampling, ...steering },
          kind.stream,
          kind.steered,
          maxTokens,
          started,
          outcome,
        );
      return await this.openaiRequest(
        kind.endpoint,
        prompt,
        { max_tokens: maxTokens, ...sampling, ...steering },
        kind.stream,
        includeUsage,
        kind.steered,
        maxTokens,
        started,
        outcome,
      );
    } catch (err) {
      if (err instanceof OpenAI.APIError && err.status !== undefined) {
        const retryAfter = err.headers?.get("retry-after");
        const violation = refusalProblem(err.status, retryAfter, err.error as any);
        return outcome(err.status, {
          ...(retryAfter ? { retryAfterS: Number(retryAfter) || 0 } : {}),
          ...(violation ? { violation } : {}),
        });
      }
      return outcome("error", { violation: `request failed: ${(err as Error).name}: ${(err as Error).message}` });
    }
  }

  private async generate(
    body: object,
    stream: boolean,
    steered: boolean,
    maxTokens: number,
    started: number,
    outcome: OutcomeOf,
  ): Promise<Outcome> {
    const res = await postJson(
      `${this.base}/v1/generate`,
      { ...body, stream },
      {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {},
      },
    );
    if (res.status !== 200) {
      const text = await res.text();
      let error: any;
      try {
        error = JSON.parse(text).error;
      } catch {
        error = undefined;
      }
      const retryAfter = res.headers.get("retry-after");
      const violation = refusalProblem(res.status, retryAfter, error);
      return outcome(res.status, { ...(retryAfter ? { retryAfterS: Number(retryAfter) || 0 } : {}), ...(violation ? { violation } : {}) });
    }
    if (!stream) {
      const violation = bodyProblem(await res.json(), "generate", { maxTokens, steered });
      return outcome(200, violation ? { violation } : {});
    }
    if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream"))
      return outcome(200, { violation: `stream with content-type ${res.headers.get("content-type")}` });
    // read as it arrives, for the time to the first text
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    const sse = new SseParser();
    let raw = "",
      ttftMs: number | undefined;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text;
      if (ttftMs === undefined) {
        for (const e of sse.push(text)) {
          if (e.event !== undefined) continue; // judged below
          try {
            if (JSON.parse(e.data).text) {
              ttftMs = performance.now() - started;
              break;
            }
          } catch {
            /* judged below */
          }
        }
      }
    }
    raw += decoder.decode();
    const violation = streamProblem(raw, "generate", { includeUsage: true, maxTokens, steered });
    return outcome(200, { ...(ttftMs !== undefined ? { ttftMs } : {}), ...(violation ? { violation } : {}) });
  }

  private async openaiRequest(
    endpoint: "chat" | "completions",
    prompt: string,
    body: Record<string, unknown>,
    stream: boolean,
    includeUsage: boolean,
    steered: boolean,
    maxTokens: number,
    started: number,
    outcome: OutcomeOf,
  ): Promise<Outcome> {
    const request =
      endpoint === "chat"
        ? { model: this.model, messages: [{ role: "user" as const, content: prompt }], ...body }
        : { model: this.model, prompt, ...body };
    const create = (extra: object): Promise<any> =>
      endpoint === "chat"
        ? this.openai.chat.completions.create({ ...request, ...extra } as any)
        : this.openai.completions.create({ ...request, ...extra } as any);
    if (!stream) {
      const violation = bodyProblem(await create({}), endpoint, { maxTokens, steered });
      return outcome(200, violation ? { violation } : {});
    }
    this.raw = undefined;
    const chunks = await create({ stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) });
    let ttftMs: number | undefined;
    for await (const chunk of chunks) {
      const piece = endpoint === "chat" ? chunk.choices?.[0]?.delta?.content : chunk.choices?.[0]?.text;
      if (ttftMs === undefined && piece) ttftMs = performance.now() - started;
    }
    const raw = this.raw as Promise<string> | undefined;
    if (!raw) return outcome(200, { violation: "the stream's raw text was not captured" });
    const violation = streamProblem(await raw, endpoint, { includeUsage, maxTokens, steered });
    return outcome(200, { ...(ttftMs !== undefined ? { ttftMs } : {}), ...(violation ? { violation } : {}) });
  }
}

/** Every second until `until`: the server's RSS, with seconds since `t0`. */
async function sampleMemory(base: string, t0: number, until: number, into: Array<{ t: number; rss: number }>, problems: string[]) {
  for (let next = t0; next < until; next += 1000) {
    await sleep(Math.max(0, next - performance.now()));
    try {
      const rss = metricValue(await scrapeMetrics(base), "pasta_process_resident_memory_bytes");
      if (rss === undefined) {
        problems.push("/metrics has no pasta_process_resident_memory_bytes");
        return;
      }
      into.push({ t: (performance.now() - t0) / 1000, rss });
    } catch (err) {
      problems.push(`/metrics failed during the run: ${(err as Error).message}`);
    }
  }
}

export function memoryCheck(samples: Array<{ t: number; rss: number }>, seconds: number): MemoryCheck {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const middle = samples.filter((s) => s.t >= seconds / 3 && s.t < (2 * seconds) / 3).map((s) => s.rss);
  const last = samples.filter((s) => s.t >= (2 * seconds) / 3).map((s) => s.rss);
  if (middle.length < 2 || last.length < 2) {
    return {
      samples: samples.length,
      middleMeanBytes: NaN,
      lastMeanBytes: NaN,
      growth: NaN,
      ok: false,
      why: `too few RSS samples (${middle.length} in the middle third, ${last.length} in the last): run at least 6 s`,
    };
  }
  const middleMeanBytes = mean(middle),
    lastMeanBytes = mean(last);
  const growth = lastMeanBytes / middleMeanBytes - 1;
  const ok = growth <= MEMORY_TOLERANCE;
  return {
    samples: samples.length,
    middleMeanBytes,
    lastMeanBytes,
    growth,
    ok,
    ...(ok ? {} : { why: `RSS grew ${(growth * 100).toFixed(1)}% from the middle third to the last (allowed ${MEMORY_TOLERANCE * 100}%)` }),
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadSummary> {
  const { seconds, clients } = options;
  const log = options.log ?? (() => {});
  if (!(seconds > 0) || !Number.isInteger(clients) || clients < 1)
    throw new Error(`seconds must be > 0 and clients a positive integer (got ${seconds}, ${clients})`);
  if (options.base !== undefined && !isLoopback(options.base))
    throw new Error(`loopback only: ${options.base} is not 127.0.0.1, localhost or [::1]`);

  let server: ServerProcess | undefined;
  if (options.base === undefined) {
    log(`starting pasta-server serve ${LOAD_SERVER_ARGS.join(" ")} (stories260K) ...`);
    server = await startServer([...LOAD_SERVER_ARGS]);
  }
  const base = options.base ?? server!.base;
  const violations: string[] = [];
  try {
    log(`${clients} clients for ${seconds} s against ${base}`);
    const models = await fetch(`${base}/v1/models`, { headers: options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {} });
    if (models.status !== 200) throw new Error(`GET ${base}/v1/models answered ${models.status}: ${await models.text()}`);
    const model = ((await models.json()) as { data: Array<{ id: string }> }).data[0]!.id;
    const tokensBefore = metricValue(await scrapeMetrics(base), "pasta_completion_tokens_total") ?? 0;
    const outcomes: Outcome[] = [];
    const rss: Array<{ t: number; rss: number }> = [];
    const t0 = performance.now();
    const until = t0 + seconds * 1000;
    const sampler = sampleMemory(base, t0, until, rss, violations);
    const hostile: KindCount = { requests: 0, ok: 0 };
    await Promise.all([
      ...Array.from({ length: clients }, (_, i) => new Client(base, options.apiKey, model, i).loop(until, (o) => outcomes.push(o))),
      ...(options.hostile ? [hostileLoop(base, options.apiKey, until, hostile, violations)] : []),
    ]);
    const elapsedSeconds = (performance.now() - t0) / 1000;
    await sampler;

    // afterwards: idle, and the server's own count of generated tokens
    const after = await scrapeMetrics(base);
    const completionTokens = (metricValue(after, "pasta_completion_tokens_total") ?? 0) - tokensBefore;
    const active = metricValue(after, "pasta_active_sequences"),
      queued = metricValue(after, "pasta_queue_depth");
    if (active !== 0 || queued !== 0)
      violations.push(`after the run: pasta_active_sequences ${active}, pasta_queue_depth ${queued} (expected 0, 0)`);

    for (const o of outcomes) if (o.violation) violations.push(o.violation);
    const statuses: Record<string, number> = {};
    const kinds: Record<string, KindCount> = {};
    const endpoints: Record<string, KindCount> = {};
    for (const o of outcomes) {
      statuses[String(o.status)] = (statuses[String(o.status)] ?? 0) + 1;
      const ok = o.status === 200 && !o.violation ? 1 : 0;
      for (const [table, key] of [
        [kinds, `${o.kind.steered ? "steered" : "unsteered"}/${o.kind.stream ? "stream" : "plain"}`],
        [endpoints, `${o.kind.endpoint}/${o.kind.stream ? "stream" : "plain"}`],
      ] as const) {
        const entry = (table[key] ??= { requests: 0, ok: 0 });
        entry.requests++;
        entry.ok += ok;
      }
    }
    const succeeded = outcomes.filter((o) => o.status === 200 && !o.violation);
    const memory = memoryCheck(rss, seconds);
    if (!memory.ok) violations.push(`memory: ${memory.why}`);
    if (outcomes.length === 0) violations.push("no request completed");

    if (server) {
      const errors = errorLogLines(server.log());
      if (errors.length > 0) violations.push(`the server logged ${errors.length} error(s), first: ${errors[0]!.slice(0, 300)}`);
      const code = await server.stop();
      if (code !== 0) violations.push(`the server exited with code ${code} on SIGTERM (expected 0)`);
      server = undefined;
    }
    return {
      seconds,
      clients,
      base,
      elapsedSeconds,
      requests: outcomes.length,
      ok: succeeded.length,
      statuses,
      kinds,
      endpoints,
      requestsPerSecond: succeeded.length / elapsedSeconds,
      completionTokens,
      completionTokensPerSecond: completionTokens / elapsedSeconds,
      latencyMs: percentiles(succeeded.map((o) => o.ms)),
      ttftMs: percentiles(succeeded.filter((o) => o.ttftMs !== undefined).map((o) => o.ttftMs!)),
      memory,
      ...(options.hostile ? { hostile } : {}),
      violations,
    };
  } finally {
    await server?.stop("SIGKILL");
  }
}

/** Sends the hostile requests in turn until `until`, counting those answered with their documented status. */
async function hostileLoop(base: string, apiKey: string | undefined, until: number, count: KindCount, violations: string[]): Promise<void> {
  const headers = { "content-type": "application/json", ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) };
  const bodies = HOSTILE_REQUESTS.map((r) => JSON.stringify(r.body)); // made once: some are megabytes
  for (let i = 0; performance.now() < until; i = (i + 1) % HOSTILE_REQUESTS.length) {
    const { what, path, status } = HOSTILE_REQUESTS[i]!;
    count.requests++;
    try {
      const res = await fetch(`${base}${path}`, {
        method: "POST",
        headers,
        body: bodies[i],
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await res.arrayBuffer();
      if (res.status === status) count.ok++;
      else violations.push(`hostile: ${what}: ${res.status}, documented ${status}`);
    } catch (err) {
      violations.push(`hostile: ${what}: ${(err as Error).message}`);
    }
  }
}

export function formatSummary(s: LoadSummary): string {
  const ms = (p: Percentiles) =>
    `p50 ${p.p50.toFixed(0)} ms  p90 ${p.p90.toFixed(0)} ms  p99 ${p.p99.toFixed(0)} ms  max ${p.max.toFixed(0)} ms  (n=${p.count})`;
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const table = (t: Record<string, KindCount>) =>
    Object.entries(t)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `    ${k.padEnd(20)} ${String(v.ok).padStart(6)} ok of ${v.requests}`)
      .join("\n");
  const lines = [
    `load: ${s.clients} clients, ${s.seconds} s against ${s.base}; ${s.elapsedSeconds.toFixed(1)} s until the last answer`,
    `  requests     ${s.requests} answered, ${s.ok} ok; by status: ${Object.entries(s.statuses)
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ")}`,
    `  throughput   ${s.requestsPerSecond.toFixed(1)} requests/s, ${s.completionTokensPerSecond.toFixed(0)} completion tokens/s (${s.completionTokens} tokens)`,
    `  latency      ${ms(s.latencyMs)}`,
    `  first token  ${ms(s.ttftMs)}  (streams)`,
    `  memory       RSS middle third ${mib(s.memory.middleMeanBytes)}, last third ${mib(s.memory.lastMeanBytes)}: ${(s.memory.growth * 100).toFixed(1)}% (allowed +${MEMORY_TOLERANCE * 100}%; ${s.memory.samples} samples) ${s.memory.ok ? "ok" : "FAIL"}`,
    ...(s.hostile ? [`  hostile      ${s.hostile.ok} of ${s.hostile.requests} hostile requests got their documented status`] : []),
    `  by kind\n${table(s.kinds)}`,
    `  by endpoint\n${table(s.endpoints)}`,
    s.violations.length === 0
      ? "  violations   none"
      : `  violations   ${s.violations.length}:\n${s.violations
          .slice(0, 20)
          .map((v) => `    - ${v}`)
          .join("\n")}${s.violations.length > 20 ? `\n    ... and ${s.violations.length - 20} more` : ""}`,
  ];
  return lines.join("\n");
}
