// The ways an eval item is asked: PASTA's comparisons (unsteered, emphasis left in the text as
// markup, the head profile, every head, random heads of the profile's size), the profile's heads
// steered to a target share, AutoPASTA, and structured output (the item's JSON schema enforced while
// sampling), alone and steered.
import type { HeadSelection } from "../engine/steering.js";
import { seededRandom, shuffled } from "../util/random.js";

export const ARM_NAMES = [
  "unsteered",
  "prompting",
  "profile",
  "target_share",
  "all_heads",
  "random_heads",
  "auto",
  "schema",
  "schema_profile",
] as const;
export type ArmName = (typeof ARM_NAMES)[number];

/** what `eval` runs without --arms: every arm but target_share, which is asked for by name with its share */
export const DEFAULT_ARMS: readonly ArmName[] = ARM_NAMES.filter((name) => name !== "target_share");

/** the target_share arm's share when --target-share is not given */
export const DEFAULT_TARGET_SHARE = 0.5;

export interface Arm {
  name: ArmName;
  /** the column heading in the report */
  label: string;
  /** steered heads; null: no steering */
  heads: HeadSelection | null;
  /** steering.target_share (the eval's alpha is then its floor); null: a fixed alpha */
  targetShare: number | null;
  /** the emphasized part is wrapped in `**` in the message itself (prompting, no steering) */
  markdown: boolean;
  /** AutoPASTA picks what to emphasize (items with a passage only) */
  auto: boolean;
  /** the item's JSON schema is enforced while sampling, as `response_format` does (items with a schema only) */
  schema: boolean;
}

const LABELS: Record<ArmName, string> = {
  unsteered: "unsteered",
  prompting: "`**...**` in the text",
  profile: "profile",
  target_share: "profile, target share",
  all_heads: "every head",
  random_heads: "random heads",
  auto: "AutoPASTA",
  schema: "`response_format`",
  schema_profile: "`response_format` + profile",
};

/** `count` distinct heads drawn uniformly from the model's, the same for the same seed. */
export function randomHeads(count: number, headsPerLayer: readonly number[], seed: number): Record<string, number[]> {
  const all = headsPerLayer.flatMap((n, layer) => Array.from({ length: n }, (_, head) => ({ layer, head })));
  const picked = shuffled(all, seededRandom(seed))
    .slice(0, count)
    .sort((a, b) => a.layer - b.layer || a.head - b.head);
  const map: Record<string, number[]> = {};
  for (const { layer, head } of picked) (map[String(layer)] ??= []).push(head);
  return map;
}

export function headCount(heads: HeadSelection, headsPerLayer: readonly number[]): number {
  return Array.isArray(heads)
    ? heads.reduce((n, layer) => n + (headsPerLayer[layer] ?? 0), 0)
    : Object.values(heads).reduce((n, h) => n + h.length, 0);
}

/** Arms that steer a head profile's heads, or as many random ones: they cannot run without a profile. */
export const PROFILE_ARMS: readonly ArmName[] = ["profile", "target_share", "auto", "random_heads", "schema_profile"];

/**
 * The named arms; `profile` is null when the model has none, and then no arm may need it (the caller
 * checks). `targetShare`: the share the target_share arm steers to.
 */
export function buildArms(
  names: readonly ArmName[],
  profile: HeadSelection | null,
  headsPerLayer: readonly number[],
  seed: number,
  targetShare = DEFAULT_TARGET_SHARE,
): Arm[] {
  const needed = names.filter((name) => PROFILE_ARMS.includes(name));
  if (profile === null && needed.length > 0) throw new Error(`arms ${needed.join(", ")} need a head profile`);
  const heads: Record<ArmName, HeadSelection | null> = {
    unsteered: null,
    prompting: null,
    profile,
    target_share: profile,
    auto: profile,
    all_heads: headsPerLayer.map((_, layer) => layer),
    random_heads: profile && randomHeads(headCount(profile, headsPerLayer), headsPerLayer, seed),
    schema: null,
    schema_profile: profile,
  };
  return names.map((name) => ({
    name,
    label: name === "target_share" ? `${LABELS[name]} ${targetShare}` : LABELS[name],
    heads: heads[name],
    targetShare: name === "target_share" ? targetShare : null,
    markdown: name === "prompting",
    auto: name === "auto",
    schema: name === "schema" || name === "schema_profile",
  }));
}
