// Drives the dashboard's workflow pages in Debian's headless Chromium. Run by
// crates/forge/tests/workflows.rs, which starts the app with a run waiting for an event and a
// blocked run:
//
//   node tests/browser/workflows.mjs <base url> <screenshot folder> <waiting run id> <blocked run id>
//
// Each step prints one JSON line; any failed expectation, page error or console error exits 1.
import { open } from "./harness.mjs";

const [base, shots, waitingId, blockedId] = process.argv.slice(2);
if (!base || !shots || !waitingId || !blockedId) {
  console.error("usage: workflows.mjs <base url> <screenshot folder> <waiting run id> <blocked run id>");
  process.exit(2);
}
const { page, shot, step, run } = await open({ shots, gateways: [base] });
page.on("dialog", (d) => d.accept());
const go = (hash) => page.goto(base + "/_dashboard" + hash);

await run("workflow-failure", async () => {
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
});
