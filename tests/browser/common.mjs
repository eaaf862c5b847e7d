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

// What is wrong with the page's controls, as a list of sentences: a border that does not reach
// 3:1 against the background the control stands on (WCAG 1.4.11), and at widths up to 700 px
// an input, select, button, tab or pager link under 44 px tall or with text under 16 px (iOS
// zooms into smaller inputs).
export async function controls(page) {
  return await page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const ratio = (a, b) => {
      const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
      return (x + 0.05) / (y + 0.05);
    };
    const background = (e) => {
      for (let n = e.parentElement; n; n = n.parentElement) {
        const c = rgb(getComputedStyle(n).backgroundColor);
        if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
      }
      return rgb(getComputedStyle(document.body).backgroundColor).slice(0, 3);
    };
    const visible = (e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
    };
    const name = (e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.name ? "[name=" + e.name + "]" : ""} "${(e.textContent || e.value || "").trim().slice(0, 30)}"`;
    const problems = [];
    const bordered = [...document.querySelectorAll("input:not([type=hidden]), select, button:not(.link)")].filter(visible);
    for (const e of bordered) {
      const s = getComputedStyle(e);
      if (parseFloat(s.borderTopWidth) === 0) continue;
      const r = ratio(rgb(s.borderTopColor).slice(0, 3), background(e));
      if (r < 3) problems.push(`${name(e)}: border ${r.toFixed(2)}:1`);
    }
    if (window.innerWidth <= 700) {
      const touched = [...document.querySelectorAll("input:not([type=hidden]), select, button, .tabs a, .pager a")].filter(visible);
      for (const e of touched) {
        const h = e.getBoundingClientRect().height;
        const size = parseFloat(getComputedStyle(e).fontSize);
        if (h < 44) problems.push(`${name(e)}: ${h.toFixed(0)} px tall`);
        if (size < 16) problems.push(`${name(e)}: ${size} px text`);
      }
    }
    return problems;
  });
}
