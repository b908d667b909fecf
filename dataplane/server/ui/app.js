// Phlox web UI: a single-page app in plain ES modules, no build step, no
// dependencies. It talks only to the public query API (Connect protocol with
// the JSON codec, plus the binary codec for the pprof download).
//
// The modules (each imports only those above it; this one is the entry
// point that index.html loads):
//   util.js         constants and small helpers (time, formatting, selectors)
//   api.js          the API client (Connect JSON errors, tenant header,
//                   protobuf encoding)
//   flame-model.js  flame graph model: decoding levels into flat typed arrays,
//                   tree links, widest node, top table aggregation (single
//                   and diff), zoom paths
//   colors.js       colours
//   flame-view.js   FlameGraphView: the canvas renderer (single and diff)
//   time-canvas.js  TimeCanvas, Timeline and Heatmap: canvases over time with
//                   brushing
//   filters.js      FilterPicker: label name, operator (= != =~ !~) and value
//                   pickers, removable chips
//   url-state.js    URL state
//   app.js          the app controller: loading, rendering, event wiring
//
// Everything that comes from the data (function names, label values) is
// written with textContent, never as HTML.

import {
  DEFAULT_MAX_NODES, EXEMPLAR_LIMIT, MODES, TOP_TABLE_LIMIT, buildSelector, chooseStep,
  escapeLabelValue, filtersWithout, fmtPct, formatDateTime, formatDuration, formatValue,
  fromLocalInput, isAbort, percent, resolveRange, sideFilters, toLocalInput, unitOf,
} from './util.js';
import { api, encodeSelectMergeProfileRequest } from './api.js';
import {
  DIFF_COLUMNS, aggregateByName, decodeFlameGraph, diffTableRows, flameSummary, nodeFromPath,
  nodeName, sortRows, zoomPathOf,
} from './flame-model.js';
import { diffColor } from './colors.js';
import { FlameGraphView, Tooltip } from './flame-view.js';
import { Heatmap, Timeline } from './time-canvas.js';
import { FilterPicker, setOptions } from './filters.js';
import { defaultState, emptySide, parseState, serializeState } from './url-state.js';

// The app controller.

const phlox = {
  ready: false,
  timings: { pageLoadMs: null, flamegraphRenderMs: null, flamegraphNodes: 0 },
  lastError: null,
};

const app = {
  state: defaultState(),
  gen: 0, // generation of the current refresh; older responses are dropped
  renderedGen: -1, // generation whose flame graph was drawn
  abort: null,
  range: null, // resolved {start, end} of the current refresh
  meta: { services: [], types: [], typesByService: new Map() },
  graph: null,
  diffGraph: null,
  rows: [],
  diffAgg: [], // the diff graph aggregated by name, once per response
  diffRows: [], // diffAgg as table rows for the current metric
  pending: 0,
  brushSide: 'left',
  firstRenderDone: false,
  el: {},
};

function $(id) {
  return document.getElementById(id);
}

function setReady(v) {
  phlox.ready = v;
  document.body.dataset.ready = v ? 'true' : 'false';
}

function showError(err) {
  const el = app.el.error;
  if (!err) {
    el.hidden = true;
    el.textContent = '';
    phlox.lastError = null;
    return;
  }
  const msg = err && err.message ? err.message : String(err);
  el.textContent = msg;
  el.hidden = false;
  phlox.lastError = msg;
}

/** Counts a pending request for the global loading indicator. */
function track(promise) {
  app.pending++;
  app.el.loading.hidden = false;
  const done = () => {
    app.pending = Math.max(0, app.pending - 1);
    app.el.loading.hidden = app.pending === 0;
  };
  promise.then(done, done);
  return promise;
}

function setOverlay(id, text) {
  const el = $(id);
  if (!el) return;
  el.textContent = text || '';
  el.hidden = !text;
}

function unit() {
  return unitOf(app.state.type);
}

function mainSelector() {
  return buildSelector(app.state.service, app.state.filters);
}

function sideSelector(side) {
  return buildSelector(app.state.service, sideFilters(app.state.filters, app.state[side].filters));
}

/**
 * A side's time range: explicit; else the main range when either side has
 * filters of its own (comparing label values over the same time); else the
 * first/second half of the main range (comparing before and after).
 */
function sideRange(side) {
  const s = app.state[side];
  const main = app.range || resolveRange(app.state.from, app.state.until);
  if (s.from && s.until) {
    const r = resolveRange(s.from, s.until);
    if (r.end > r.start) return r;
  }
  if (app.state.left.filters.length || app.state.right.filters.length) return main;
  const mid = Math.floor((main.start + main.end) / 2);
  return side === 'left' ? { start: main.start, end: mid } : { start: mid, end: main.end };
}

function writeUrl(push) {
  const qs = serializeState(app.state);
  const url = `${location.pathname}${qs ? `?${qs}` : ''}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
}

/** Applies state changes, updates the URL and reloads (or just redraws). */
function navigate(changes, { push = true, reload = true } = {}) {
  Object.assign(app.state, changes);
  writeUrl(push);
  if (reload) refresh(); else syncControls();
}

// Changes that start a new query drop the zoom and the single-profile view.
const QUERY_RESET = { zoom: '', pid: '', span: '' };

// --- metadata: services and profile types --------------------------------

async function loadMeta(range, signal) {
  const span = { start: range.start, end: range.end };
  const [types, services, series] = await Promise.all([
    api.call('ProfileTypes', span, signal),
    api.call('LabelValues', { name: 'service_name', ...span }, signal),
    // Which profile types each service has (optional: ignored on failure).
    api.call('Series', { labelNames: ['__profile_type__', 'service_name'], ...span }, signal)
      .catch((e) => { if (isAbort(e)) throw e; return null; }),
  ]);
  app.meta.types = (types.profileTypes || []).filter((t) => t && t.ID);
  app.meta.types.sort((a, b) => (a.ID < b.ID ? -1 : a.ID > b.ID ? 1 : 0));
  app.meta.services = (services.names || []).slice().sort();
  const byService = new Map();
  for (const set of (series && series.labelsSet) || []) {
    let svc = '';
    let type = '';
    for (const l of set.labels || []) {
      if (l.name === 'service_name') svc = l.value;
      if (l.name === '__profile_type__') type = l.value;
    }
    if (!svc || !type) continue;
    if (!byService.has(svc)) byService.set(svc, new Set());
    byService.get(svc).add(type);
  }
  app.meta.typesByService = byService;
}

/** Profile type IDs offered for a service (all types when unknown). */
function typesFor(service) {
  const all = app.meta.types.map((t) => t.ID);
  const known = app.meta.typesByService.get(service);
  if (!known || !known.size) return all;
  const list = all.filter((id) => known.has(id));
  return list.length ? list : all;
}

/** The default type: a CPU type if present, else the first. */
function defaultType(ids) {
  return ids.find((id) => id.startsWith('process_cpu:cpu:')) ||
    ids.find((id) => id.startsWith('process_cpu:')) ||
    ids.find((id) => /cpu/.test(id)) || ids[0] || '';
}

function fillDefaults() {
  const s = app.state;
  if (!s.service && app.meta.services.length) s.service = app.meta.services[0];
  if (!s.type) s.type = defaultType(typesFor(s.service));
}

// --- reflecting the state in the controls ---------------------------------

function syncControls() {
  const s = app.state;
  const el = app.el;
  const range = app.range || resolveRange(s.from, s.until);

  const services = app.meta.services.slice();
  if (s.service && !services.includes(s.service)) services.unshift(s.service);
  setOptions(el.service, services, services.length ? null : 'no services', s.service);

  const types = typesFor(s.service);
  if (s.type && !types.includes(s.type)) types.unshift(s.type);
  setOptions(el.type, types, types.length ? null : 'no profile types', s.type);

  app.mainFilters.setFilters(s.filters);
  app.leftFilters.setFilters(s.left.filters);
  app.rightFilters.setFilters(s.right.filters);

  if (document.activeElement !== el.from) el.from.value = toLocalInput(range.start);
  if (document.activeElement !== el.until) el.until.value = toLocalInput(range.end);
  for (const b of el.presets.querySelectorAll('button')) {
    b.classList.toggle('active', s.from === b.dataset.from && s.until === 'now');
  }

  if (![...el.maxNodes.options].some((o) => o.value === String(s.maxNodes))) {
    const o = document.createElement('option');
    o.value = String(s.maxNodes);
    o.textContent = String(s.maxNodes);
    el.maxNodes.appendChild(o);
  }
  el.maxNodes.value = String(s.maxNodes);
  if (el.search.value !== s.search) el.search.value = s.search;
  el.heatmapKind.value = s.heatmap;

  for (const m of MODES) $(`mode-${m}`).setAttribute('aria-pressed', String(s.mode === m));
  const diff = s.mode === 'diff';
  const heat = s.mode === 'heatmap';
  $('timeline-panel').hidden = heat;
  $('heatmap-panel').hidden = !heat;
  $('diff-panel').hidden = !diff;
  $('single-view').hidden = diff;
  $('diff-view').hidden = !diff;
  $('summary-wrap').hidden = diff;
  $('brush-target').hidden = !diff;
  if (diff) $('exemplars-panel').hidden = true;
  for (const b of $('brush-target').querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.side === app.brushSide));
  }
  syncDiffSides();

  const single = s.pid || s.span;
  $('single-profile-banner').hidden = !single || diff;
  $('single-profile-text').textContent = s.pid ? `Showing the single profile ${s.pid}` : `Showing the span ${s.span}`;

  document.title = s.service ? `${s.service} · ${s.type.split(':').slice(0, 2).join(':')} · Phlox` : 'Phlox';
  el.tenantBadge.hidden = !s.tenant;
  el.tenantBadge.textContent = s.tenant ? `tenant: ${s.tenant}` : '';
  updateTimelineOverlays();
}

function syncDiffSides() {
  for (const side of ['left', 'right']) {
    const root = $(side === 'left' ? 'diff-left' : 'diff-right');
    const r = sideRange(side);
    const from = root.querySelector('.side-from');
    const until = root.querySelector('.side-until');
    if (document.activeElement !== from) from.value = toLocalInput(r.start);
    if (document.activeElement !== until) until.value = toLocalInput(r.end);
    root.querySelector('.selector-preview').textContent = sideSelector(side);
  }
}

function updateTimelineOverlays() {
  const tl = app.timeline;
  if (app.state.mode === 'diff') {
    const l = sideRange('left');
    const r = sideRange('right');
    tl.overlays = [
      { start: l.start, end: l.end, fill: 'rgba(59, 130, 246, 0.16)', stroke: 'rgba(59, 130, 246, 0.9)' },
      { start: r.start, end: r.end, fill: 'rgba(234, 88, 12, 0.16)', stroke: 'rgba(234, 88, 12, 0.9)' },
    ];
  } else {
    tl.overlays = [];
  }
  tl.render();
}

// --- loading ---------------------------------------------------------------

/** Reloads everything the current view needs; stale responses are dropped. */
async function refresh() {
  const gen = ++app.gen;
  if (app.abort) app.abort.abort();
  const ac = new AbortController();
  app.abort = ac;
  const current = () => gen === app.gen;
  setReady(false);
  showError(null);
  const s = app.state;
  api.tenant = s.tenant;
  const range = resolveRange(s.from, s.until);
  app.range = range;
  syncControls();

  try {
    await track(loadMeta(range, ac.signal));
  } catch (e) {
    if (!current() || isAbort(e)) return;
    showError(e); // keep going with what we know
  }
  if (!current()) return;
  const hadDefaults = !s.service || !s.type;
  fillDefaults();
  if (hadDefaults) writeUrl(false);
  syncControls();

  const tasks = [];
  const pickers = [app.mainFilters];
  if (s.mode === 'diff') {
    pickers.push(app.leftFilters, app.rightFilters);
    tasks.push(loadTimeline(gen, range, ac.signal), loadDiff(gen, ac.signal));
  } else if (s.mode === 'heatmap') {
    tasks.push(loadHeatmap(gen, range, ac.signal), loadFlame(gen, range, ac.signal));
  } else {
    tasks.push(loadTimeline(gen, range, ac.signal), loadFlame(gen, range, ac.signal));
  }
  // Label pickers report their own errors and never reject.
  if (s.type) for (const p of pickers) tasks.push(p.loadNames(range, ac.signal));

  const results = await Promise.allSettled(tasks.map(track));
  if (!current()) return;
  const failed = results.find((r) => r.status === 'rejected' && !isAbort(r.reason));
  if (failed) showError(failed.reason);
  // Ready once the flame graph of this view is drawn and the rest settled.
  if (app.renderedGen === gen) setReady(true);
  if (!app.firstRenderDone && phlox.ready) {
    app.firstRenderDone = true;
    phlox.timings.pageLoadMs = performance.now();
  }
}

function stale() {
  const e = new Error('stale');
  e.name = 'StaleError';
  return e;
}

async function loadFlame(gen, range, signal) {
  const s = app.state;
  if (!s.type) {
    showGraph(decodeFlameGraph(null), 'No profiles in this time range');
    app.renderedGen = gen;
    return;
  }
  setOverlay('flamegraph-msg', 'Loading…');
  try {
    const req = {
      profileTypeID: s.type,
      labelSelector: mainSelector(),
      start: range.start,
      end: range.end,
      maxNodes: s.maxNodes,
    };
    if (s.pid) req.profileIdSelector = [s.pid];
    if (s.span) req.spanSelector = [s.span];
    const resp = await api.call('SelectMergeStacktraces', req, signal);
    if (gen !== app.gen) throw stale();
    showGraph(resp.flamegraph, null);
    app.renderedGen = gen;
  } catch (e) {
    if (gen === app.gen && !isAbort(e)) {
      setOverlay('flamegraph-msg', '');
      app.el.summary.textContent = 'Error';
    }
    throw e;
  }
}

/**
 * Decodes (unless already decoded) and draws a graph in `view`, recording
 * the build + draw time; returns the graph and whether it is empty.
 */
function drawGraph(view, fgOrGraph, diff) {
  const t0 = performance.now();
  const g = fgOrGraph && fgOrGraph.levelStart ? fgOrGraph : decodeFlameGraph(fgOrGraph, diff);
  view.setGraph(g, unit());
  view.setSearch(app.state.search);
  view.setZoom(nodeFromPath(g, app.state.zoom));
  view.render();
  phlox.timings.flamegraphRenderMs = performance.now() - t0;
  phlox.timings.flamegraphNodes = g.n;
  return { g, empty: g.n === 0 || !(g.rootTotal > 0) };
}

/** Decodes and draws a flame graph response (or an already decoded graph). */
function showGraph(fgOrGraph, emptyText) {
  const { g, empty } = drawGraph(app.flame, fgOrGraph, false);
  app.graph = g;
  setOverlay('flamegraph-msg', empty ? (emptyText || 'No profiles in this time range') : '');
  app.el.summary.textContent = flameSummary(g);
  app.rows = aggregateByName(g);
  renderTopTable();
  updateZoomUi();
}

async function loadDiff(gen, signal) {
  const s = app.state;
  if (!s.type) {
    showDiff(decodeFlameGraph(null, true), 'No profiles in this time range');
    app.renderedGen = gen;
    return;
  }
  setOverlay('diff-flamegraph-msg', 'Loading…');
  const side = (name) => {
    const r = sideRange(name);
    return {
      profileTypeID: s.type, labelSelector: sideSelector(name), start: r.start, end: r.end, maxNodes: s.maxNodes,
    };
  };
  try {
    const resp = await api.call('Diff', { left: side('left'), right: side('right') }, signal);
    if (gen !== app.gen) throw stale();
    showDiff(resp.flamegraph, null);
    app.renderedGen = gen;
  } catch (e) {
    if (gen === app.gen && !isAbort(e)) setOverlay('diff-flamegraph-msg', '');
    throw e;
  }
}

function showDiff(fgOrGraph, emptyText) {
  const { g, empty } = drawGraph(app.diffFlame, fgOrGraph, true);
  app.diffGraph = g;
  setOverlay('diff-flamegraph-msg', empty ? (emptyText || 'No profiles in either selection') : '');
  $('diff-totals').textContent = empty ? '' :
    `Baseline total ${formatValue(g.leftTicks, unit())} · comparison total ${formatValue(g.rightTicks, unit())}`;
  app.diffAgg = aggregateByName(g, DIFF_COLUMNS);
  updateDiffRows();
  renderDiffTable();
  updateZoomUi();
}

async function loadTimeline(gen, range, signal) {
  const s = app.state;
  const tl = app.timeline;
  tl.setRange(range.start, range.end);
  if (!s.type) {
    tl.setData([], 60, '');
    tl.render();
    renderExemplars([]);
    return;
  }
  const step = chooseStep(range.end - range.start);
  const req = {
    profileTypeID: s.type,
    labelSelector: mainSelector(),
    start: range.start,
    end: range.end,
    step,
  };
  const wantExemplars = s.mode === 'single';
  let resp;
  try {
    resp = await api.call('SelectSeries', wantExemplars ? { ...req, exemplarType: 'EXEMPLAR_TYPE_INDIVIDUAL' } : req, signal);
  } catch (e) {
    // Servers without exemplar support: retry plainly.
    if (isAbort(e) || !wantExemplars || e.status !== 400) throw e;
    resp = await api.call('SelectSeries', req, signal);
  }
  if (gen !== app.gen) throw stale();
  const byTs = new Map();
  const exemplars = [];
  for (const series of resp.series || []) {
    const seriesLabels = series.labels || [];
    for (const p of series.points || []) {
      const t = Number(p.timestamp);
      byTs.set(t, (byTs.get(t) || 0) + (Number(p.value) || 0));
      for (const ex of p.exemplars || []) exemplars.push(normalizeExemplar(ex, seriesLabels));
    }
  }
  const points = [...byTs].map(([t, v]) => ({ t, v })).sort((a, b) => a.t - b.t);
  tl.setData(points, step, unit());
  updateTimelineOverlays();
  $('timeline-info').textContent = `${formatDateTime(range.start)} – ${formatDateTime(range.end)} · step ${formatDuration(step * 1000)}`;
  if (wantExemplars) renderExemplars(exemplars);
}

async function loadHeatmap(gen, range, signal) {
  const s = app.state;
  const hm = app.heatmap;
  hm.setRange(range.start, range.end);
  $('exemplars-panel').hidden = true;
  if (!s.type) {
    hm.setData([], 60, '');
    hm.render();
    return;
  }
  const step = chooseStep(range.end - range.start, 120);
  const span = s.heatmap === 'span';
  const resp = await api.call('SelectHeatmap', {
    profileTypeID: s.type,
    labelSelector: mainSelector(),
    start: range.start,
    end: range.end,
    step,
    queryType: span ? 'HEATMAP_QUERY_TYPE_SPAN' : 'HEATMAP_QUERY_TYPE_INDIVIDUAL',
    exemplarType: span ? 'EXEMPLAR_TYPE_SPAN' : 'EXEMPLAR_TYPE_INDIVIDUAL',
  }, signal);
  if (gen !== app.gen) throw stale();
  const series = resp.series || [];
  hm.setData(series, step, unit());
  hm.render();
  const exemplars = [];
  for (const sr of series) {
    for (const slot of sr.slots || []) {
      for (const ex of slot.exemplars || []) exemplars.push(normalizeExemplar(ex, sr.labels || []));
    }
  }
  $('heatmap-info').textContent = `${hm.cells.length} cells · step ${formatDuration(step * 1000)}`;
  renderExemplars(exemplars);
}

function normalizeExemplar(ex, seriesLabels) {
  const labels = [...(seriesLabels || []), ...(ex.labels || [])]
    .filter((l) => l && l.name && !l.name.startsWith('__'));
  return {
    timestamp: Number(ex.timestamp) || 0,
    profileId: ex.profileId || ex.profile_id || '',
    spanId: ex.spanId || ex.span_id || '',
    traceId: ex.traceId || ex.trace_id || '',
    value: Number(ex.value) || 0,
    labels,
  };
}

// --- exemplars list ---------------------------------------------------------

function renderExemplars(list) {
  const panel = $('exemplars-panel');
  const body = $('exemplars').tBodies[0];
  body.textContent = '';
  const usable = list.filter((e) => e.profileId || e.spanId);
  panel.hidden = usable.length === 0 || app.state.mode === 'diff';
  if (!usable.length) return;
  usable.sort((a, b) => b.value - a.value || b.timestamp - a.timestamp);
  const shown = usable.slice(0, EXEMPLAR_LIMIT);
  $('exemplars-info').textContent =
    `${usable.length} profile${usable.length === 1 ? '' : 's'}${usable.length > shown.length ? `, top ${shown.length} by value` : ''} · click one to open it`;
  const frag = document.createDocumentFragment();
  for (const ex of shown) {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'exemplar-row';
    tr.className = 'clickable';
    if ((ex.profileId && ex.profileId === app.state.pid) || (ex.spanId && ex.spanId === app.state.span)) {
      tr.classList.add('selected');
    }
    const cells = [
      formatDateTime(ex.timestamp),
      formatValue(ex.value, unit()),
      ex.profileId || `span ${ex.spanId}`,
      ex.labels.map((l) => `${l.name}=${l.value}`).join(', '),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) td.className = 'num';
      if (i === 2) td.className = 'mono';
      tr.appendChild(td);
    });
    tr.addEventListener('click', () => openExemplar(ex));
    frag.appendChild(tr);
  }
  body.appendChild(frag);
}

function openExemplar(ex) {
  const changes = { zoom: '', pid: '', span: '' };
  if (ex.profileId) changes.pid = ex.profileId; else changes.span = ex.spanId;
  if (app.state.mode === 'diff') changes.mode = 'single';
  navigate(changes);
}

// --- top tables -------------------------------------------------------------
//
// The single view's table (function, self, total) and the diff view's table
// (symbol, baseline, comparison, change) share filtering by the search box,
// sorting by header clicks and row clicks that highlight the function.
// Rows are aggregated once per response; a render only filters, sorts and
// puts the first TOP_TABLE_LIMIT rows into the DOM.

/** The rows matching the search, sorted; `all` itself is left untouched. */
function visibleRows(all, search, sort) {
  const q = search.trim().toLowerCase();
  const rows = q ? all.filter((r) => String(r.name).toLowerCase().includes(q)) : all.slice();
  return sortRows(rows, sort);
}

/** Marks the sorted column's header (arrow via CSS, aria-sort for screen readers). */
function markSortHeaders(table, sort) {
  const [col, dir] = sort.split('-');
  for (const th of table.tHead.rows[0].cells) {
    const active = th.dataset.sort === col;
    th.classList.toggle('sorted', active);
    th.setAttribute('aria-sort', active ? (dir === 'asc' ? 'ascending' : 'descending') : 'none');
    th.dataset.dir = active ? dir : '';
  }
}

/** The sort after a click on column `col`: flips the direction, or starts a new column. */
function nextSort(current, col) {
  const [cur, dir] = current.split('-');
  if (cur === col) return `${col}-${dir === 'asc' ? 'desc' : 'asc'}`;
  return `${col}-${col === 'name' ? 'asc' : 'desc'}`;
}

/**
 * Replaces a table's body with the first rows of `rows` (built by
 * `cellsOf(row)`) and explains in `noteEl` what is not shown.
 */
function fillTable(table, noteEl, rows, allCount, testId, cellsOf) {
  const body = table.tBodies[0];
  body.textContent = '';
  const search = app.state.search;
  const shown = rows.slice(0, TOP_TABLE_LIMIT);
  const frag = document.createDocumentFragment();
  for (const r of shown) {
    const tr = document.createElement('tr');
    tr.dataset.testid = testId;
    tr.className = 'clickable';
    // The row the search was set from (by a click) stays marked.
    if (search && r.name === search) tr.classList.add('selected');
    const name = document.createElement('td');
    name.dataset.col = 'name';
    name.className = 'name';
    name.textContent = r.name;
    name.title = r.name;
    tr.append(name, ...cellsOf(r));
    tr.addEventListener('click', () => setSearch(r.name, true));
    frag.appendChild(tr);
  }
  body.appendChild(frag);
  noteEl.textContent = rows.length > shown.length ?
    `Showing ${shown.length} of ${rows.length} functions; search to narrow down.` :
    (rows.length === 0 && allCount ? 'No function matches the search.' : '');
}

function renderTopTable() {
  const table = app.el.topTable;
  const s = app.state;
  const rows = visibleRows(app.rows, s.search, s.sort);
  markSortHeaders(table, s.sort);
  const root = app.graph ? app.graph.rootTotal : 0;
  fillTable(table, $('top-table-note'), rows, app.rows.length, 'top-row',
    (r) => [valueCell('self', r.self, root), valueCell('total', r.total, root)]);
}

function valueCell(col, v, root) {
  const td = document.createElement('td');
  td.dataset.col = col;
  td.dataset.value = String(v);
  td.className = 'num';
  const val = document.createElement('span');
  val.textContent = formatValue(v, unit());
  const pct = document.createElement('span');
  pct.className = 'pct';
  pct.textContent = fmtPct(percent(v, root));
  td.append(val, ' ', pct);
  return td;
}

/** Recomputes the diff table's rows for the current metric (no API call). */
function updateDiffRows() {
  const g = app.diffGraph;
  app.diffRows = g ? diffTableRows(app.diffAgg, g, app.state.diffMetric) : [];
}

function renderDiffTable() {
  const table = app.el.diffTable;
  const s = app.state;
  const self = s.diffMetric === 'self';
  for (const b of $('diff-metric').querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.metric === s.diffMetric));
  }
  // The headers stay short (the toggle shows the metric); the title spells it out.
  $('diff-left-head').title = `${self ? 'Self' : 'Total'} of the baseline, % of the baseline's total`;
  $('diff-right-head').title = `${self ? 'Self' : 'Total'} of the comparison, % of the comparison's total`;
  const rows = visibleRows(app.diffRows, s.search, s.diffSort);
  markSortHeaders(table, s.diffSort);
  fillTable(table, $('diff-table-note'), rows, app.diffRows.length, 'diff-row',
    (r) => [shareCell('left', r.left, r.lValue), shareCell('right', r.right, r.rValue), changeCell(r)]);
}

/** A side's share of its own total; the raw value in the cell's title. */
function shareCell(col, pct, value) {
  const td = document.createElement('td');
  td.dataset.col = col;
  td.className = 'num';
  td.textContent = fmtPct(pct);
  td.title = formatValue(value, unit());
  return td;
}

/**
 * The change in percentage points, with a swatch in the flame graph's
 * colour for the relative change, which the title spells out.
 */
function changeCell(r) {
  const td = document.createElement('td');
  td.dataset.col = 'change';
  td.className = 'num';
  const swatch = document.createElement('span');
  swatch.className = 'change-swatch';
  swatch.style.background = diffColor(r.rel);
  const text = document.createElement('span');
  const pp = Math.abs(r.change) < 0.005 ? 0 : r.change; // no "−0.00"
  text.textContent = `${pp > 0 ? '+' : pp < 0 ? '−' : ''}${Math.abs(pp).toFixed(2)} pp`;
  if (pp !== 0) text.className = pp > 0 ? 'grew' : 'shrank';
  td.append(swatch, text);
  let rel;
  if (r.rel === Infinity) rel = 'new in comparison';
  else if (r.rValue === 0 && r.lValue > 0) rel = 'gone in comparison (−100%)';
  else rel = `${r.rel >= 0 ? '+' : '−'}${Math.abs(r.rel).toFixed(2)}% relative to the baseline share`;
  td.title = `${text.textContent}: ${fmtPct(r.left)} → ${fmtPct(r.right)}, ${rel}`;
  return td;
}

// --- search and zoom --------------------------------------------------------

function setSearch(q, push) {
  app.state.search = q;
  if (app.el.search.value !== q) app.el.search.value = q;
  writeUrl(push);
  app.flame.setSearch(q);
  app.diffFlame.setSearch(q);
  if (app.state.mode === 'diff') {
    app.diffFlame.render();
    renderDiffTable();
  } else {
    app.flame.render();
    renderTopTable();
  }
  updateZoomUi();
}

function activeView() {
  return app.state.mode === 'diff' ? app.diffFlame : app.flame;
}

function zoomTo(node) {
  const view = activeView();
  if (!view.graph) return;
  view.setZoom(node);
  view.render();
  app.state.zoom = view.zoom > 0 ? zoomPathOf(view.graph, view.zoom) : '';
  writeUrl(true);
  updateZoomUi();
}

function updateZoomUi() {
  const view = activeView();
  const zoomed = view.graph && view.zoom > 0;
  app.el.resetZoom.disabled = !zoomed;
  const parts = [];
  if (zoomed) parts.push(`Zoomed into ${nodeName(view.graph, view.zoom)}`);
  if (app.state.search && view.graph) parts.push(`${view.matchCount()} matching frames`);
  $('zoom-info').textContent = parts.join(' · ');
}

// --- pprof download ------------------------------------------------------------

async function downloadPprof() {
  const s = app.state;
  const btn = app.el.pprof;
  if (!s.type) { showError(new Error('No profile type selected')); return; }
  const range = app.range || resolveRange(s.from, s.until);
  const bytes = encodeSelectMergeProfileRequest({
    profileTypeID: s.type,
    labelSelector: mainSelector(),
    start: range.start,
    end: range.end,
    profileIds: s.pid ? [s.pid] : [],
  });
  btn.disabled = true;
  const prev = btn.textContent;
  btn.textContent = 'Downloading…';
  try {
    const blob = await track(api.callBinary('SelectMergeProfile', bytes));
    const url = URL.createObjectURL(new Blob([blob], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = 'profile.pb';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    showError(e);
  } finally {
    btn.disabled = false;
    btn.textContent = prev;
  }
}

// --- wiring ------------------------------------------------------------------

function applyTimeInputs() {
  const a = fromLocalInput(app.el.from.value);
  const b = fromLocalInput(app.el.until.value);
  if (!Number.isFinite(a) || !Number.isFinite(b) || b <= a) {
    showError(new Error('Invalid time range: "from" must be before "until"'));
    return;
  }
  navigate({ from: String(a), until: String(b), left: emptySide(), right: emptySide(), ...QUERY_RESET });
}

function applySideInputs(side) {
  const root = $(side === 'left' ? 'diff-left' : 'diff-right');
  const a = fromLocalInput(root.querySelector('.side-from').value);
  const b = fromLocalInput(root.querySelector('.side-until').value);
  if (!Number.isFinite(a) || !Number.isFinite(b) || b <= a) {
    showError(new Error('Invalid time range: "from" must be before "until"'));
    return;
  }
  navigate({ [side]: { ...app.state[side], from: String(a), until: String(b) }, zoom: '' });
}

function onTimeSelect(t0, t1) {
  if (app.state.mode === 'diff') {
    const side = app.brushSide;
    navigate({ [side]: { ...app.state[side], from: String(t0), until: String(t1) }, zoom: '' });
  } else {
    navigate({ from: String(t0), until: String(t1), ...QUERY_RESET });
  }
}

function onHeatmapClick(px, py) {
  const c = app.heatmap.cellAt(px, py);
  if (c) navigate({ from: String(Math.round(c.t0)), until: String(Math.round(c.t1)), ...QUERY_RESET });
}

function zoomOutTime() {
  const r = app.range || resolveRange(app.state.from, app.state.until);
  const w = r.end - r.start;
  const end = Math.min(Date.now(), r.end + w / 2);
  const start = end - 2 * w;
  navigate({ from: String(Math.round(start)), until: String(Math.round(end)), left: emptySide(), right: emptySide(), ...QUERY_RESET });
}

function makeSidePicker(side) {
  const root = $(side === 'left' ? 'diff-left' : 'diff-right');
  return new FilterPicker({
    nameSelect: root.querySelector('.side-label-name'),
    opSelect: root.querySelector('.side-label-op'),
    valueSelect: root.querySelector('.side-label-value'),
    regexInput: root.querySelector('.side-label-regex'),
    addButton: root.querySelector('.side-add'),
    chips: root.querySelector('.chips'),
    chipTestId: null,
    onChange: (filters) => navigate({ [side]: { ...app.state[side], filters }, zoom: '' }),
    // The side's effective filters minus every one on `name` (main and side).
    selectorWithout: (name) => {
      const fs = filtersWithout(sideFilters(app.state.filters, app.state[side].filters), name);
      return withType(buildSelector(app.state.service, fs));
    },
    onError: showError,
  });
}

/** Adds the profile type to a selector so label suggestions match the data shown. */
function withType(selector) {
  if (!app.state.type) return selector;
  const inner = selector.slice(1, -1);
  const t = `__profile_type__="${escapeLabelValue(app.state.type)}"`;
  return `{${inner ? `${inner}, ` : ''}${t}}`;
}

function observeWidth(el, fn) {
  if (typeof ResizeObserver === 'undefined') {
    window.addEventListener('resize', fn);
    return;
  }
  let last = -1;
  let scheduled = false;
  // Redraw in the next frame, outside the observer callback: redrawing
  // changes the element's height, which must not re-enter the observer.
  new ResizeObserver(() => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      const w = el.clientWidth;
      if (w !== last) { last = w; fn(); }
    });
  }).observe(el);
}

function init() {
  const el = app.el;
  el.service = $('service');
  el.type = $('profile-type');
  el.from = $('from');
  el.until = $('until');
  el.presets = $('presets');
  el.maxNodes = $('max-nodes');
  el.search = $('search');
  el.error = $('error');
  el.loading = $('loading');
  el.summary = $('flamegraph-summary');
  el.topTable = $('top-table');
  el.diffTable = $('diff-table');
  el.resetZoom = $('reset-zoom');
  el.pprof = $('pprof-download');
  el.heatmapKind = $('heatmap-kind');
  el.tenantBadge = $('tenant-badge');

  const tooltip = new Tooltip($('tooltip'));
  app.flame = new FlameGraphView($('flamegraph'), { tooltip, onZoom: zoomTo });
  app.diffFlame = new FlameGraphView($('diff-flamegraph'), { tooltip, onZoom: zoomTo });
  app.timeline = new Timeline($('timeline'), { tooltip, onSelect: onTimeSelect });
  app.heatmap = new Heatmap($('heatmap'), { tooltip, onSelect: onTimeSelect, onClick: onHeatmapClick });

  app.mainFilters = new FilterPicker({
    nameSelect: $('label-name'),
    opSelect: $('label-op'),
    valueSelect: $('label-value'),
    regexInput: $('label-regex'),
    addButton: $('add-filter'),
    chips: $('filter-chips'),
    chipTestId: 'filter-chip',
    onChange: (filters) => navigate({ filters, ...QUERY_RESET }),
    selectorWithout: (name) => withType(buildSelector(app.state.service, filtersWithout(app.state.filters, name))),
    onError: showError,
  });
  app.leftFilters = makeSidePicker('left');
  app.rightFilters = makeSidePicker('right');

  el.service.addEventListener('change', () => {
    const service = el.service.value;
    const types = typesFor(service);
    const type = types.includes(app.state.type) ? app.state.type : defaultType(types);
    navigate({ service, type, ...QUERY_RESET });
  });
  el.type.addEventListener('change', () => navigate({ type: el.type.value, ...QUERY_RESET }));
  el.presets.addEventListener('click', (e) => {
    const b = e.target.closest('button[data-from]');
    if (b) navigate({ from: b.dataset.from, until: 'now', left: emptySide(), right: emptySide(), ...QUERY_RESET });
  });
  $('apply-range').addEventListener('click', applyTimeInputs);
  for (const input of [el.from, el.until]) {
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') applyTimeInputs(); });
  }
  $('zoom-out-time').addEventListener('click', zoomOutTime);
  el.maxNodes.addEventListener('change', () => navigate({ maxNodes: Number(el.maxNodes.value) || DEFAULT_MAX_NODES, zoom: '' }));
  el.pprof.addEventListener('click', downloadPprof);
  el.heatmapKind.addEventListener('change', () => navigate({ heatmap: el.heatmapKind.value }));
  for (const m of MODES) {
    $(`mode-${m}`).addEventListener('click', () => {
      if (app.state.mode !== m) navigate({ mode: m, zoom: '' });
    });
  }
  $('brush-target').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-side]');
    if (!b) return;
    app.brushSide = b.dataset.side;
    syncControls();
  });
  for (const side of ['left', 'right']) {
    const root = $(side === 'left' ? 'diff-left' : 'diff-right');
    root.querySelector('.side-apply').addEventListener('click', () => applySideInputs(side));
    root.querySelector('.side-reset').addEventListener('click', () => {
      navigate({ [side]: { ...app.state[side], from: '', until: '' }, zoom: '' });
    });
  }

  el.search.addEventListener('input', () => setSearch(el.search.value, false));
  el.search.addEventListener('keydown', (e) => { if (e.key === 'Escape') setSearch('', false); });
  el.resetZoom.addEventListener('click', () => zoomTo(0));
  $('single-profile-back').addEventListener('click', () => navigate({ pid: '', span: '', zoom: '' }));
  el.topTable.tHead.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (!th) return;
    app.state.sort = nextSort(app.state.sort, th.dataset.sort);
    writeUrl(false);
    renderTopTable();
  });
  el.diffTable.tHead.addEventListener('click', (e) => {
    const th = e.target.closest('th[data-sort]');
    if (!th) return;
    app.state.diffSort = nextSort(app.state.diffSort, th.dataset.sort);
    writeUrl(false);
    renderDiffTable();
  });
  $('diff-metric').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-metric]');
    if (!b || b.dataset.metric === app.state.diffMetric) return;
    app.state.diffMetric = b.dataset.metric;
    writeUrl(false);
    updateDiffRows();
    renderDiffTable();
  });

  observeWidth($('flamegraph-wrap'), () => app.flame.render());
  observeWidth($('diff-flamegraph-wrap'), () => app.diffFlame.render());
  observeWidth($('timeline-wrap'), () => app.timeline.render());
  observeWidth($('heatmap-wrap'), () => app.heatmap.render());

  window.addEventListener('popstate', () => {
    app.state = parseState(location.search);
    refresh();
  });
  window.addEventListener('error', (e) => {
    // Browsers report benign ResizeObserver loop notices as errors.
    if (e && e.message && !/ResizeObserver/.test(e.message)) showError(new Error(`Unexpected error: ${e.message}`));
  });
  window.addEventListener('unhandledrejection', (e) => {
    const r = e && e.reason;
    if (!isAbort(r)) showError(r instanceof Error ? r : new Error(String(r)));
  });

  app.state = parseState(location.search);
  refresh();
}

if (typeof window !== 'undefined' && typeof document !== 'undefined') {
  window.__phlox = phlox;
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
}
