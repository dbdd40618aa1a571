// AutoPASTA's match threshold, chosen on labelled pass-1 answers (the eval's open-book items: each
// passage's deciding sentence is known) instead of by hand. Re-matching a recorded pass-1 answer
// costs no model call, so every threshold of the grid is scored on the same answers.
import { matchSentences, namesMostOfContext } from "./sentences.js";

export interface LabelledSelection {
  /** the text pass 1 picked sentences from */
  context: string;
  /** what pass 1 wrote */
  selection: string;
  /** the sentence that decides the answer (a sentence of the context) */
  gold: string;
}

export interface ThresholdPoint {
  threshold: number;
  /** share of answers mapped onto the gold sentence (among others or alone) */
  recall: number;
  /** share of the mapped sentences that are a gold sentence (1 when nothing is mapped) */
  precision: number;
  /** harmonic mean of the two: what the choice maximises */
  f1: number;
}

export const THRESHOLD_GRID: readonly number[] = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9];

/** A mapped sentence is the deciding one when either text contains the other (the context's sentence split may differ from the label's). */
export const isGoldSentence = (sentence: string, gold: string) => sentence.includes(gold) || gold.includes(sentence);

export function thresholdSweep(items: readonly LabelledSelection[], grid: readonly number[] = THRESHOLD_GRID): ThresholdPoint[] {
  return grid.map((threshold) => {
    let hits = 0,
      mapped = 0,
      mappedGold = 0;
    for (const item of items) {
      // an answer naming most of the context emphasizes nothing, as the server does
      const match = matchSentences(item.context, item.selection, { threshold });
      const sentences = namesMostOfContext(match) ? [] : match.sentences;
      const gold = sentences.filter((s) => isGoldSentence(s.text, item.gold)).length;
      if (gold > 0) hits++;
      mapped += sentences.length;
      mappedGold += gold;
    }
    const recall = items.length === 0 ? 0 : hits / items.length;
    const precision = mapped === 0 ? 1 : mappedGold / mapped;
    const f1 = recall + precision === 0 ? 0 : (2 * recall * precision) / (recall + precision);
    return { threshold, recall, precision, f1 };
  });
}

/** The point with the best F1; ties go to the higher threshold (fewer wrong sentences emphasized). */
export function bestThreshold(points: readonly ThresholdPoint[]): ThresholdPoint {
  return points.reduce((best, p) => (p.f1 > best.f1 || (p.f1 === best.f1 && p.threshold > best.threshold) ? p : best));
}
