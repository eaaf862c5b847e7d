// Reads pages of `ledgit serve` in Debian's headless Chromium as a person would, in light and
// dark, at 1280 and 390 px: each loads without a console error, axe-core finds no serious or
// critical violation, nothing scrolls sideways at 390 px, and the snapshot's header stays in
// view while scrolling. Screenshots go to OUT_DIR as NAME-WIDTH-SCHEME.png. Prints a JSON
// summary; exits 1 with the reason on the first failure.
//
// Usage: node pages.mjs BASE_URL OUT_DIR NAME=PATH...

import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { sideways } from "./layout.mjs";

const [base, out, ...named] = process.argv.slice(2);
if (!base || !out || named.length === 0) {
  console.error("usage: node pages.mjs BASE_URL OUT_DIR NAME=PATH...");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const fail = (message) => {
  throw new Error(message);
};
const expect = (condition, message) => condition || fail(message);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const summary = { pages: [] };
try {
  for (const width of [1280, 390]) {
    for (const scheme of ["light", "dark"]) {
      const context = await browser.newContext({
        colorScheme: scheme,
        viewport: { width, height: width === 390 ? 844 : 900 },
        bypassCSP: true,
      });
      for (const pair of named) {
        const [name, path] = pair.split(/=(.*)/s);
        const page = await context.newPage();
        const errors = [];
        page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
        page.on("pageerror", (e) => errors.push(String(e)));
        const response = await page.goto(base + path, { waitUntil: "load" });
        expect(response.status() === 200, `${path}: status ${response.status()}`);
        expect(errors.length === 0, `${path} (${width}, ${scheme}): console errors: ${errors.join(" | ")}`);
        const bytes = (await response.body()).length;
        const wide = await sideways(page);
        expect(wide <= 0, `${path} at ${width} px scrolls ${wide} px sideways`);
        if (width === 1280 && (await page.locator("table.snapshot").count()) > 0) {
          // Scrolled well down, the header row is still at the top of the window.
          await page.evaluate(() => window.scrollTo(0, 2000));
          const top = await page.locator("table.snapshot thead th").first().evaluate((e) => e.getBoundingClientRect().top);
          expect(Math.abs(top) <= 1, `${path}: the snapshot's header scrolled away (top ${top})`);
          await page.evaluate(() => window.scrollTo(0, 0));
        }
        await page.screenshot({ path: `${out}/${name}-${width}-${scheme}.png`, fullPage: width === 390 });
        await page.addScriptTag({ content: axeSource });
        const result = await page.evaluate(async () => await window.axe.run(document));
        const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
        expect(
          bad.length === 0,
          `${path} (${width}, ${scheme}): axe-core: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target).join(", ")}`).join("; ")}`,
        );
        summary.pages.push({ name, width, scheme, bytes, axe_passes: result.passes.length });
        await page.close();
      }
      await context.close();
    }
  }
  console.log(JSON.stringify(summary));
} catch (e) {
  console.error(e.message || String(e));
  await browser.close();
  process.exit(1);
}
await browser.close();
