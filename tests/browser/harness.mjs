// What the browser scripts share: Debian's headless Chromium with one page that records
// problems (page errors, console errors, 5xx answers, requests off the gateways), steps printed
// as JSON lines, screenshots, and the ending (exit 1 with the problems and a failure
// screenshot when a step throws or something went wrong).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Opens the browser. `gateways`: the base URLs the page may call; `allowConsole(message)`:
 * console errors that are expected (default: none); `failAt`: the lowest status that is a
 * problem (default 500).
 */
export async function open({ shots, gateways, allowConsole = () => false, failAt = 500 }) {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !allowConsole(m)) problems.push("console error: " + m.text());
  });
  page.on("response", (r) => { if (r.status() >= failAt) problems.push(`${r.status()} from ${r.url()}`); });
  page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));
  page.on("request", (r) => {
    if (!gateways.some((g) => r.url().startsWith(g + "/"))) problems.push("request off the gateways: " + r.url());
  });
  page.setDefaultTimeout(20000);
  const shot = async (name) => {
    const path = join(shots, name + ".png");
    await page.screenshot({ path, fullPage: true });
    return path;
  };
  const step = (name, extra) => console.log(JSON.stringify({ step: name, ...extra }));
  /** Runs `steps`; any throw or recorded problem fails the run. */
  const run = async (failureShot, steps) => {
    try {
      await steps();
      if (problems.length) throw new Error(problems.join("\n"));
      step("done", { screenshots: shots });
    } catch (e) {
      await shot(failureShot).catch(() => {});
      console.error(String((e && e.stack) || e));
      if (problems.length) console.error(problems.join("\n"));
      process.exitCode = 1;
    } finally {
      await browser.close();
    }
  };
  return { page, problems, shot, step, run };
}
