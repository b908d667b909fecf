// Browser test of the web UI: headless Chromium (Debian's package) driven by
// playwright-core. Ingests known profiles into a running phlox, opens the
// UI, and checks what a user sees: the widest function of the flame graph
// and its percentage, label filters (=, !=, =~) changing it and surviving a
// reload, the diff view and its table (baseline vs comparison shares), and
// the render time of an 8192-node flame graph (reported, not asserted).
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
const waitReady = () => page.waitForFunction(() => window.__phlox && window.__phlox.ready, null, { timeout: 20000 });

/** Adds a label filter with a picker's selects (`root`: the picker's container). */
async function addFilter(root, { name, op, value }) {
  await page.selectOption(`${root} select[aria-label$="label name" i]`, name);
  await page.selectOption(`${root} select[aria-label$="operator" i]`, op);
  if (op.includes('~')) {
    await page.fill(`${root} input[aria-label$="regular expression" i]`, value);
  } else {
    const values = `${root} select[aria-label$="label value" i]`;
    await page.waitForFunction(
      (sel) => { const s = document.querySelector(sel); return s && !s.disabled; },
      values,
      { timeout: 10000 },
    );
    await page.selectOption(values, value);
  }
  await page.click(`${root} button:has-text("Add filter")`);
}

const chipTexts = () => page.locator('[data-testid=filter-chip] > span').allInnerTexts();
const urlFilters = (key) => page.evaluate((k) => new URLSearchParams(location.search).getAll(k), key);

/** The diff table's rows by symbol: {left, right, change} as displayed. */
const diffRows = () =>
  page.evaluate(() => {
    const rows = {};
    for (const tr of document.querySelectorAll('[data-testid=diff-row]')) {
      const cell = (c) => tr.querySelector(`[data-col=${c}]`).textContent.trim();
      rows[cell('name')] = { left: cell('left'), right: cell('right'), change: cell('change') };
    }
    return rows;
  });
const diffOrder = () => page.locator('[data-testid=diff-row] [data-col=name]').allInnerTexts();

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

  // Operators: region != us selects the same data as region = eu.
  await page.goto(`${base}/?service=shop&f=region=eu`, { waitUntil: 'load' });
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  await page.goto(`${base}/?service=shop`, { waitUntil: 'load' });
  assert.equal(await waitSummary('handle'), 'handle 57.50%');
  await addFilter('#main-filters', { name: 'region', op: '!=', value: 'us' });
  assert.equal(await waitSummary('handle 75'), 'handle 75.00%');
  assert.deepEqual(await chipTexts(), ['region!="us"']);
  assert.deepEqual(await urlFilters('f'), ['region!=us']);
  await page.reload({ waitUntil: 'load' });
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  assert.deepEqual(await chipTexts(), ['region!="us"']);
  // A regex with a backslash (escaped in the selector) replaces the filter on that label.
  await addFilter('#main-filters', { name: 'region', op: '=~', value: 'e\\w' });
  await page.waitForFunction(() => document.querySelector('[data-testid=filter-chip]').textContent.includes('=~'));
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  assert.deepEqual(await chipTexts(), ['region=~"e\\w"']);
  await page.reload({ waitUntil: 'load' });
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  assert.deepEqual(await urlFilters('f'), ['region=~e\\w']);

  // The diff table: baseline region = eu, comparison region != eu (= us),
  // both over the whole range; shares of each side's own total (100 each).
  await page.goto(`${base}/?service=shop&mode=diff&lfrom=now-1h&luntil=now&rfrom=now-1h&runtil=now`, { waitUntil: 'load' });
  await waitReady();
  await addFilter('#diff-left', { name: 'region', op: '=', value: 'eu' });
  await waitReady();
  await addFilter('#diff-right', { name: 'region', op: '!=', value: 'eu' });
  await waitReady();
  const expectRows = {
    gc: { left: '25.00%', right: '60.00%', change: '+35.00 pp' },
    handle: { left: '75.00%', right: '40.00%', change: '−35.00 pp' },
    parse: { left: '30.00%', right: '40.00%', change: '+10.00 pp' },
    render: { left: '45.00%', right: '0.00%', change: '−45.00 pp' },
  };
  assert.deepEqual(await diffRows(), expectRows);
  // Sorted by change (grew most first) until a header is clicked.
  assert.deepEqual(await diffOrder(), ['gc', 'parse', 'handle', 'render']);
  await page.locator('[data-testid=diff-table-wrap]').screenshot({ path: path.join(out, 'diff-table.png') });
  await page.screenshot({ path: path.join(out, 'diff-with-table.png'), fullPage: true });
  await page.click('[data-testid=diff-table] th[data-sort=left]');
  assert.deepEqual(await diffOrder(), ['handle', 'render', 'parse', 'gc']);
  await page.click('[data-testid=diff-table] th[data-sort=left]');
  assert.deepEqual(await diffOrder(), ['gc', 'parse', 'render', 'handle']);
  // Self instead of total: handle has no self time.
  await page.click('[data-testid=diff-metric-self]');
  assert.deepEqual((await diffRows()).handle, { left: '0.00%', right: '0.00%', change: '0.00 pp' });
  assert.deepEqual((await diffRows()).gc, expectRows.gc);
  await page.click('[data-testid=diff-metric-total]');
  // The sides' filters (with their operators) survive a reload.
  assert.deepEqual([await urlFilters('lf'), await urlFilters('rf')], [['region=eu'], ['region!=eu']]);
  await page.reload({ waitUntil: 'load' });
  await waitReady();
  assert.deepEqual(await diffRows(), expectRows);
  // The search box filters the rows; a row click highlights its function.
  await page.fill('[data-testid=search]', 'pa');
  assert.deepEqual(await diffOrder(), ['parse']);
  await page.fill('[data-testid=search]', '');
  await page.click('[data-testid=diff-row]:has([data-col=name]:text-is("handle"))');
  assert.equal(await page.inputValue('[data-testid=search]'), 'handle');
  assert.deepEqual(await diffOrder(), ['handle']);
  assert.match(await page.locator('#zoom-info').innerText(), /^1 matching frames?$/);

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
