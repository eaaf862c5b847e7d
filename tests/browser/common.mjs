// What the browser checks share: Debian's headless Chromium, failing with a reason, axe-core's
// verdict, and what "reads without sideways scrolling" means.

import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

export const fail = (message) => {
  throw new Error(message);
};
export const expect = (condition, message) => condition || fail(message);

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// Runs `work`, prints the summary it returns as JSON and closes the browser; on the first
// failure prints the reason and exits 1.
export async function report(browser, work) {
  try {
    console.log(JSON.stringify(await work()));
  } catch (e) {
    console.error(e.message || String(e));
    await browser.close();
    process.exit(1);
  }
  await browser.close();
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

// axe-core over the page (whose context must bypass the pages' CSP, which refuses scripts):
// fails on any serious or critical violation, else returns the counts.
export async function axe(page, name) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await window.axe.run(document));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    bad.length === 0,
    `${name}: axe-core: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target).join(", ")}`).join("; ")}`,
  );
  return { page: name, passes: result.passes.length, violations: result.violations.length, serious_or_critical: 0 };
}

// How far the page, or any table's scroll region, is wider than the window. A diff may
// scroll; it is code.
export async function sideways(page) {
  return await page.evaluate(() => {
    const regions = [...document.querySelectorAll(".scroll")].map((e) => e.scrollWidth - e.clientWidth);
    return Math.max(document.documentElement.scrollWidth - window.innerWidth, ...regions);
  });
}
