// Reads pages of `ledgit serve` in Debian's headless Chromium as a person would, in light and
// dark, at 1280 and 390 px: each loads without a console error, axe-core finds no serious or
// critical violation, nothing scrolls sideways at 390 px, control borders reach 3:1 and on a
// phone every control is 44 px tall with 16 px text, and the snapshot's header stays in
// view while scrolling. Screenshots go to OUT_DIR as NAME-WIDTH-SCHEME.png. Prints a JSON
// summary; exits 1 with the reason on the first failure.
//
// Usage: node pages.mjs BASE_URL OUT_DIR NAME=PATH...

import { mkdirSync } from "node:fs";
import { axe, controls, expect, launch, report, sideways } from "./common.mjs";

const [base, out, ...named] = process.argv.slice(2);
if (!base || !out || named.length === 0) {
  console.error("usage: node pages.mjs BASE_URL OUT_DIR NAME=PATH...");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const browser = await launch();
const summary = { pages: [] };
await report(browser, async () => {
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
        const bad = await controls(page);
        expect(bad.length === 0, `${path} at ${width} px (${scheme}): ${bad.join("; ")}`);
        if (width === 1280 && (await page.locator("table.snapshot").count()) > 0) {
          // Scrolled well down, the header row is still at the top of the window.
          await page.evaluate(() => window.scrollTo(0, 2000));
          const top = await page.locator("table.snapshot thead th").first().evaluate((e) => e.getBoundingClientRect().top);
          expect(Math.abs(top) <= 1, `${path}: the snapshot's header scrolled away (top ${top})`);
          await page.evaluate(() => window.scrollTo(0, 0));
        }
        await page.screenshot({ path: `${out}/${name}-${width}-${scheme}.png`, fullPage: width === 390 });
        const result = await axe(page, `${path} (${width}, ${scheme})`);
        summary.pages.push({ name, width, scheme, bytes, axe_passes: result.passes });
        await page.close();
      }
      await context.close();
    }
  }
  return summary;
});
