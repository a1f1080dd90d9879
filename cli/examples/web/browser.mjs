// Drive the page in headless Chromium (playwright-core) and screenshot it, for tests/test_web.py.
//
//   node browser.mjs OUTDIR STEP...      STEP: a URL to open, "click:SELECTOR" (e.g. click:#new-sample)
//                                        or "wait:MS" (let the page run MS milliseconds, e.g. turn)
//
// After a URL or a click it waits until the page has finished a generation (body[data-generation]
// moved on, data-state ready or error), then writes OUTDIR/stepN-page.png (the viewport) and
// stepN-ID.png for each visible canvas (texture and tiled on the Texture tab, solid on the Solid tab;
// element screenshots) at device scale factor 1, and at the end prints a JSON list with each step's
// state, seed, status line, tiled renderer and the canvases it wrote.
// CHROMIUM (default /usr/bin/chromium) names the browser; the flags suit a closed network, and
// CHROMIUM_FLAGS adds more (e.g. --disable-webgl, to see the page without WebGL).
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [outDir, ...steps] = process.argv.slice(2);
if (!outDir || steps.length === 0) {
  console.error("usage: node browser.mjs OUTDIR URL|click:SELECTOR ...");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--force-color-profile=srgb",
    ...(process.env.CHROMIUM_FLAGS ?? "").split(" ").filter(Boolean),
  ],
  timeout: 60_000,
});
const log = [];
const results = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1024 }, deviceScaleFactor: 1 });
  page.on("console", (message) => log.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => log.push(`pageerror: ${error.message}`));
  for (const [i, step] of steps.entries()) {
    const before = await page.evaluate(() => document.body?.dataset.generation ?? "").catch(() => "");
    if (step.startsWith("wait:")) await page.waitForTimeout(Number(step.slice("wait:".length)));
    else {
      if (step.startsWith("click:")) await page.click(step.slice("click:".length));
      else await page.goto(step);
      const wait = step.startsWith("click:") ? before : ""; // a new page starts from no generation
      await page.waitForFunction(
        (previous) => ["ready", "error"].includes(document.body.dataset.state) && (document.body.dataset.generation ?? "") !== previous,
        wait, { timeout: 120_000, polling: 100 },
      );
    }
    const name = (what) => join(outDir, `step${i}-${what}.png`);
    await page.screenshot({ path: name("page") });
    const canvases = [];
    for (const id of ["texture", "tiled", "solid"]) {
      const canvas = page.locator(`#${id}`);
      if (await canvas.isVisible()) {
        await canvas.screenshot({ path: name(id) });
        canvases.push(id);
      }
    }
    results.push(await page.evaluate((canvases) => ({
      state: document.body.dataset.state,
      seed: document.body.dataset.seed ?? null,
      tiled: document.body.dataset.tiled ?? null,
      status: document.getElementById("status").textContent,
      canvases,
      rects: Object.fromEntries(canvases.map((id) => {
        const r = document.getElementById(id).getBoundingClientRect();
        return [id, [r.x, r.y, r.width, r.height]];
      })),
      url: location.href,
    }), canvases));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ steps: results, log }));
