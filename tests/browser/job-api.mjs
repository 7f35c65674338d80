// Drives the dashboard's job API pages (clients, webhooks) in Debian's headless Chromium. Run
// by crates/forge/tests/job_api_dashboard.rs, which starts the app with one client, a webhook
// endpoint that answered 410 (so Forge disabled it) and one that works:
//
//   node tests/browser/job-api.mjs <base url> <screenshot folder> <disabled endpoint id> \
//        <working endpoint id> <key prefix>
//
// Each step prints one JSON line; any failed expectation, page error or console error exits 1.
import { open } from "./harness.mjs";

const [base, shots, disabledId, workingId, keyPrefix] = process.argv.slice(2);
if (!base || !shots || !disabledId || !workingId || !keyPrefix) {
  console.error("usage: job-api.mjs <base url> <screenshot folder> <disabled id> <working id> <key prefix>");
  process.exit(2);
}
// Every call here must succeed: any 4xx or 5xx is a problem.
const { page, shot, step, run } = await open({ shots, gateways: [base], failAt: 400 });
const go = (hash) => page.goto(base + "/_dashboard" + hash);

await run("api-failure", async () => {
  // The overview's banner names the endpoint Forge disabled, and why.
  await go("#/");
  const banner = await page.locator("[data-banner=webhooks-disabled]").textContent();
  if (!banner.includes("410")) throw new Error("the banner does not say why: " + banner);
  step("banner", { screenshot: await shot("api-banner") });

  // Clients: the client, its key by prefix only.
  await go("#/clients");
  await page.locator(`tr[data-client=acme] [data-key="${keyPrefix}"]`).waitFor();
  const row = await page.locator("tr[data-client=acme]").textContent();
  if (!row.includes(keyPrefix)) throw new Error("the key's prefix is not shown: " + row);
  step("clients", { screenshot: await shot("api-clients") });

  // Webhooks: both endpoints, the disabled one marked.
  await go("#/webhooks");
  await page.locator(`tr[data-endpoint="${disabledId}"] [data-disabled]`).waitFor();
  await page.locator(`tr[data-endpoint="${workingId}"]`).waitFor();
  step("webhooks", { screenshot: await shot("api-webhooks") });

  // The disabled endpoint's page: the 410 attempt; recover replays what it missed.
  await go("#/webhooks/" + disabledId);
  await page.locator("[data-banner=endpoint-disabled]").waitFor();
  await page.locator("tr[data-delivery] .state.error", { hasText: "410" }).first().waitFor();
  await page.click("[data-action=recover]");
  await page.locator("#flash", { hasText: "Re-queued" }).waitFor();
  // Enabled again: the page shows Disable, and the replayed delivery succeeds.
  await page.locator("[data-action=disable]").waitFor();
  for (let i = 0; i < 100; i++) {
    await go("#/webhooks/" + disabledId + "?t=" + i);
    await page.locator("h1:has-text('Webhook endpoint')").waitFor();
    if (await page.locator("tr[data-delivery] .state.completed").count()) break;
    await page.waitForTimeout(200);
  }
  await page.locator("tr[data-delivery] .state.completed").first().waitFor();
  step("recover", { screenshot: await shot("api-recovered") });

  // The working endpoint: resend one delivery; disable, then enable it.
  await go("#/webhooks/" + workingId);
  await page.locator("tr[data-delivery] .state.completed").first().waitFor();
  await page.locator("tr[data-delivery] [data-action=resend]").first().click();
  await page.locator("#flash", { hasText: "queued again" }).waitFor();
  await page.click("[data-action=disable]");
  await page.locator("[data-banner=endpoint-disabled]").waitFor();
  await page.click("[data-action=enable]");
  await page.locator("[data-action=disable]").waitFor();
  step("resend and toggle", { screenshot: await shot("api-endpoint") });
});
