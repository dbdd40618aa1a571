// How per-task head rankings combine (src/profiles/search.ts).
import t from "tap";
import { combineRankings } from "../../../src/profiles/search.js";

t.test("combining per-task rankings", async (t) => {
  const h = (layer: number, head: number) => ({ layer, head });
  const a = [h(1, 0), h(2, 3), h(0, 1), h(3, 3), h(4, 4)];
  const b = [h(2, 3), h(4, 4), h(1, 0), h(0, 1), h(3, 3)];
  t.same(combineRankings([a, b], 2, "intersection"), { heads: [h(2, 3)], fallback: null }, "the intersection of the top 2");
  t.same(combineRankings([a, b], 2, "union"), { heads: [h(1, 0), h(2, 3), h(4, 4)], fallback: null }, "the union of the top 2");
  const c = [h(3, 3), h(0, 1), h(4, 4), h(2, 3), h(1, 0)];
  const fallback = combineRankings([a, c], 1, "intersection");
  t.match(fallback.fallback, /intersection .* is empty/, "an empty intersection says so");
  // mean ranks: (1,0) 2, (2,3) 2, (0,1) 1.5, (3,3) 1.5, (4,4) 3 -> tie broken by layer
  t.same(fallback.heads, [h(0, 1)], "and takes the best mean rank");
});
