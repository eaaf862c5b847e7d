// Signs in to `ledgit serve --proposals --oidc-issuer ...` through a real OpenID Provider
// (provider.mjs) in Debian's headless Chromium, as a person would: the page's sign-in button,
// the provider's login form and consent, back on the page signed in by name; then promotes
// billing-agent to staging and prints the proposal's branch. A person the server does not allow
// (mallory, of another domain and no group) is refused after the provider signs them in.
// Prints a JSON summary; exits 1 with the reason on the first failure.
//
// Usage: node signin.mjs BASE_URL OUT_DIR

import { mkdirSync } from "node:fs";
import { expect, launch, report } from "./common.mjs";

const [base, out] = process.argv.slice(2);
if (!base || !out) {
  console.error("usage: node signin.mjs BASE_URL OUT_DIR");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const browser = await launch();

// Through the provider's development login form and its consent page, back to ledgit.
async function signIn(page, login) {
  const failed = [];
  page.on("requestfailed", (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  await page.goto(base + "/signin");
  await page.locator("#oidc").click();
  await page.waitForSelector("input[name=login]");
  await page.locator("input[name=login]").fill(login);
  await page.locator("input[name=password]").fill("any password");
  await page.locator("button[type=submit]").click();
  // Consent (the first time this client asks this person), then the way back.
  for (let i = 0; i < 5 && !page.url().startsWith(base); i++) {
    await page.waitForLoadState("load");
    if (page.url().startsWith(base)) break;
    const button = page.locator("button[type=submit], button.login-submit");
    if ((await button.count()) > 0) {
      await button.first().click();
    } else {
      await page.waitForTimeout(200);
    }
  }
  await page.waitForURL((u) => u.toString().startsWith(base), {
    timeout: 15000,
  }).catch(async () => fail(`${login}: the sign-in ended at ${page.url()} (failed requests: ${failed.join("; ")})`));
  await page.waitForLoadState("load");
}

const summary = { who: null, branch: null, refused: null };
await report(browser, async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await signIn(page, "ada");
  // The callback's page moves on to the snapshot by itself.
  await page.waitForURL(base + "/", { timeout: 15000 }).catch(() => {});
  expect(page.url() === base + "/", `after the sign-in the page is ${page.url()}`);
  summary.who = (await page.locator("#who").innerText()).trim();
  await page.screenshot({ path: `${out}/oidc-signed-in.png`, fullPage: true });
  await page.goto(base + "/agents/billing-agent");
  await page.locator("#env-staging button", { hasText: "Promote from development" }).click();
  await page.waitForURL(/propose/);
  await page.locator("button", { hasText: "Create the proposal" }).click();
  await page.waitForSelector("#branch");
  summary.branch = (await page.locator("#branch").innerText()).trim();
  await context.close();

  const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const refused = await other.newPage();
  await signIn(refused, "mallory");
  summary.refused = (await refused.locator("main").innerText()).trim();
  expect((await refused.locator("#who").count()) === 0, "mallory is signed in");
  await refused.screenshot({ path: `${out}/oidc-refused.png`, fullPage: true });
  await other.close();
  return summary;
});
