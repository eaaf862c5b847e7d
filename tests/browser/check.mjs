// Drives Debian's headless Chromium over `ledgit serve --proposals` on `ledgit init --example`,
// as a person would: every page loads without a console error, in light and dark; the snapshot
// shows the example's versions; the timeline has one lane per environment; everything is
// reachable by keyboard; axe-core finds no serious or critical violation; a visitor without
// the secret sees no control and a POST without the CSRF token is refused; a promotion made
// from the page produces a branch. Screenshots go to OUT_DIR. Prints a JSON summary; exits 1
// with the reason on the first failure.
//
// Usage: node check.mjs BASE_URL OUT_DIR SECRET

import { mkdirSync } from "node:fs";
import { axe as axeCheck, controls, expect, fail, launch, report, sideways } from "./common.mjs";

const [base, out, secret] = process.argv.slice(2);
if (!base || !out || !secret) {
  console.error("usage: node check.mjs BASE_URL OUT_DIR SECRET");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const browser = await launch();

const pages = [
  ["snapshot", "/"],
  ["agent", "/agents/support-bot"],
  ["deployments", "/agents/support-bot/deployments"],
];
const summary = { pages: [], axe: [], branch: null };

async function open(context, path) {
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  const response = await page.goto(base + path, { waitUntil: "load" });
  return { page, errors, status: response.status() };
}

// Presses Tab until the focused control inside `within` reads `label`; fails if it never does.
async function tabTo(page, within, label) {
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate((within) => {
      const e = document.activeElement;
      return e && e.closest(within) ? e.textContent.trim() : "";
    }, within);
    if (focused.startsWith(label)) return;
  }
  fail(`Tab never reaches "${label}" in ${within}`);
}

async function axe(page, name) {
  summary.axe.push(await axeCheck(page, name));
}

await report(browser, async () => {
  // A reader, in each theme.
  for (const scheme of ["light", "dark"]) {
    // bypassCSP: axe-core is injected as a script, which the pages' policy (no scripts) refuses.
    const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1280, height: 900 }, bypassCSP: true });
    for (const [name, path] of pages) {
      const { page, errors, status } = await open(context, path);
      expect(status === 200, `${path}: status ${status}`);
      await page.screenshot({ path: `${out}/${name}-${scheme}.png`, fullPage: true });
      expect(errors.length === 0, `${path} (${scheme}): console errors: ${errors.join(" | ")}`);
      await axe(page, `${name} (${scheme})`);
      const bad = await controls(page);
      expect(bad.length === 0, `${path} (${scheme}): ${bad.join("; ")}`);
      const forms = await page.locator("form[method=post], form[action$='/propose']").count();
      expect(forms === 0, `${path}: a visitor who has not signed in sees ${forms} controls`);
      summary.pages.push({ page: name, scheme, status });
    }
    await context.close();
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const { page } = await open(context, "/");
  // The example's versions.
  const snapshot = await page.locator("table.snapshot tbody").innerText();
  for (const v of ["1.4.1", "2.1.0-rc.1", "2.0.0", "0.9.0", "0.1.0"]) {
    expect(snapshot.includes(v), `the snapshot does not show ${v}`);
  }
  // Keyboard: Tab reaches the filter, its button and every agent link.
  const reached = new Set();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press("Tab");
    reached.add(await page.evaluate(() => {
      const e = document.activeElement;
      return e.id || e.getAttribute("href") || e.textContent.trim();
    }));
  }
  for (const want of ["q", "state", "at", "Show", "/agents/support-bot", "/agents/triage-bot"]) {
    expect(reached.has(want), `Tab never reaches ${want} (reached: ${[...reached].join(", ")})`);
  }
  // Enter in the filter submits it.
  await page.locator("#q").fill("bot");
  await page.locator("#q").press("Enter");
  await page.waitForURL(/q=bot/);
  expect((await page.locator("table.snapshot tbody tr").count()) === 2, "the filter did not keep the two bots");
  // The failed apply of billing-agent in development: its badge on the snapshot links the
  // card, which says what runs, the error and how many attempts failed.
  await page.goto(base + "/?state=failed");
  expect((await page.locator("table.snapshot tbody tr").count()) === 1, "the failed filter does not keep billing-agent alone");
  await page.locator("a.badge.sync-Failed").first().click();
  await page.waitForURL(/\/agents\/billing-agent#env-development$/);
  const failure = await page.locator("#env-development").innerText();
  expect(
    failure.includes("no capacity left in development") && failure.includes("1 attempt failed") && failure.includes("nothing applied yet"),
    `the development card does not tell the failure: ${failure}`,
  );
  await page.screenshot({ path: `${out}/agent-failed.png`, fullPage: true });
  // The timeline: one lane per environment.
  await page.goto(base + "/agents/support-bot");
  const lanes = await page.locator("svg.timeline g.lane").count();
  expect(lanes === 3, `the timeline has ${lanes} lanes, not 3`);
  // A POST without a session or CSRF token is refused, even from this origin.
  const forged = await page.request.post(base + "/agents/billing-agent/propose", {
    form: { action: "promote", environment: "staging" },
    headers: { origin: base },
  });
  expect(forged.status() === 403, `a POST without a session or CSRF token got ${forged.status()}`);

  // Sign in, then promote billing-agent to staging from the page.
  await page.goto(base + "/signin");
  await page.locator("#secret").fill(secret);
  await page.locator("#secret").press("Enter");
  await page.waitForURL(base + "/");
  await page.goto(base + "/agents/billing-agent");
  await axe(page, "agent (signed in)");
  await page.screenshot({ path: `${out}/agent-signed-in.png`, fullPage: true });
  const sessionForged = await page.request.post(base + "/agents/billing-agent/propose", {
    form: { action: "promote", environment: "staging" },
    headers: { origin: base },
  });
  expect(sessionForged.status() === 403, `a signed-in POST without the CSRF token got ${sessionForged.status()}`);
  // By keyboard alone: Tab to staging's "Promote from development…", then Enter.
  await tabTo(page, "#env-staging", "Promote from development");
  await page.keyboard.press("Enter");
  await page.waitForURL(/propose/);
  const added = await page.locator("pre.diff .add").allInnerTexts();
  const removed = await page.locator("pre.diff .del").allInnerTexts();
  expect(
    added.join() === "+version: 2.1.0-rc.1" && removed.join() === "-version: 2.0.0",
    `the preview's diff is ${JSON.stringify({ added, removed })}`,
  );
  await axe(page, "proposal preview");
  await page.screenshot({ path: `${out}/proposal-preview.png`, fullPage: true });
  await page.locator("button", { hasText: "Create the proposal" }).click();
  await page.waitForSelector("#branch");
  summary.branch = (await page.locator("#branch").innerText()).trim();
  await page.screenshot({ path: `${out}/proposal-created.png`, fullPage: true });
  // The same change again: the preview names the open proposal and offers no button.
  await page.goto(base + "/agents/billing-agent");
  // By keyboard alone: Tab to staging's "Promote from development…", then Enter.
  await tabTo(page, "#env-staging", "Promote from development");
  await page.keyboard.press("Enter");
  await page.waitForURL(/propose/);
  const identical = await page.locator("#identical").innerText();
  expect(identical.includes(summary.branch), `the preview does not name the open proposal: ${identical}`);
  expect((await page.locator("button", { hasText: "Create the proposal" }).count()) === 0,
    "the preview of an open proposal's change offers to make it again");
  await axe(page, "proposal already open");
  await page.screenshot({ path: `${out}/proposal-identical.png`, fullPage: true });
  // Signed in, on a phone: the agent page with its controls, the tokens tab, the revoke
  // preview (its heading holds a 32-character token id) and an error page neither scroll
  // sideways, and every control is large enough to touch.
  await page.goto(base + "/agents/support-bot/deployments");
  const jti = await page.locator("input[name=jti]").first().getAttribute("value");
  expect(jti && jti.length === 32, `no token to revoke on the tokens tab (${jti})`);
  const state = await context.storageState();
  for (const scheme of ["light", "dark"]) {
    const phone = await browser.newContext({ colorScheme: scheme, viewport: { width: 390, height: 844 }, bypassCSP: true, storageState: state });
    for (const [name, path] of [
      ["agent-signed-in", "/agents/support-bot"],
      ["deployments-signed-in", "/agents/support-bot/deployments"],
      ["revoke-preview", `/agents/support-bot/propose?action=revoke&jti=${jti}`],
      ["set-error", "/agents/support-bot/propose?action=set&environment=production&version=no%20such%20version"],
      ["not-found", "/no/such/page"],
    ]) {
      const { page: small, errors, status } = await open(phone, path);
      await small.screenshot({ path: `${out}/${name}-390-${scheme}.png`, fullPage: true });
      // An error page's own status is the one console line it may cause.
      const others = errors.filter((e) => !(status >= 400 && e.includes(`status of ${status}`)));
      expect(others.length === 0, `${path} at 390 px (${scheme}): console errors: ${others.join(" | ")}`);
      const wide = await sideways(small);
      expect(wide <= 0, `${path} at 390 px (${scheme}) scrolls ${wide} px sideways`);
      const bad = await controls(small);
      expect(bad.length === 0, `${path} at 390 px (${scheme}): ${bad.join("; ")}`);
      await axe(small, `${name} at 390 px (${scheme})`);
    }
    await phone.close();
  }
  await context.close();

  // At a phone's width, in each theme: what people read first.
  for (const scheme of ["light", "dark"]) {
    const phone = await browser.newContext({ colorScheme: scheme, viewport: { width: 390, height: 844 }, bypassCSP: true });
    for (const [name, path] of pages) {
      const { page: small, errors } = await open(phone, path);
      await small.screenshot({ path: `${out}/${name}-390-${scheme}.png`, fullPage: true });
      expect(errors.length === 0, `${path} at 390 px (${scheme}): console errors: ${errors.join(" | ")}`);
      const wide = await sideways(small);
      expect(wide <= 0, `${path} at 390 px scrolls ${wide} px sideways`);
      const bad = await controls(small);
      expect(bad.length === 0, `${path} at 390 px (${scheme}): ${bad.join("; ")}`);
      if (name === "snapshot") {
        // Every environment of every agent, production included, on the cards.
        const production = await small.locator("td[data-env=production]").count();
        const agents = await small.locator("table.snapshot tbody tr").count();
        expect(production === agents && agents >= 4 && (await small.locator("td[data-env=production]").first().isVisible()),
          `the phone's cards show ${production} production cells for ${agents} agents`);
      }
      await axe(small, `${name} at 390 px (${scheme})`);
    }
    await phone.close();
  }
  return summary;
});
