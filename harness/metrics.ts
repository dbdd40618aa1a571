// Prometheus text exposition (GET /metrics), as the tests and the load driver read it.

export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Samples of a Prometheus text exposition: name, labels, value (comments and blank lines skipped). */
export function metricSamples(exposition: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const line of exposition.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of a metric's samples whose labels include `labels` (all of them by default); undefined when it has none. */
export function metricValue(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = metricSamples(exposition).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return matching.length === 0 ? undefined : matching.reduce((sum, s) => sum + s.value, 0);
}

/** GET `${base}/metrics`: the exposition text (10 s at most). */
export async function scrapeMetrics(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}
