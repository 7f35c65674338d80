// Drives the dashboard's workflow pages in Debian's headless Chromium. Run by
// crates/forge/tests/workflows.rs, which starts the app with a run waiting for an event and a
// blocked run:
//
//   node tests/browser/workflows.mjs <base url> <screenshot folder> <waiting run id> <blocked run id>
//
// Each step prints one JSON line; any failed expectation, page error or console error exits 1.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, shots, waitingId, blockedId] = process.argv.slice(2);
if (!base || !shots || !waitingId || !blockedId) {
  console.error("usage: workflows.mjs <base url> <screenshot folder> <waiting run id> <blocked run id>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });
page.on("response", (r) => { if (r.status() >= 500) problems.push(`${r.status()} from ${r.url()}`); });
page.on("request", (r) => { if (!r.url().startsWith(base + "/")) problems.push("request off the gateway: " + r.url()); });
page.on("dialog", (d) => d.accept());
page.setDefaultTimeout(20000);

const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
const shot = (name) => page.screenshot({ path: join(shots, name + ".png"), fullPage: true });
const go = (hash) => page.goto(base + "/_dashboard" + hash);

try {
  await go("#/workflows");
  await page.locator(`tr[data-run="${waitingId}"]`).waitFor();
  await page.locator(`tr[data-run="${blockedId}"] [data-run-status=blocked]`).waitFor();
  await shot("workflows");
  step("list");

  await go("#/workflows?status=blocked");
  await page.locator(`tr[data-run="${blockedId}"]`).waitFor();
  if (await page.locator(`tr[data-run="${waitingId}"]`).count() !== 0) throw new Error("the status filter let a waiting run through");
  step("filter");

  await go("#/workflows/" + waitingId);
  await page.locator("[data-run-status=waiting]").first().waitFor();
  await page.locator('tr[data-step="email_confirmed"]').waitFor();
  await page.fill('form[data-action=send-event] input[name=payload]', '{"by": "browser"}');
  await page.click('form[data-action=send-event] button');
  await page.locator("[data-run-status=completed]").first().waitFor();
  await page.locator("text=confirmed by browser").first().waitFor();
  await shot("workflow-completed");
  step("send-event");

  await go("#/workflows/" + blockedId);
  await page.locator("[data-blocked]").waitFor();
  await shot("workflow-blocked");
  await page.click("[data-action=resume-from]");
  await page.locator("[data-run-status=completed]").first().waitFor();
  step("resume");

  if (problems.length) throw new Error(problems.join("\n"));
  step("done");
} catch (e) {
  console.log(JSON.stringify({ failed: e.message, problems }));
  await shot("workflow-failure").catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
