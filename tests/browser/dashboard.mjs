// Drives Forge's dashboard in Debian's headless Chromium. Run by
// crates/forge/tests/dashboard_browser.rs, which starts the app and seeds a failing job:
//
//   node tests/browser/dashboard.mjs <base url> <screenshot folder> <failing job id> \
//        [<closed base url> <admin API key>]
//
// The last two: a gateway that is not open (not development), where the page asks for
// credentials: a wrong key is refused, the admin key opens the overview.
// Each step prints one JSON line; any failed expectation, page error or console error exits 1.
import { open } from "./harness.mjs";

const [base, shots, failingId, closedBase, adminKey] = process.argv.slice(2);
if (!base || !shots || !failingId) {
  console.error("usage: dashboard.mjs <base url> <screenshot folder> <failing job id>");
  process.exit(2);
}
// A refused call (the dispatch form's 422) is logged by Chromium as a failed resource; those
// are expected of /_api. Anything else on the console is a problem.
const allowConsole = (m) => {
  const url = (m.location() && m.location().url) || "";
  return m.text().startsWith("Failed to load resource: the server responded with a status of 4") && url.includes("/_api/");
};
const { page, shot, step, run } = await open({ shots, gateways: [base, closedBase].filter(Boolean), allowConsole });
const go = async (hash) => {
  await page.goto(base + "/_dashboard" + hash);
};

await run("failure", async () => {
  // Overview: counts, charts, nodes.
  await go("#/");
  await page.locator("[data-count=completed]").waitFor();
  await page.locator("text=Recent failures").waitFor();
  await page.locator(`a[href="#/jobs/${failingId}"]`).first().waitFor();
  step("overview", { screenshot: await shot("overview") });

  // Dispatch: a wrong argument is refused with the field named; a right one creates the job.
  await go("#/dispatch");
  await page.selectOption("select[name=kind]", "greet_browser");
  await page.fill("textarea[name=args]", '{"nam": "Ada"}');
  await page.click("button:has-text('Dispatch')");
  const refusal = await page.locator("#dispatch-result .error-box").textContent();
  if (!refusal.includes("name")) throw new Error("the refusal does not name the field: " + refusal);
  await page.fill("textarea[name=args]", '{"name": "Ada"}');
  await page.click("button:has-text('Dispatch')");
  const id = await page.locator("[data-dispatched]").getAttribute("data-dispatched");
  step("dispatch", { job: Number(id), refusal, screenshot: await shot("dispatch") });

  // Jobs: the dispatched job shows up completed (the list refreshes itself).
  await go("#/jobs");
  await page.locator(`tr[data-job="${id}"] [data-state=completed]`).waitFor();
  step("jobs", { job: Number(id), state: "completed", screenshot: await shot("jobs") });

  // Live: the overview and a job's page follow their data over /ws (forge:overview, forge:job),
  // not on their timers: no request for their data after the first.
  const dispatch = (body) => page.evaluate(async (body) => {
    const r = await fetch("/_api/jobs", { method: "POST", headers: { "content-type": "application/json", "x-forge-csrf": "1" }, body: JSON.stringify(body) });
    return r.json();
  }, body);
  await go("#/");
  await page.waitForFunction(() => document.body.dataset.live === "on");
  let overviewFetches = 0;
  page.on("request", (r) => { if (new URL(r.url()).pathname === "/_api/overview") overviewFetches++; });
  const countOf = () => page.locator("[data-count=completed] .n").textContent().then((t) => Number(t.replace(/\D/g, "")));
  const completedBefore = await countOf();
  await dispatch({ kind: "greet_browser", args: { name: "Live" } });
  await page.waitForFunction((n) => Number(document.querySelector("[data-count=completed] .n").textContent.replace(/\D/g, "")) > n, completedBefore);
  if (overviewFetches !== 0) throw new Error(`the overview fetched its data ${overviewFetches} time(s) instead of following it`);
  step("live overview", { completed: [completedBefore, await countOf()], screenshot: await shot("live-overview") });
  const later = await dispatch({ kind: "greet_browser", args: { name: "Later" }, run_at: new Date(Date.now() + 3000).toISOString() });
  let jobFetches = 0;
  page.on("request", (r) => { if (new URL(r.url()).pathname === `/_api/jobs/${later.id}`) jobFetches++; });
  await go("#/jobs/" + later.id);
  await page.locator("h1 [data-state=scheduled]").waitFor();
  await page.locator("h1 [data-state=completed]").waitFor();
  await page.locator("tr[data-log]", { hasText: "greeting" }).first().waitFor();
  if (jobFetches !== 1) throw new Error(`the job page fetched the job ${jobFetches} times instead of following it`);
  step("live job", { job: later.id, screenshot: await shot("live-job") });

  // A failing job: its error and its logs, then retry it and see the second attempt fail.
  await go("#/jobs/" + failingId);
  const error = await page.locator("[data-error-attempt='1']").textContent();
  if (!error.includes("the printer is on fire")) throw new Error("the job's error is not shown: " + error);
  await page.locator("tr[data-log]", { hasText: "about to fail" }).first().waitFor();
  await page.locator("[data-span='forge.job']").first().waitFor();
  step("job detail", { job: Number(failingId), screenshot: await shot("job-failed") });
  page.once("dialog", (d) => d.accept());
  await page.click("[data-action=retry]");
  await page.locator("[data-error-attempt='2']").waitFor();
  // The trace waterfall shows both attempts (rebuilt from the job's row).
  await page.waitForFunction(() => document.querySelectorAll("[data-span='forge.job']").length >= 2);
  step("retry", { job: Number(failingId), screenshot: await shot("job-retried") });

  // Queues: pause the default queue.
  await go("#/queues");
  await page.locator("tr[data-queue=default] [data-action=pause]").click();
  await page.locator("tr[data-queue=default] [data-paused]").waitFor();
  step("pause queue", { queue: "default", screenshot: await shot("queues") });

  // The other pages render.
  for (const [name, hash, ready] of [
    ["crons", "#/crons", "tr[data-cron]"],
    ["nodes", "#/nodes", "td.mono"],
    ["logs", "#/logs?level=warn", "tr[data-log]"],
    ["trace", "#/traces", "input[name=trace]"],
    ["metrics", "#/metrics?name=forge_jobs_completed_total", "[data-chart]"],
    ["functions", "#/functions", "h1:has-text('Functions')"],
  ]) {
    await go(hash);
    await page.locator(ready).first().waitFor();
    step(name, { screenshot: await shot(name) });
  }
  if (closedBase) {
    await page.goto(closedBase + "/_dashboard#/");
    await page.locator("h1:has-text('Sign in')").waitFor();
    await page.fill("input[name=token]", "forge_wrong_key");
    await page.click("button:has-text('Sign in')");
    await page.locator("text=That key or token was refused").waitFor();
    if (await page.locator("[data-count=completed]").count()) throw new Error("a wrong key opened the dashboard");
    step("sign in refused", { screenshot: await shot("sign-in") });
    await page.fill("input[name=token]", adminKey);
    await page.click("button:has-text('Sign in')");
    await page.locator("[data-count=completed]").waitFor();
    step("signed in", { screenshot: await shot("signed-in") });
  }
});
