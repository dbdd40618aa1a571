// The playground end to end in headless Chromium (Debian's chromium through playwright-core) against
// a real server on SmolLM2 with an API key: the test types a prompt, emphasizes a phrase, runs both
// sides and checks that both answers and the attention chart appear, then runs AutoPASTA, and saves
// a screenshot (test-artifacts/playground.png). The page must load nothing from elsewhere.
// Chromium is required (CI installs it in .ci/run): without it this test fails and says how to install it.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import { chromium, type Browser } from "playwright-core";
import { PROJECT_ROOT, request, startServer } from "../../../harness/index.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

const CHROMIUM = "/usr/bin/chromium";
const API_KEY = "playground-key";
const PROMPT =
  "Maria Lopez grew up in Seville. She works as a marine biologist and studies dolphins near the coast.\nMaria Lopez works as a";
const PHRASE = "marine biologist";
const CONTEXT =
  "The Zorvan Bridge crosses the Elm River in the town of Kessel. It was built in 1932 by the engineer Ada Brenner. The bridge is painted green every spring.";
const QUESTION = "Who built the Zorvan Bridge?";
const SCREENSHOT = join(PROJECT_ROOT, "test-artifacts", "playground.png");

if (!existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends chromium), as .ci/run does`);
} else {
  const server = await startServer(["--model", SMOLLM2_MODEL, "--ctx-size", "1024", "--api-key", API_KEY]);
  t.teardown(() => server.stop());
  let browser: Browser;
  t.before(async () => {
    // --no-sandbox: CI runs as root, where Chromium's sandbox cannot start
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  t.teardown(() => browser?.close());

  t.test("the page is served without a key, the API still needs one", async (t) => {
    const page = await request(server.base, "/playground/");
    t.equal(page.status, 200);
    t.match(page.text, "pasta-server playground");
    const api = await request(server.base, "/v1/models");
    t.equal(api.status, 401, "the API it calls does");
  });

  t.test("type, emphasize, run both sides, see the answers and the chart", async (t) => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1500 } });
    const elsewhere: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(server.base)) elsewhere.push(r.url());
    });
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(err.message));

    /** Clicks a run button, waits until the page is done (its buttons are enabled again): the status line. */
    const runWith = async (button: string) => {
      await page.locator(button).click(); // the page disables its buttons before the click returns
      await page.locator("#run:enabled").waitFor({ timeout: 120_000 });
      return page.locator("#status").textContent();
    };

    const response = await page.goto(`${server.base}/playground`);
    t.match(
      response?.headers()["content-security-policy"] ?? "",
      "default-src 'self'",
      "a content security policy that allows this server only",
    );
    await page.locator("#model-info").filter({ hasText: "enter the API key" }).waitFor();
    await page.locator("#api-key").fill(API_KEY);
    await page.locator("#api-key").press("Tab"); // change event: the key is used from now on
    await page.locator("#model-info").filter({ hasText: "profile heads" }).waitFor();

    await page.locator("#prompt").fill("");
    await page.locator("#prompt").pressSequentially(PROMPT, { delay: 2 });
    const start = PROMPT.indexOf(PHRASE);
    await page
      .locator("#prompt")
      .evaluate((el: HTMLTextAreaElement, [s, e]) => el.setSelectionRange(s!, e!), [start, start + PHRASE.length]);
    await page.locator("#emphasize").click();
    t.equal(await page.locator("#spans li").count(), 1, "one emphasized span");
    t.match(await page.locator("#spans li").textContent(), PHRASE);
    t.equal(await page.locator("#preview mark").textContent(), PHRASE, "the preview marks it");

    await page.locator("#max-tokens").fill("12");
    t.match(await runWith("#run"), /^done in/, "both sides finished");
    const unsteered = (await page.locator("#out-unsteered").textContent()) ?? "";
    const steered = (await page.locator("#out-steered").textContent()) ?? "";
    t.ok(unsteered.trim().length > 0, `the unsteered answer: ${JSON.stringify(unsteered)}`);
    t.ok(steered.trim().length > 0, `the steered answer: ${JSON.stringify(steered)}`);
    t.equal(await page.locator(".answer.error").count(), 0, "no side failed");

    const models = (await request(server.base, "/v1/models", { headers: { authorization: `Bearer ${API_KEY}` } })).body;
    const profileHeads = Object.values(models.data[0].meta.profile.heads as Record<string, number[]>).flat().length;
    t.equal(await page.locator("#chart rect.bar-steered").count(), profileHeads, "a steered bar per profile head");
    t.equal(await page.locator("#chart rect.bar-unsteered").count(), profileHeads, "an unsteered bar per profile head");
    const widths = async (cls: string) =>
      page.locator(`#chart rect.${cls}`).evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("width"))));
    const [on, off] = [await widths("bar-steered"), await widths("bar-unsteered")];
    t.ok(
      on.every((w, i) => w > off[i]!),
      `each steered bar is longer: steering moved attention onto "${PHRASE}" (${off.join(",")} -> ${on.join(",")})`,
    );

    // a chat, where the model picks the sentence to emphasize itself
    await page.locator('input[name="kind"][value="chat"]').check();
    await page.locator("#user").pressSequentially(`${CONTEXT}\n${QUESTION}`, { delay: 2 });
    t.match(await runWith("#auto"), /^done in/, "AutoPASTA finished");
    t.equal(await page.locator("#steered-title").textContent(), "AutoPASTA");
    t.ok(((await page.locator("#out-steered").textContent()) ?? "").trim().length > 0, "AutoPASTA's answer");
    const chosen = await page.locator("#auto-sentences li").allTextContents();
    t.ok(
      chosen.length > 0 && !chosen[0]!.includes("the answer is unsteered"),
      `the chosen sentences are listed: ${JSON.stringify(chosen)}`,
    );
    t.ok((await page.locator("#preview mark.auto").count()) > 0, "and highlighted in the preview");
    t.ok((await page.locator("#chart rect.bar-steered").count()) > 0, "the chart shows the answer's diagnostics");

    mkdirSync(join(PROJECT_ROOT, "test-artifacts"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.ok(existsSync(SCREENSHOT), `screenshot saved: ${SCREENSHOT}`);
    t.same(elsewhere, [], "the page loaded nothing from elsewhere");
    t.same(errors, [], "no script error");
    await page.close();
  });
}
