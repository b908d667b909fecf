// Browser test of the web UI: headless Chromium (Debian's package) driven by
// playwright-core. Ingests known profiles into a running phlox, opens the
// UI, and checks what a user sees: the widest function of the flame graph
// and its percentage, label filters (=, !=, =~) changing it and surviving a
// reload, several filters on one label (AND-ed) with their numbers, the diff
// view and its table (baseline vs comparison shares), and
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
// cart: three pods. All: idle 120 of 200 → 60.00%. pod!=a, pod!=b (only c):
// idle 80 of 100 → 80.00%, serve 20%, db 20%, no cache. pod!=b alone (a + c):
// idle 90 of 140 → 64.29%, serve 50 → 35.71%. pod=~[ab], pod!=b (only a):
// serve 30 of 40 → 75.00%.
await ingest('cart.cpu{pod=a}', 'serve;db 30\nidle 10\n');
await ingest('cart.cpu{pod=b}', 'serve;cache 30\nidle 30\n');
await ingest('cart.cpu{pod=c}', 'serve;db 20\nidle 80\n');
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
const chipRemove = (text) =>
  page.click(`[data-testid=filter-chip]:has(> span:text-is(${JSON.stringify(text)})) .chip-remove`);
/** The top table's rows by symbol: {self, total} percentages as displayed. */
const topRows = () =>
  page.evaluate(() => {
    const rows = {};
    for (const tr of document.querySelectorAll('[data-testid=top-row]')) {
      const pct = (c) => tr.querySelector(`[data-col=${c}] .pct`).textContent.trim();
      rows[tr.querySelector('[data-col=name]').textContent.trim()] = { self: pct('self'), total: pct('total') };
    }
    return rows;
  });
/** The values a picker (`root`) offers for label `name`. */
async function offeredValues(root, name) {
  await page.selectOption(`${root} select[aria-label$="label name" i]`, name);
  const values = `${root} select[aria-label$="label value" i]`;
  await page.waitForFunction(
    (sel) => { const s = document.querySelector(sel); return s && !s.disabled; },
    values,
    { timeout: 10000 },
  );
  return page.locator(`${values} option`).evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
}
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
  // A regex with a backslash (escaped in the selector) adds a second filter
  // on that label (AND-ed with the first).
  await addFilter('#main-filters', { name: 'region', op: '=~', value: 'e\\w' });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=filter-chip]').length === 2);
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  assert.deepEqual(await chipTexts(), ['region!="us"', 'region=~"e\\w"']);
  await page.reload({ waitUntil: 'load' });
  assert.equal(await waitSummary('handle'), 'handle 75.00%');
  assert.deepEqual(await urlFilters('f'), ['region!=us', 'region=~e\\w']);

  // Two != filters on one label: only the third pod counts.
  await page.goto(`${base}/?service=cart`, { waitUntil: 'load' });
  assert.equal(await waitSummary('idle'), 'idle 60.00%');
  await addFilter('#main-filters', { name: 'pod', op: '!=', value: 'a' });
  assert.equal(await waitSummary('idle 68'), 'idle 68.75%');
  // The values offered for pod ignore pod's own filter.
  assert.deepEqual(await offeredValues('#main-filters', 'pod'), ['a', 'b', 'c']);
  await addFilter('#main-filters', { name: 'pod', op: '!=', value: 'b' });
  assert.equal(await waitSummary('idle 80'), 'idle 80.00%');
  assert.deepEqual(await chipTexts(), ['pod!="a"', 'pod!="b"']);
  assert.deepEqual(await urlFilters('f'), ['pod!=a', 'pod!=b']);
  const onlyC = {
    idle: { self: '80.00%', total: '80.00%' },
    serve: { self: '0.00%', total: '20.00%' },
    db: { self: '20.00%', total: '20.00%' },
  };
  assert.deepEqual(await topRows(), onlyC);
  // Adding an exact duplicate changes nothing.
  await addFilter('#main-filters', { name: 'pod', op: '!=', value: 'b' });
  await waitReady();
  assert.deepEqual(await chipTexts(), ['pod!="a"', 'pod!="b"']);
  assert.deepEqual(await urlFilters('f'), ['pod!=a', 'pod!=b']);
  // A reload keeps both filters, in order, and the numbers.
  await page.reload({ waitUntil: 'load' });
  assert.equal(await waitSummary('idle'), 'idle 80.00%');
  assert.deepEqual(await chipTexts(), ['pod!="a"', 'pod!="b"']);
  assert.deepEqual(await topRows(), onlyC);
  // Removing one chip removes only that filter: pods a and c count.
  await chipRemove('pod!="a"');
  assert.equal(await waitSummary('idle 64'), 'idle 64.29%');
  assert.deepEqual(await chipTexts(), ['pod!="b"']);
  assert.deepEqual(await urlFilters('f'), ['pod!=b']);
  assert.deepEqual(await topRows(), {
    idle: { self: '64.29%', total: '64.29%' },
    serve: { self: '0.00%', total: '35.71%' },
    db: { self: '35.71%', total: '35.71%' },
  });
  // A shared link with a regex and != on one label: only pod a counts.
  await page.goto(`${base}/?service=cart&f=${encodeURIComponent('pod=~[ab]')}&f=${encodeURIComponent('pod!=b')}`, { waitUntil: 'load' });
  assert.equal(await waitSummary('serve'), 'serve 75.00%');
  assert.deepEqual(await chipTexts(), ['pod=~"[ab]"', 'pod!="b"']);
  assert.deepEqual(await topRows(), {
    serve: { self: '0.00%', total: '75.00%' },
    db: { self: '75.00%', total: '75.00%' },
    idle: { self: '25.00%', total: '25.00%' },
  });

  // Diff sides: the baseline's two pod filters replace the main pod!=c
  // (baseline: only c); the comparison keeps the main filter (a + b).
  await page.goto(`${base}/?service=cart&mode=diff&f=${encodeURIComponent('pod!=c')}&lf=${encodeURIComponent('pod!=a')}` +
    '&lfrom=now-1h&luntil=now&rfrom=now-1h&runtil=now', { waitUntil: 'load' });
  await waitReady();
  await addFilter('#diff-left', { name: 'pod', op: '!=', value: 'b' });
  await page.waitForFunction(() => document.querySelectorAll('#diff-left .chip').length === 2);
  await waitReady();
  const previews = () => page.locator('.selector-preview').allInnerTexts();
  assert.deepEqual(await previews(), ['{service_name="cart", pod!="a", pod!="b"}', '{service_name="cart", pod!="c"}']);
  const cartRows = {
    cache: { left: '0.00%', right: '30.00%', change: '+30.00 pp' },
    db: { left: '20.00%', right: '30.00%', change: '+10.00 pp' },
    idle: { left: '80.00%', right: '40.00%', change: '−40.00 pp' },
    serve: { left: '20.00%', right: '60.00%', change: '+40.00 pp' },
  };
  assert.deepEqual(await diffRows(), cartRows);
  assert.deepEqual([await urlFilters('f'), await urlFilters('lf')], [['pod!=c'], ['pod!=a', 'pod!=b']]);
  await page.reload({ waitUntil: 'load' });
  await waitReady();
  assert.deepEqual(await diffRows(), cartRows);
  assert.deepEqual(await page.locator('#diff-left .chip > span').allInnerTexts(), ['pod!="a"', 'pod!="b"']);

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
  // The time inputs read and write 24-hour local time, like the axis.
  {
    const d = new Date();
    d.setHours(15, 30, 0, 0);
    const from = d.getTime();
    await page.goto(`${base}/?service=shop&from=${from}&until=${from + 600e3}`, { waitUntil: 'load' });
    await waitReady();
    const shown = await page.locator('[data-testid=from]').inputValue();
    const p2 = (n) => String(n).padStart(2, '0');
    assert.equal(shown, `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} 15:30:00`);
    assert.ok(!/[AP]M/i.test(shown), shown);
    // Typing a 24-hour time applies it.
    await page.fill('[data-testid=from]', `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} 15:25:00`);
    await page.press('[data-testid=from]', 'Enter');
    await page.waitForFunction((t) => new URLSearchParams(location.search).get('from') === String(t), from - 300e3);
  }
  // Time axis ticks on short ranges: distinct labels, in order, with
  // seconds when ticks are under a minute apart.
  for (const [range, withSeconds] of [['now-2m', false], ['now-20s', true]]) {
    await page.goto(`${base}/?service=shop&from=${range}&until=now`, { waitUntil: 'load' });
    await waitReady();
    const ticks = (await page.locator('[data-testid=timeline]').getAttribute('data-ticks')).split('|');
    assert.ok(ticks.length >= 2, `${range}: ticks ${ticks}`);
    assert.equal(new Set(ticks).size, ticks.length, `${range}: duplicate tick labels ${ticks}`);
    assert.deepEqual([...ticks].sort(), ticks, `${range}: ticks out of order ${ticks}`);
    for (const t of ticks) assert.match(t, withSeconds ? /^\d\d:\d\d:\d\d$/ : /^\d\d:\d\d(:\d\d)?$/, range);
  }
  // A diff URL with side filters only: both sides over the main range, so
  // the same shares (not an empty baseline from half the range).
  await page.goto(`${base}/?service=shop&mode=diff&lf=${encodeURIComponent('region=eu')}&rf=${encodeURIComponent('region!=eu')}`, { waitUntil: 'load' });
  await waitReady();
  assert.deepEqual(await diffRows(), expectRows);
  await page.goto(`${base}/?service=shop&mode=diff&lfrom=now-1h&luntil=now&rfrom=now-1h&runtil=now`, { waitUntil: 'load' });
  await waitReady();
  await addFilter('#diff-left', { name: 'region', op: '=', value: 'eu' });
  await waitReady();
  await addFilter('#diff-right', { name: 'region', op: '!=', value: 'eu' });
  await waitReady();
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
