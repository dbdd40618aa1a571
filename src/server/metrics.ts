// Prometheus metrics (prom-client), served at /metrics: HTTP traffic, generation speed, and the
// scheduler's queue and active sequences read at scrape time.
import client from "prom-client";
import type { Scheduler } from "../scheduler/scheduler.js";

/** Latency buckets in seconds: from a cached short prompt to a long generation. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const SPEED_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

export interface GenerationObservation {
  endpoint: string;
  steered: boolean;
  promptTokens: number;
  completionTokens: number;
  /** seconds from the request's arrival (queueing included) to the first generated token */
  timeToFirstToken?: number;
  /** seconds spent generating after the first token */
  generationSeconds: number;
}

export class ServerMetrics {
  readonly registry = new client.Registry();
  private readonly requests = new client.Counter({
    name: "pasta_http_requests_total",
    help: "HTTP requests by route and status",
    labelNames: ["method", "route", "status"],
    registers: [this.registry],
  });
  private readonly latency = new client.Histogram({
    name: "pasta_http_request_duration_seconds",
    help: "HTTP request duration (for streams: until the last event)",
    labelNames: ["method", "route"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly ttft = new client.Histogram({
    name: "pasta_time_to_first_token_seconds",
    help: "Time from the request's arrival (queueing included) to the first generated token",
    labelNames: ["endpoint"],
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly speed = new client.Histogram({
    name: "pasta_generation_tokens_per_second",
    help: "Decode speed per request after the first token",
    labelNames: ["endpoint"],
    buckets: SPEED_BUCKETS,
    registers: [this.registry],
  });
  private readonly promptTokens = new client.Counter({
    name: "pasta_prompt_tokens_total",
    help: "Prompt tokens evaluated or reused",
    registers: [this.registry],
  });
  private readonly completionTokens = new client.Counter({
    name: "pasta_completion_tokens_total",
    help: "Tokens generated",
    registers: [this.registry],
  });
  private readonly generations = new client.Counter({
    name: "pasta_generations_total",
    help: "Finished generations by endpoint and whether they were steered",
    labelNames: ["endpoint", "steered"],
    registers: [this.registry],
  });
  private readonly steered = new client.Counter({
    name: "pasta_steered_requests_total",
    help: "Generation requests that carried steering",
    labelNames: ["endpoint"],
    registers: [this.registry],
  });

  constructor(scheduler: Scheduler) {
    client.collectDefaultMetrics({ register: this.registry, prefix: "pasta_" });
    new client.Gauge({
      name: "pasta_queue_depth",
      help: "Requests waiting for a sequence",
      registers: [this.registry],
      collect() {
        this.set(scheduler.queued);
      },
    });
    new client.Gauge({
      name: "pasta_active_sequences",
      help: "Sequences generating now",
      registers: [this.registry],
      collect() {
        this.set(scheduler.active);
      },
    });
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status });
    this.latency.observe({ method, route }, seconds);
  }

  observeSteeredRequest(endpoint: string): void {
    this.steered.inc({ endpoint });
  }

  observeGeneration(o: GenerationObservation): void {
    this.generations.inc({ endpoint: o.endpoint, steered: String(o.steered) });
    this.promptTokens.inc(o.promptTokens);
    this.completionTokens.inc(o.completionTokens);
    if (o.timeToFirstToken !== undefined) this.ttft.observe({ endpoint: o.endpoint }, o.timeToFirstToken);
    if (o.completionTokens > 1 && o.generationSeconds > 0)
      this.speed.observe({ endpoint: o.endpoint }, (o.completionTokens - 1) / o.generationSeconds);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
