// Eval outcomes -> the numbers: the share of items passing each metric under each arm, as a
// Markdown table (docs/quality.md) and as JSON.
import type { Arm, ArmName } from "./arms.js";
import { FAMILIES, type Metric } from "./families.js";
import type { ItemOutcome } from "./runner.js";

export interface SummaryRow {
  family: string;
  familyLabel: string;
  metric: string;
  metricLabel: string;
  items: number;
  /** share of items passing, per arm; null where the metric does not apply to the arm */
  byArm: Partial<Record<ArmName, number | null>>;
}

function passes(outcome: ItemOutcome, metric: Metric): boolean | undefined {
  if (metric.kind === "contrast") return outcome.contrast ? outcome.contrast.right > outcome.contrast.wrong : undefined;
  return outcome.checks[metric.name];
}

export function summarize(outcomes: readonly ItemOutcome[], arms: readonly Arm[]): SummaryRow[] {
  const rows: SummaryRow[] = [];
  for (const family of FAMILIES) {
    const mine = outcomes.filter((o) => o.item.family === family.name);
    if (mine.length === 0) continue;
    const items = new Set(mine.map((o) => o.item)).size;
    const metrics: Array<Metric & { of?: (o: ItemOutcome) => boolean | undefined }> = [...family.metrics];
    if (mine.some((o) => o.auto))
      metrics.push(
        {
          name: "auto_gold",
          label: "AutoPASTA emphasized the deciding sentence",
          kind: "greedy",
          of: (o) => o.auto?.gold,
        },
        {
          name: "auto_unfinished",
          label: "AutoPASTA's pass 1 ran out of tokens (answer unsteered)",
          kind: "greedy",
          of: (o) => (o.auto ? !o.auto.finished : undefined),
        },
        {
          name: "auto_most_of_context",
          label: "AutoPASTA's pass 1 named most of the passage (answer unsteered)",
          kind: "greedy",
          of: (o) => (o.auto ? o.auto.reason === "most_of_context" : undefined),
        },
      );
    for (const metric of metrics) {
      const byArm: SummaryRow["byArm"] = {};
      for (const arm of arms) {
        const results = mine
          .filter((o) => o.arm === arm.name)
          .map((o) => (metric.of ? metric.of(o) : passes(o, metric)))
          .filter((r) => r !== undefined);
        byArm[arm.name] = results.length === 0 ? null : results.filter(Boolean).length / results.length;
      }
      rows.push({ family: family.name, familyLabel: family.label, metric: metric.name, metricLabel: metric.label, items, byArm });
    }
  }
  return rows;
}

const percent = (x: number | null | undefined) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

export function markdownTable(rows: readonly SummaryRow[], arms: readonly Arm[]): string {
  const header = ["task", "metric", "items", ...arms.map((a) => a.label)];
  const lines = [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  for (const row of rows)
    lines.push(`| ${[row.familyLabel, row.metricLabel, String(row.items), ...arms.map((a) => percent(row.byArm[a.name]))].join(" | ")} |`);
  return lines.join("\n");
}

/** Everything a run produced, per item too, for `--json`. */
export function evalDocument(
  meta: Record<string, unknown>,
  rows: readonly SummaryRow[],
  outcomes: readonly ItemOutcome[],
): Record<string, unknown> {
  return {
    ...meta,
    summary: rows.map((r) => ({ task: r.family, metric: r.metric, items: r.items, by_arm: r.byArm })),
    items: outcomes.map((o) => ({
      source: o.item.source,
      task: o.item.family,
      arm: o.arm,
      output: o.output,
      checks: o.checks,
      ...(o.contrast ? { contrast: o.contrast } : {}),
      ...(o.auto ? { auto: o.auto } : {}),
    })),
  };
}
