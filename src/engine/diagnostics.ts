// Attention diagnostics: the native rows (llama_steering_take_diagnostics) -> per generated token,
// each head's share of attention on the emphasized tokens with the request's steering and without.
import type { SteeringSpec } from "./steering.js";
import type { AttentionDiagnostics, DiagnosticsOptions, HeadAttention } from "./types.js";

/**
 * `rows`: one per sampling step, each [layer][head_max] pairs [steered, unsteered] (NaN where the
 * layer was not steered). Row i is the query that predicted generated token i; steps past
 * `generated` (the end-of-generation token, tokens after a stop string) are not reported, but the
 * first row always is: it says where the answer's first token came from.
 */
export function readDiagnostics(
  rows: Float32Array,
  spec: SteeringSpec,
  headsPerLayer: readonly number[],
  options: DiagnosticsOptions,
  generated: number,
): AttentionDiagnostics {
  const headMax = Math.max(...headsPerLayer);
  const stride = headsPerLayer.length * headMax * 2;
  const available = Math.floor(rows.length / stride);
  const count = Math.min(available, options.everyToken ? Math.max(generated, 1) : 1);
  const tokens: HeadAttention[][] = [];
  for (let t = 0; t < count; t++) {
    const row = rows.subarray(t * stride, (t + 1) * stride);
    const heads: HeadAttention[] = [];
    for (const [layer, steered] of [...spec.heads].sort(([a], [b]) => a - b)) {
      const reported = options.allHeads ? Array.from({ length: headsPerLayer[layer]! }, (_, h) => h) : steered;
      for (const head of reported) {
        const at = (layer * headMax + head) * 2;
        heads.push({ layer, head, steeredHead: steered.includes(head), steered: row[at]!, unsteered: row[at + 1]! });
      }
    }
    tokens.push(heads);
  }
  return { tokens };
}
