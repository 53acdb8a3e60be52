// Drives the admin page in Debian's headless Chromium (playwright-core, no bundled
// browser): sign in, check what the page lists, press a dead letter's Replay button, save
// a screenshot. Run by tests/tests/admin_page.rs, which checks the replayed callback
// arrives. Input from the environment; prints one JSON line; exits non-zero on a failure.
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env('ADMIN_URL');
const token = env('ADMIN_TOKEN');
const plugin = env('EXPECT_PLUGIN');
const pending = env('EXPECT_PENDING_TOKEN');
const deadId = env('DEAD_CALLBACK_ID');
const secret = env('SECRET_SETTING_VALUE');
const screenshot = env('SCREENSHOT');

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  // A refused stylesheet or inline content (CSP) shows here; the sign-in page's own 401
  // and the missing favicon are "Failed to load resource" and expected.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });

  const first = await page.goto(`${base}/admin`);
  check(first.status() === 401, `unsigned /admin answered ${first.status()}`);
  check(await page.locator('input[name=token]').count() === 1, 'no sign-in form');

  await page.fill('input[name=token]', 'not-the-token');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const refusal = await page.locator('[role=alert]').textContent();
  check(refusal.includes('not the admin token'), `a wrong token was not refused: ${refusal}`);

  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const plugins = page.locator(`#plugins tr[data-plugin="${plugin}.wasm"], #plugins tr[data-plugin="${plugin}"]`);
  check(await plugins.count() === 1, `plugin ${plugin} not listed`);
  const pluginRow = await plugins.first().textContent();
  check(/0\.\d+\.\d+/.test(pluginRow), `no version in the plugin row: ${pluginRow}`);
  const open = page.locator(`#open tr[data-token="${pending}"]`);
  check(await open.count() === 1, `pending transaction ${pending} not under open work`);
  check((await open.textContent()).includes('pending'), 'open row does not say pending');
  const collapse = await page.evaluate(() => getComputedStyle(document.querySelector('table')).borderCollapse);
  check(collapse === 'collapse', `the stylesheet was not applied (border-collapse: ${collapse})`);
  const html = await page.content();
  check(!html.includes(secret), 'a secret setting value is on the page');

  const dead = page.locator(`#outbox tr[data-callback="${deadId}"]`);
  check(await dead.count() === 1, `dead letter ${deadId} not listed`);
  await Promise.all([page.waitForNavigation(), dead.locator('button').click()]);
  const notice = await page.locator('[role=status]').textContent();
  check(notice.includes(`Callback ${deadId} queued`), `after replay: ${notice}`);
  check(errors.length === 0, `console errors: ${errors.join('; ')}`);

  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ok: true, notice, screenshot }));
} finally {
  await browser.close();
}
