// The `forge new` app's page (web/index.html, served by the app) in headless Chromium: the
// list of sign-ups is live, so a sign-up made by another client appears without a reload, and
// one made with the page's form too. Run by .ci/forge-new.sh:
//   node live-page.mjs BASE_URL SCREENSHOT_DIR
import { open } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
// The bad email's 422 is the answer the page shows; Chromium logs it as a console error.
const { page, shot, step, run } = await open({
  shots,
  gateways: [base],
  allowConsole: (m) => /status of 422/.test(m.text()),
});

await run('live-page-failure', async () => {
  await page.goto(base + '/');
  await page.waitForFunction(() => /live/.test(document.getElementById('status').textContent));
  step('page live', { status: await page.textContent('#status') });
  let navigations = 0;
  page.on('framenavigated', () => navigations++);

  const other = `other-${Date.now()}@example.com`;
  const answer = await fetch(base + '/rpc/sign_up', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: other }),
  });
  if (!answer.ok) throw new Error(`sign_up from another client answered ${answer.status}`);
  await page.locator('#signups li', { hasText: other }).waitFor();
  step('another client\'s sign-up appeared', { email: other });

  const mine = `form-${Date.now()}@example.com`;
  await page.fill('#email', mine);
  await page.click('button');
  await page.locator('#signups li', { hasText: mine }).waitFor();
  await page.locator('#signups li', { hasText: mine }).filter({ hasText: 'welcomed' }).waitFor();
  step('the form\'s sign-up appeared and was welcomed', { email: mine });

  // Past the browser's own check of type="email", to the server's.
  await page.evaluate(() => (document.getElementById('email').type = 'text'));
  await page.fill('#email', 'nobody');
  await page.click('button');
  await page.waitForFunction(() => /email/.test(document.getElementById('error').textContent));
  step('a bad email shows the field error', { error: await page.textContent('#error') });

  if (navigations !== 0) throw new Error(`the page reloaded ${navigations} time(s)`);
  await shot('live-page');
});
