// Browser test of the web UI: headless Chromium (Debian's package) driven by
// playwright-core. Ingests known profiles into a running phlox, opens the
// UI, and checks what a user sees: the widest function of the flame graph
// and its percentage, a label filter changing it, the diff view, and the
// render time of an 8192-node flame graph (reported, not asserted).
//
// Usage: node ui.test.mjs <base url> <output dir>
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const base = process.argv[2];
const out = process.argv[3];
fs.mkdirSync(out, { recursive: true });

async function ingest(name, folded) {
  const r = await fetch(`${base}/ingest?name=${encodeURIComponent(name)}&format=folded&sampleRate=100`, {
    method: 'POST',
    body: folded,
  });
  assert.equal(r.status, 200, `ingest ${name}: ${r.status} ${await r.text()}`);
}

// shop: handle 30+45 (eu) + 40 (us) = 115 of 200 → 57.50%; with region=us, gc 60 of 100 → 60.00%.
await ingest('shop.cpu{region=eu}', 'handle;parse 30\nhandle;render 45\ngc 25\n');
await ingest('shop.cpu{region=us}', 'gc 60\nhandle;parse 40\n');
// big: 12 000 distinct stacks, so the flame graph is cut to 8192 nodes.
let lines = '';
for (let i = 0; i < 12000; i++) {
  lines += `main;mod${i % 50};pkg${i % 400};fn${i} ${1 + (i % 7)}\n`;
}
await ingest('big.cpu{region=eu}', lines);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const failures = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
page.on('console', (m) => {
  if (m.type() === 'error') failures.push(`console error: ${m.text()}`);
});

const summary = () => page.locator('[data-testid=flamegraph-summary]').innerText();
async function waitSummary(prefix) {
  await page.waitForFunction(
    (p) => {
      const el = document.querySelector('[data-testid=flamegraph-summary]');
      return el && el.textContent.trim().startsWith(p) && window.__phlox && window.__phlox.ready;
    },
    prefix,
    { timeout: 20000 },
  );
  return (await summary()).trim();
}

try {
  const started = Date.now();
  await page.goto(`${base}/`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.__phlox && window.__phlox.ready, null, { timeout: 20000 });
  const firstLoadMs = Date.now() - started;

  // Select the service: the widest function and its percentage.
  await page.selectOption('[data-testid=service-select]', 'shop');
  assert.equal(await waitSummary('handle'), 'handle 57.50%');
  const rows = await page.locator('[data-testid=top-row]').count();
  assert.ok(rows >= 4, `top table has ${rows} rows`);

  // A label filter changes it.
  await page.selectOption('[data-testid=label-name-select]', 'region');
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=label-value-select] option')].some((o) => o.value === 'us'),
    null,
    { timeout: 10000 },
  );
  await page.selectOption('[data-testid=label-value-select]', 'us');
  await page.click('[data-testid=add-filter]');
  assert.equal(await waitSummary('gc'), 'gc 60.00%');
  assert.equal(await page.locator('[data-testid=filter-chip]').count(), 1);
  // The view is in the URL: reloading restores it.
  await page.reload({ waitUntil: 'load' });
  assert.equal(await waitSummary('gc'), 'gc 60.00%');
  await page.screenshot({ path: path.join(out, 'flamegraph.png'), fullPage: true });

  // The diff view renders.
  await page.click('[data-testid=mode-diff]');
  await page.waitForSelector('[data-testid=diff-flamegraph]', { state: 'visible', timeout: 20000 });
  await page.waitForSelector('[data-testid=diff-legend]', { state: 'visible', timeout: 20000 });
  await page.waitForFunction(() => window.__phlox && window.__phlox.ready, null, { timeout: 20000 });
  await page.screenshot({ path: path.join(out, 'diff.png'), fullPage: true });

  // A large flame graph: timings reported.
  const big = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  big.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  const t0 = Date.now();
  await big.goto(`${base}/`, { waitUntil: 'load' });
  await big.waitForFunction(() => window.__phlox && window.__phlox.ready, null, { timeout: 20000 });
  await big.selectOption('[data-testid=service-select]', 'big');
  await big.waitForFunction(
    () => window.__phlox && window.__phlox.ready && (window.__phlox.timings.flamegraphNodes || 0) > 8000,
    null,
    { timeout: 30000 },
  );
  const timings = await big.evaluate(() => window.__phlox.timings);
  await big.screenshot({ path: path.join(out, 'big.png') });
  console.log(
    `ui timings: first load ${firstLoadMs} ms (page ${Math.round(timings.pageLoadMs ?? -1)} ms), ` +
      `flame graph of ${timings.flamegraphNodes} nodes rendered in ${Math.round(timings.flamegraphRenderMs)} ms ` +
      `(load ${Date.now() - t0} ms)`,
  );
  assert.deepEqual(failures, []);
  console.log(`ok: browser test passed; screenshots in ${out}`);
} catch (e) {
  await page.screenshot({ path: path.join(out, 'failure.png'), fullPage: true }).catch(() => {});
  console.error(failures.join('\n'));
  throw e;
} finally {
  await browser.close();
}
