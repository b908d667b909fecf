// Phlox web UI: a single-page app in plain ES modules, no build step, no
// dependencies. It talks only to the public query API (Connect protocol with
// the JSON codec, plus the binary codec for the pprof download).
//
// Layout of this file:
//   1. constants and small helpers (time, formatting, selectors)
//   2. the API client (Connect JSON errors, tenant header, protobuf encoding)
//   3. flame graph model: decoding levels into flat typed arrays, tree links,
//      widest node, top table aggregation (single and diff), zoom paths
//   4. colours
//   5. FlameGraphView: the canvas renderer (single and diff)
//   6. TimeCanvas, Timeline and Heatmap: canvases over time with brushing
//   7. FilterPicker: label name, operator (= != =~ !~) and value pickers,
//      removable chips
//   8. URL state
//   9. the app controller: loading, rendering, event wiring
//
// Everything that comes from the data (function names, label values) is
// written with textContent, never as HTML.

// ---------------------------------------------------------------------------
// 1. Constants and helpers
// ---------------------------------------------------------------------------

const RPC_BASE = '/querier.v1.QuerierService/';
const DEFAULT_FROM = 'now-1h';
const DEFAULT_UNTIL = 'now';
const DEFAULT_MAX_NODES = 8192;
const MODES = ['single', 'diff', 'heatmap'];
const ROW_HEIGHT = 18; // px per flame graph level
const MIN_NODE_PX = 0.5; // nodes narrower than this are not drawn
const TOP_TABLE_LIMIT = 500; // rows put into the DOM
// The diff table opens with the functions that grew most (in percentage points).
const DEFAULT_DIFF_SORT = 'change-desc';
const EXEMPLAR_LIMIT = 100;
const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
const SMALL_FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
// Timeline steps (seconds) that give readable buckets.
const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
  10800, 21600, 43200, 86400, 172800, 604800];
// Axis tick intervals (ms).
const TICK_INTERVALS = [1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3,
  7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3];

/** Parses `now`, `now-<n><s|m|h|d|w>`, Unix seconds or ms, or a date string. */
function parseTime(text, now) {
  const t = String(text == null ? '' : text).trim();
  if (t === '' || t === 'now') return now;
  const rel = /^now-(\d+)([smhdw])$/.exec(t);
  if (rel) return now - Number(rel[1]) * UNIT_MS[rel[2]];
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    return n < 1e11 ? n * 1000 : n; // 10 digits: seconds; 13 digits: ms
  }
  const d = Date.parse(t);
  return Number.isFinite(d) ? d : NaN;
}

/** Resolves a from/until pair to integer Unix ms, falling back to the last hour. */
function resolveRange(from, until, now = Date.now()) {
  let end = parseTime(until, now);
  if (!Number.isFinite(end)) end = now;
  let start = parseTime(from, now);
  if (!Number.isFinite(start)) start = end - 3600e3;
  if (end <= start) end = start + 1000;
  return { start: Math.floor(start), end: Math.floor(end) };
}

/** The smallest nice step (seconds) giving at most `maxPoints` buckets. */
function chooseStep(rangeMs, maxPoints = 300, minStep = 10) {
  const raw = rangeMs / 1000 / maxPoints;
  for (const s of NICE_STEPS) if (s >= raw && s >= minStep) return s;
  return Math.ceil(raw / 86400) * 86400;
}

/** Escapes a label value for a double-quoted PromQL string. */
function escapeLabelValue(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabelName(name) {
  // Legacy names are written bare; anything else (e.g. `service.name`) quoted.
  return /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) ? name : `"${escapeLabelValue(name)}"`;
}

// Label matcher operators (Prometheus syntax); `=~` and `!~` take a regular
// expression (RE2, anchored on the server) instead of a value.
const FILTER_OPS = ['=', '!=', '=~', '!~'];
const FILTER_OP_TITLES = {
  '=': 'equals', '!=': 'does not equal', '=~': 'matches regex', '!~': 'does not match regex',
};

function isRegexOp(op) {
  return op === '=~' || op === '!~';
}

function normalizeOp(op) {
  return FILTER_OPS.includes(op) ? op : '=';
}

/** Escapes RE2 metacharacters, so a label value can seed a regex filter. */
function escapeRegex(v) {
  return String(v).replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/** Whether two filters are the same matcher (name, operator and value). */
function sameFilter(a, b) {
  return a.name === b.name && normalizeOp(a.op) === normalizeOp(b.op) && a.value === b.value;
}

/** The filters without exact repeats (see sameFilter), first occurrence kept, in order. */
function uniqueFilters(filters) {
  const out = [];
  for (const f of filters || []) {
    if (f && f.name && !out.some((g) => sameFilter(g, f))) out.push(f);
  }
  return out;
}

/**
 * `{service_name="x", k="v", k!="w", j!~"r"}`. Every filter is its own
 * matcher, AND-ed, in insertion order, so several filters on one label
 * combine (`{pod!="a", pod!="b"}`); exact repeats are written once. A
 * `service_name` filter is dropped when the service is given.
 */
function buildSelector(service, filters) {
  const parts = [];
  if (service) parts.push(`service_name="${escapeLabelValue(service)}"`);
  for (const f of uniqueFilters(filters)) {
    if (f.name === 'service_name' && service) continue;
    parts.push(`${formatLabelName(f.name)}${normalizeOp(f.op)}"${escapeLabelValue(f.value)}"`);
  }
  return `{${parts.join(', ')}}`;
}

/**
 * The filters of a diff side's query: the main filters, except that a side
 * with filters on a label replaces all main filters of that label name
 * (main `pod!="a"` with side `pod="b"` gives just `pod="b"`), then the
 * side's own filters, all AND-ed in order.
 */
function sideFilters(mainFilters, ownFilters) {
  const own = ownFilters || [];
  const names = new Set(own.map((f) => f.name));
  return (mainFilters || []).filter((f) => !names.has(f.name)).concat(own);
}

/** The filters without any on label `name` (all of them, whatever the operator). */
function filtersWithout(filters, name) {
  return (filters || []).filter((f) => f.name !== name);
}

/** A filter as shown on its chip: the matcher with the value unescaped, for reading. */
function filterText(f) {
  return `${f.name}${normalizeOp(f.op)}"${f.value}"`;
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/**
 * `YYYY-MM-DD HH:MM:SS` in local time, 24-hour like the time axis: the time
 * inputs are text fields (a datetime-local field shows AM/PM in some locales).
 */
function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}` +
    ` ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function fromLocalInput(value) {
  const m = /^\s*(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?\s*$/.exec(value || '');
  if (!m) return NaN;
  const [y, mo, d, h, mi, sec] = m.slice(1).map((x) => Number(x || 0));
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return NaN;
  return new Date(y, mo - 1, d, h, mi, sec).getTime();
}

function formatTime(ms, withDate, withSeconds = false) {
  const d = new Date(ms);
  const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}${withSeconds ? `:${pad2(d.getSeconds())}` : ''}`;
  return withDate ? `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hm}` : hm;
}

function formatDateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

function formatDuration(ms) {
  const s = ms / 1000;
  if (s < 60) return `${+s.toFixed(1)}s`;
  if (s < 3600) return `${+(s / 60).toFixed(1)}m`;
  if (s < 86400) return `${+(s / 3600).toFixed(1)}h`;
  return `${+(s / 86400).toFixed(1)}d`;
}

/** Three significant-ish digits. */
function fmtNum(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The sample unit of a profile type ID (`name:type:unit:ptype:punit`). */
function unitOf(profileTypeID) {
  return String(profileTypeID || '').split(':')[2] || '';
}

/** Formats a sample value according to its unit. */
function formatValue(v, unit) {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (unit === 'nanoseconds') {
    if (a < 1e3) return `${fmtNum(v)} ns`;
    if (a < 1e6) return `${fmtNum(v / 1e3)} µs`;
    if (a < 1e9) return `${fmtNum(v / 1e6)} ms`;
    if (a < 60e9) return `${fmtNum(v / 1e9)} s`;
    if (a < 3600e9) return `${fmtNum(v / 60e9)} min`;
    return `${fmtNum(v / 3600e9)} h`;
  }
  if (unit === 'bytes') {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let x = v;
    let i = 0;
    while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return i === 0 ? `${Math.round(x)} B` : `${fmtNum(x)} ${units[i]}`;
  }
  const suffix = unit && unit !== 'count' ? ` ${unit}` : '';
  if (a < 1e3) return `${Number.isInteger(v) ? v : fmtNum(v)}${suffix}`;
  if (a < 1e6) return `${fmtNum(v / 1e3)}k${suffix}`;
  if (a < 1e9) return `${fmtNum(v / 1e6)}M${suffix}`;
  if (a < 1e12) return `${fmtNum(v / 1e9)}G${suffix}`;
  return `${fmtNum(v / 1e12)}T${suffix}`;
}

function percent(part, whole) {
  return whole > 0 ? (100 * part) / whole : 0;
}

function fmtPct(p) {
  return `${p.toFixed(2)}%`;
}

function isAbort(e) {
  return e && (e.name === 'AbortError' || e.name === 'StaleError');
}

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

// ---------------------------------------------------------------------------
// 2. API client
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.name = 'ApiError';
    this.code = code || 'unknown';
    this.status = status || 0;
  }
}

const api = {
  tenant: '',

  headers(contentType) {
    // The UI shows label names with dots too (OpenTelemetry's `service.name`…).
    const h = { 'Content-Type': contentType, Accept: '*/*;allow-utf8-labelnames=true' };
    if (this.tenant) h['X-Scope-OrgID'] = this.tenant;
    return h;
  },

  /** Calls a QuerierService method with the Connect JSON codec. */
  async call(method, body, signal) {
    let resp;
    try {
      resp = await fetch(RPC_BASE + method, {
        method: 'POST',
        headers: this.headers('application/json'),
        body: JSON.stringify(body || {}),
        signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(`${method}: request failed (${e && e.message ? e.message : e})`, 'unavailable');
    }
    const text = await resp.text();
    if (!resp.ok) throw connectError(method, resp.status, text);
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new ApiError(`${method}: invalid JSON response`, 'internal', resp.status);
    }
  },

  /** Calls a method with the binary codec; returns the response bytes as a Blob. */
  async callBinary(method, bytes, signal) {
    let resp;
    try {
      resp = await fetch(RPC_BASE + method, {
        method: 'POST',
        headers: this.headers('application/proto'),
        body: bytes,
        signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(`${method}: request failed (${e && e.message ? e.message : e})`, 'unavailable');
    }
    if (!resp.ok) throw connectError(method, resp.status, await resp.text());
    return resp.blob();
  },
};

/** A Connect error body is `{"code","message"}`; anything else is reported raw. */
function connectError(method, status, text) {
  try {
    const j = JSON.parse(text);
    if (j && typeof j.message === 'string' && j.message) return new ApiError(j.message, j.code, status);
    if (j && j.code) return new ApiError(`${method}: ${j.code}`, j.code, status);
  } catch (e) { /* not JSON */ }
  const body = (text || '').trim().slice(0, 300);
  return new ApiError(`${method}: HTTP ${status}${body ? `: ${body}` : ''}`, 'unknown', status);
}

// Minimal protobuf writer for the pprof download request.

/** Appends an unsigned varint; `n` is a non-negative integer below 2^53. */
function pbVarint(out, n) {
  let v = Math.floor(n);
  while (v >= 128) {
    out.push((v % 128) + 128); // low 7 bits with the continuation bit
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function pbString(out, field, s) {
  if (!s) return; // proto3: default values are not written
  const bytes = new TextEncoder().encode(s);
  pbVarint(out, field * 8 + 2); // wire type 2: length-delimited
  pbVarint(out, bytes.length);
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]);
}

function pbInt64(out, field, n) {
  if (!n) return;
  pbVarint(out, field * 8); // wire type 0: varint
  pbVarint(out, n);
}

/**
 * querier.v1.SelectMergeProfileRequest: 1 profile_typeID, 2 label_selector,
 * 3 start, 4 end (Unix ms), 7 repeated profile_id_selector.
 */
function encodeSelectMergeProfileRequest({ profileTypeID, labelSelector, start, end, profileIds }) {
  const out = [];
  pbString(out, 1, profileTypeID);
  pbString(out, 2, labelSelector);
  pbInt64(out, 3, start);
  pbInt64(out, 4, end);
  for (const id of profileIds || []) pbString(out, 7, id);
  return Uint8Array.from(out);
}

// ---------------------------------------------------------------------------
// 3. Flame graph model
// ---------------------------------------------------------------------------

/**
 * Decodes a querier.v1.FlameGraph (or FlameGraphDiff when `isDiff`) into flat
 * typed arrays, one entry per node, in level order (level 0 = the root).
 *
 * Encoding (wire-api.md §2.5): each level is a flat list of int64 (JSON
 * strings) with 4 values per node, [x_delta, total, self, name_index]. The
 * x offset is delta-encoded against the END of the previous node on the same
 * level: abs = prevEnd + x_delta; prevEnd = abs + total (prevEnd starts at 0).
 * A node's children lie on the next level inside [abs + self, abs + total).
 *
 * Diff levels have 7 values per node, [lx_delta, ltotal, lself, rx_delta,
 * rtotal, rself, name_index]: two independent layouts of the same aligned
 * tree. For drawing we combine them with each side normalised to its own
 * total (x = lx/leftTicks + rx/rightTicks), so both sides weigh the same;
 * the combination of two consistent layouts is itself consistent.
 *
 * Returned fields: n, names, x/total/self (drawing layout), nameIdx, depth,
 * levelStart (node index range of each level), parent, firstChild,
 * childCount, rootTotal (raw), and for diffs lTotal/lSelf/rTotal/rSelf and
 * leftTicks/rightTicks.
 */
function decodeFlameGraph(fg, isDiff = false) {
  const src = fg || {};
  const width = isDiff ? 7 : 4;
  const names = Array.isArray(src.names) && src.names.length ? src.names.slice() : ['total'];
  const levelValues = (Array.isArray(src.levels) ? src.levels : [])
    .map((l) => (l && Array.isArray(l.values) ? l.values : []));
  // Trailing empty levels carry nothing.
  while (levelValues.length && levelValues[levelValues.length - 1].length < width) levelValues.pop();

  let n = 0;
  for (const v of levelValues) n += Math.floor(v.length / width);
  const L = levelValues.length;

  const g = {
    isDiff, n, names, levels: L,
    keyL: new Float64Array(n), // exact integer layout (left side for diffs)
    keyR: isDiff ? new Float64Array(n) : null, // right side layout (diffs)
    x: null, total: null, self: null,
    nameIdx: new Int32Array(n),
    depth: new Int32Array(n),
    levelStart: new Int32Array(L + 1),
    parent: new Int32Array(n),
    firstChild: new Int32Array(n),
    childCount: new Int32Array(n),
    rootTotal: 0,
    lTotal: null, lSelf: null, rTotal: null, rSelf: null,
    leftTicks: 0, rightTicks: 0,
  };
  let unknownName = -1;
  const nameIndex = (raw) => {
    const idx = Number(raw);
    if (Number.isInteger(idx) && idx >= 0 && idx < names.length) return idx;
    if (unknownName < 0) { unknownName = names.length; names.push('<unknown>'); }
    return unknownName;
  };

  if (!isDiff) {
    const total = new Float64Array(n);
    const self = new Float64Array(n);
    let i = 0;
    for (let d = 0; d < L; d++) {
      g.levelStart[d] = i;
      const v = levelValues[d];
      let prevEnd = 0;
      for (let k = 0; k + 4 <= v.length; k += 4, i++) {
        const abs = prevEnd + Number(v[k]);
        const t = Number(v[k + 1]);
        prevEnd = abs + t;
        g.keyL[i] = abs;
        total[i] = t;
        self[i] = Number(v[k + 2]);
        g.nameIdx[i] = nameIndex(v[k + 3]);
        g.depth[i] = d;
      }
    }
    g.levelStart[L] = i;
    g.x = g.keyL;
    g.total = total;
    g.self = self;
    g.rootTotal = n > 0 ? total[0] : 0;
  } else {
    const lT = new Float64Array(n), lS = new Float64Array(n);
    const rT = new Float64Array(n), rS = new Float64Array(n);
    let i = 0;
    for (let d = 0; d < L; d++) {
      g.levelStart[d] = i;
      const v = levelValues[d];
      let prevL = 0;
      let prevR = 0;
      for (let k = 0; k + 7 <= v.length; k += 7, i++) {
        const la = prevL + Number(v[k]);
        const lt = Number(v[k + 1]);
        prevL = la + lt;
        const ra = prevR + Number(v[k + 3]);
        const rt = Number(v[k + 4]);
        prevR = ra + rt;
        g.keyL[i] = la;
        g.keyR[i] = ra;
        lT[i] = lt;
        lS[i] = Number(v[k + 2]);
        rT[i] = rt;
        rS[i] = Number(v[k + 5]);
        g.nameIdx[i] = nameIndex(v[k + 6]);
        g.depth[i] = d;
      }
    }
    g.levelStart[L] = i;
    g.lTotal = lT; g.lSelf = lS; g.rTotal = rT; g.rSelf = rS;
    g.leftTicks = Number(src.leftTicks) || (n > 0 ? lT[0] : 0);
    g.rightTicks = Number(src.rightTicks) || (n > 0 ? rT[0] : 0);
    const ls = g.leftTicks > 0 ? 1 / g.leftTicks : 0;
    const rs = g.rightTicks > 0 ? 1 / g.rightTicks : 0;
    g.x = new Float64Array(n);
    g.total = new Float64Array(n);
    g.self = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      g.x[j] = g.keyL[j] * ls + g.keyR[j] * rs;
      g.total[j] = lT[j] * ls + rT[j] * rs;
      g.self[j] = lS[j] * ls + rS[j] * rs;
    }
    g.rootTotal = g.leftTicks + g.rightTicks;
  }
  linkTree(g);
  return g;
}

/**
 * Finds every node's parent: the last node of the previous level whose
 * start is <= the child's start. Both levels are sorted by x, so one forward
 * pointer per level suffices (O(n)). Children of one parent are contiguous
 * on their level, so a parent's children are [firstChild, firstChild+count).
 *
 * Diffs: a node absent on the left has zero left width and shares its left
 * x with a neighbour, so such nodes are linked through the right layout
 * (where they are non-empty). Linking uses the exact integer layouts.
 */
function linkTree(g) {
  g.parent.fill(-1);
  g.firstChild.fill(-1);
  g.childCount.fill(0);
  for (let d = 1; d < g.levels; d++) {
    const pStart = g.levelStart[d - 1];
    const pEnd = g.levelStart[d];
    if (pEnd <= pStart) continue;
    let pl = pStart;
    let pr = pStart;
    for (let c = g.levelStart[d]; c < g.levelStart[d + 1]; c++) {
      const cl = g.keyL[c];
      while (pl + 1 < pEnd && g.keyL[pl + 1] <= cl) pl++;
      let p = pl;
      if (g.isDiff) {
        const cr = g.keyR[c];
        while (pr + 1 < pEnd && g.keyR[pr + 1] <= cr) pr++;
        if (!(g.lTotal[c] > 0)) p = pr;
      }
      g.parent[c] = p;
      if (g.firstChild[p] < 0) g.firstChild[p] = c;
      g.childCount[p]++;
    }
  }
}

function nodeName(g, i) {
  return g.names[g.nameIdx[i]];
}

/** The non-root node with the largest total (first one on ties), or -1. */
function widestNode(g) {
  let best = -1;
  for (let i = 1; i < g.n; i++) {
    if (g.depth[i] > 0 && (best < 0 || g.total[i] > g.total[best])) best = i;
  }
  return best;
}

/** `<name> <percent>%` of the widest non-root node, percent of the root total. */
function flameSummary(g) {
  if (!g || g.n === 0 || !(g.rootTotal > 0)) return 'No data';
  const w = widestNode(g);
  if (w < 0) return 'No data';
  return `${nodeName(g, w)} ${fmtPct(percent(g.total[w], g.rootTotal))}`;
}

// Value columns the top tables aggregate: pairs of [self, total] arrays of
// the decoded graph, named as in decodeFlameGraph.
const SINGLE_COLUMNS = [['self', 'total']];
const DIFF_COLUMNS = [['lSelf', 'lTotal'], ['rSelf', 'rTotal']];

/**
 * Aggregates the graph by function name: self = sum of self over all nodes
 * of that name; total = sum of totals over the nodes of that name that have
 * no ancestor of the same name (so recursion is not counted twice). An
 * iterative DFS keeps, per name, how many nodes of that name are on the
 * current path. `columns` lists [selfKey, totalKey] pairs of g's arrays
 * (both sides of a diff are aggregated in one pass). Returns one object per
 * name (root excluded): {name, [selfKey], [totalKey], ...}.
 */
function aggregateByName(g, columns = SINGLE_COLUMNS) {
  if (!g || g.n === 0) return [];
  const N = g.names.length;
  const cols = columns.map(([selfKey, totalKey]) => ({
    selfKey, totalKey, selfSrc: g[selfKey], totalSrc: g[totalKey],
    selfBy: new Float64Array(N), totalBy: new Float64Array(N),
  }));
  const onPath = new Int32Array(N);
  const seen = new Uint8Array(N);
  const stack = [];
  const pushChildren = (v) => {
    const fc = g.firstChild[v];
    if (fc < 0) return;
    for (let c = fc + g.childCount[v] - 1; c >= fc; c--) stack.push(c);
  };
  pushChildren(0);
  while (stack.length) {
    const v = stack.pop();
    if (v < 0) { // exit marker ~node: leave the node
      onPath[g.nameIdx[~v]]--;
      continue;
    }
    const nm = g.nameIdx[v];
    seen[nm] = 1;
    const outermost = onPath[nm] === 0;
    for (const c of cols) {
      c.selfBy[nm] += c.selfSrc[v];
      if (outermost) c.totalBy[nm] += c.totalSrc[v];
    }
    onPath[nm]++;
    stack.push(~v);
    pushChildren(v);
  }
  const rows = [];
  for (let k = 0; k < N; k++) {
    if (!seen[k]) continue;
    const row = { name: g.names[k] };
    for (const c of cols) {
      row[c.selfKey] = c.selfBy[k];
      row[c.totalKey] = c.totalBy[k];
    }
    rows.push(row);
  }
  return rows;
}

/**
 * Rows of the diff table from aggregated diff rows: `metric` ('self' or
 * 'total') as a percentage of each side's own total, the change in
 * percentage points (the sort key) and the relative change of the share
 * (the flame graph's colour scale; ±Infinity when new).
 */
function diffTableRows(agg, g, metric) {
  const lKey = metric === 'self' ? 'lSelf' : 'lTotal';
  const rKey = metric === 'self' ? 'rSelf' : 'rTotal';
  return agg.map((r) => {
    const left = percent(r[lKey], g.leftTicks);
    const right = percent(r[rKey], g.rightTicks);
    return {
      name: r.name,
      lValue: r[lKey],
      rValue: r[rKey],
      left,
      right,
      change: right - left,
      rel: diffChange(r[lKey], r[rKey], g.leftTicks, g.rightTicks),
    };
  });
}

function sortRows(rows, sort) {
  const [col, dir] = sort.split('-');
  const sign = dir === 'asc' ? 1 : -1;
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  rows.sort((a, b) => {
    const c = col === 'name' ? byName(a, b) : a[col] - b[col];
    return c !== 0 ? sign * c : byName(a, b);
  });
  return rows;
}

// Zoom is kept in the URL as the path of names from the root's child to the
// zoomed node, `;`-separated (`%` and `;` inside names are percent-escaped).
function escapePathPart(s) {
  return s.replace(/%/g, '%25').replace(/;/g, '%3B');
}

function unescapePathPart(s) {
  return s.replace(/%3B/gi, ';').replace(/%25/g, '%');
}

function zoomPathOf(g, i) {
  const parts = [];
  for (let v = i; v > 0; v = g.parent[v]) parts.push(escapePathPart(nodeName(g, v)));
  return parts.reverse().join(';');
}

/** Resolves a zoom path to a node; stops at the deepest node found (root = 0). */
function nodeFromPath(g, path) {
  if (!g || g.n === 0 || !path) return 0;
  let v = 0;
  for (const raw of path.split(';')) {
    const want = unescapePathPart(raw);
    const fc = g.firstChild[v];
    let found = -1;
    for (let c = fc; fc >= 0 && c < fc + g.childCount[v]; c++) {
      if (nodeName(g, c) === want) { found = c; break; }
    }
    if (found < 0) break;
    v = found;
  }
  return v;
}

/** Diff change of a node's share of its side's total, in percent (±Infinity: new). */
function diffChange(lt, rt, leftTicks, rightTicks) {
  const lr = leftTicks > 0 ? lt / leftTicks : 0;
  const rr = rightTicks > 0 ? rt / rightTicks : 0;
  if (lr === 0) return rr === 0 ? 0 : Infinity;
  return ((rr - lr) / lr) * 100;
}

// ---------------------------------------------------------------------------
// 4. Colours
// ---------------------------------------------------------------------------

/** FNV-1a, 32 bit. */
function hashString(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A stable pastel colour for a function name. */
function nameColor(name) {
  if (name === 'other') return 'hsl(0 0% 78%)';
  if (name === 'total') return 'hsl(220 10% 72%)';
  const h = hashString(name);
  const hue = h % 360;
  const sat = 45 + ((h >>> 9) % 25);
  const light = 62 + ((h >>> 17) % 12);
  return `hsl(${hue} ${sat}% ${light}%)`;
}

const DIM_FILL = '#e4e6eb';
const DIM_TEXT = '#9aa0a8';
const TEXT_COLOR = '#1d2330';
const DIFF_NEUTRAL = [205, 208, 214];
const DIFF_GREW = [220, 38, 38];
const DIFF_SHRANK = [22, 163, 74];
const DIFF_BUCKETS = 20;

function mixRgb(a, b, t) {
  const c = (k) => Math.round(a[k] + (b[k] - a[k]) * t);
  return `rgb(${c(0)}, ${c(1)}, ${c(2)})`;
}

// Precomputed colours for |change| in 5% buckets up to 100%.
const DIFF_COLORS_GREW = [];
const DIFF_COLORS_SHRANK = [];
for (let b = 0; b <= DIFF_BUCKETS; b++) {
  DIFF_COLORS_GREW.push(mixRgb(DIFF_NEUTRAL, DIFF_GREW, b / DIFF_BUCKETS));
  DIFF_COLORS_SHRANK.push(mixRgb(DIFF_NEUTRAL, DIFF_SHRANK, b / DIFF_BUCKETS));
}

/** Red = grew, green = shrank; intensity saturates at ±100%. */
function diffColor(pct) {
  if (!(pct !== 0) || Number.isNaN(pct)) return DIFF_COLORS_GREW[0];
  const b = Math.round(clamp(Math.abs(pct) / 100, 0, 1) * DIFF_BUCKETS);
  return pct > 0 ? DIFF_COLORS_GREW[b] : DIFF_COLORS_SHRANK[b];
}

function heatColor(t) {
  // light yellow -> orange -> dark red
  const stops = [[255, 247, 188], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
  const x = clamp(t, 0, 1) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  return mixRgb(stops[i], stops[i + 1], x - i);
}

// ---------------------------------------------------------------------------
// 5. Flame graph canvas renderer
// ---------------------------------------------------------------------------

/** Sizes a canvas for CSS pixels w x h at the device pixel ratio; returns the context. */
function sizeCanvas(canvas, w, h) {
  const dpr = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
  const bw = Math.max(1, Math.round(w * dpr));
  const bh = Math.max(1, Math.round(h * dpr));
  if (canvas.width !== bw) canvas.width = bw;
  if (canvas.height !== bh) canvas.height = bh;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return ctx;
}

function maxCanvasCssHeight() {
  const dpr = (typeof window !== 'undefined' && window.devicePixelRatio) || 1;
  return Math.floor(32000 / dpr);
}

class FlameGraphView {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{tooltip: Tooltip, onZoom: (node:number)=>void}} opts
   */
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.tooltip = opts.tooltip;
    this.onZoom = opts.onZoom;
    this.graph = null;
    this.unit = '';
    this.zoom = 0;
    this.search = '';
    this.matches = null; // Uint8Array per name index, or null (no search)
    this.colors = [];
    this.view = null; // geometry of the last render, for hit testing
    canvas.addEventListener('mousemove', (e) => this.onMove(e));
    canvas.addEventListener('mouseleave', () => this.tooltip.hide());
    canvas.addEventListener('click', (e) => this.onClick(e));
  }

  setGraph(g, unit) {
    this.graph = g;
    this.unit = unit;
    this.zoom = 0;
    this.colors = new Array(g ? g.names.length : 0);
    this.computeMatches();
  }

  setSearch(q) {
    this.search = (q || '').trim().toLowerCase();
    this.computeMatches();
  }

  setZoom(i) {
    const g = this.graph;
    this.zoom = g && i > 0 && i < g.n ? i : 0;
  }

  computeMatches() {
    const g = this.graph;
    if (!g || !this.search) { this.matches = null; return; }
    const m = new Uint8Array(g.names.length);
    for (let k = 0; k < g.names.length; k++) {
      if (String(g.names[k]).toLowerCase().includes(this.search)) m[k] = 1;
    }
    this.matches = m;
  }

  /** How many nodes of the graph match the search (for the toolbar). */
  matchCount() {
    const g = this.graph;
    if (!g || !this.matches) return 0;
    let c = 0;
    for (let i = 1; i < g.n; i++) if (this.matches[g.nameIdx[i]]) c++;
    return c;
  }

  fillFor(i) {
    const g = this.graph;
    const nm = g.nameIdx[i];
    if (this.matches && !this.matches[nm]) return DIM_FILL;
    if (g.isDiff) return diffColor(diffChange(g.lTotal[i], g.rTotal[i], g.leftTicks, g.rightTicks));
    let c = this.colors[nm];
    if (c === undefined) c = this.colors[nm] = nameColor(String(g.names[nm]));
    return c;
  }

  /** First node index on level d whose end lies after `pos` (binary search). */
  firstEndingAfter(d, pos) {
    const g = this.graph;
    let lo = g.levelStart[d];
    let hi = g.levelStart[d + 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (g.x[mid] + g.total[mid] > pos) hi = mid; else lo = mid + 1;
    }
    return lo;
  }

  /** Whether level d has a node at least MIN_NODE_PX wide inside the view. */
  levelVisible(d, vx0, vx1, minW) {
    const g = this.graph;
    const end = g.levelStart[d + 1];
    for (let i = this.firstEndingAfter(d, vx0); i < end && g.x[i] < vx1; i++) {
      if (g.total[i] >= minW) return true;
    }
    return false;
  }

  /** Draws the graph; returns the number of nodes drawn. */
  render() {
    const g = this.graph;
    const wrap = this.canvas.parentElement;
    const cssW = Math.floor(wrap ? wrap.clientWidth : 0);
    this.view = null;
    if (!g || g.n === 0 || !(g.total[0] > 0)) {
      sizeCanvas(this.canvas, Math.max(cssW, 1), ROW_HEIGHT * 2);
      return 0;
    }
    if (cssW <= 0) return 0; // hidden; drawn again when it gets a size

    const z = this.zoom;
    const vx0 = g.x[z];
    const vw = g.total[z];
    const vx1 = vx0 + vw;
    const scale = cssW / vw;
    const minW = MIN_NODE_PX / scale; // in layout units

    let levels = 0;
    while (levels < g.levels && this.levelVisible(levels, vx0, vx1, minW)) levels++;
    const cssH = Math.min(Math.max(levels, 1) * ROW_HEIGHT, maxCanvasCssHeight());
    const ctx = sizeCanvas(this.canvas, cssW, cssH);
    if (!ctx) return 0;
    this.view = { vx0, scale, levels, cssW, cssH };

    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    const charW = ctx.measureText('x').width || 7;
    const minLabelW = charW * 3 + 6;
    const zDepth = g.depth[z];
    let drawn = 0;

    for (let d = 0; d < levels; d++) {
      const y = d * ROW_HEIGHT;
      if (y >= cssH) break;
      ctx.globalAlpha = d < zDepth ? 0.55 : 1; // ancestors of the zoomed node
      const end = g.levelStart[d + 1];
      for (let i = this.firstEndingAfter(d, vx0); i < end; i++) {
        const nx = g.x[i];
        if (nx >= vx1) break;
        const t = g.total[i];
        if (t < minW) continue;
        const px0 = Math.max(0, (nx - vx0) * scale);
        const px1 = Math.min(cssW, (nx + t - vx0) * scale);
        const w = px1 - px0;
        const fill = this.fillFor(i);
        ctx.fillStyle = fill;
        ctx.fillRect(px0, y, w > 2 ? w - 1 : w, ROW_HEIGHT - 1);
        drawn++;
        if (w >= minLabelW) {
          const name = String(g.names[g.nameIdx[i]]);
          const maxChars = Math.floor((w - 6) / charW);
          const label = name.length <= maxChars ? name : `${name.slice(0, Math.max(1, maxChars - 1))}…`;
          ctx.fillStyle = fill === DIM_FILL ? DIM_TEXT : TEXT_COLOR;
          ctx.fillText(label, px0 + 3, y + ROW_HEIGHT / 2);
        }
      }
    }
    ctx.globalAlpha = 1;
    return drawn;
  }

  /** The node under CSS pixel (px, py), or -1. */
  nodeAt(px, py) {
    const g = this.graph;
    const v = this.view;
    if (!g || !v) return -1;
    const d = Math.floor(py / ROW_HEIGHT);
    if (d < 0 || d >= v.levels) return -1;
    const pos = v.vx0 + px / v.scale;
    const i = this.firstEndingAfter(d, pos);
    if (i < g.levelStart[d + 1] && g.x[i] <= pos) return i;
    return -1;
  }

  eventNode(e) {
    const r = this.canvas.getBoundingClientRect();
    return this.nodeAt(e.clientX - r.left, e.clientY - r.top);
  }

  onMove(e) {
    const i = this.eventNode(e);
    if (i < 0) { this.tooltip.hide(); this.canvas.style.cursor = 'default'; return; }
    this.canvas.style.cursor = 'pointer';
    this.tooltip.show(e.clientX, e.clientY, this.tooltipLines(i));
  }

  onClick(e) {
    const i = this.eventNode(e);
    if (i >= 0 && this.onZoom) this.onZoom(i);
  }

  tooltipLines(i) {
    const g = this.graph;
    const f = (v) => formatValue(v, this.unit);
    const lines = [{ text: nodeName(g, i), strong: true }];
    if (!g.isDiff) {
      lines.push({ text: `Total: ${f(g.total[i])} (${fmtPct(percent(g.total[i], g.rootTotal))})` });
      lines.push({ text: `Self: ${f(g.self[i])} (${fmtPct(percent(g.self[i], g.rootTotal))})` });
      return lines;
    }
    const lt = g.lTotal[i], rt = g.rTotal[i];
    lines.push({ text: `Baseline: ${f(lt)} (${fmtPct(percent(lt, g.leftTicks))}), self ${f(g.lSelf[i])}` });
    lines.push({ text: `Comparison: ${f(rt)} (${fmtPct(percent(rt, g.rightTicks))}), self ${f(g.rSelf[i])}` });
    const ch = diffChange(lt, rt, g.leftTicks, g.rightTicks);
    let chText;
    if (ch === Infinity) chText = 'new in comparison';
    else if (rt === 0 && lt > 0) chText = 'removed (−100%)';
    else chText = `${ch >= 0 ? '+' : '−'}${Math.abs(ch).toFixed(2)}% of total`;
    lines.push({ text: `Change: ${chText}`, cls: ch > 0 ? 'grew' : ch < 0 ? 'shrank' : '' });
    return lines;
  }
}

/** A floating tooltip that follows the mouse. */
class Tooltip {
  constructor(el) {
    this.el = el;
  }

  show(clientX, clientY, lines) {
    const el = this.el;
    el.textContent = '';
    for (const l of lines) {
      const div = document.createElement('div');
      div.textContent = l.text;
      if (l.strong) div.className = 'tt-title';
      if (l.cls) div.classList.add(l.cls);
      el.appendChild(div);
    }
    el.hidden = false;
    const pad = 14;
    const w = el.offsetWidth;
    const h = el.offsetHeight;
    let left = clientX + pad;
    let top = clientY + pad;
    if (left + w > window.innerWidth - 4) left = Math.max(4, clientX - w - pad);
    if (top + h > window.innerHeight - 4) top = Math.max(4, clientY - h - pad);
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
  }

  hide() {
    this.el.hidden = true;
  }
}

// ---------------------------------------------------------------------------
// 6. Canvases over time: timeline and heatmap, with brush selection
// ---------------------------------------------------------------------------

const AXIS_H = 18;
const PLOT_TOP = 6;

/**
 * Base class: a canvas whose x axis is [start, end]. Dragging selects a time
 * range (onSelect(t0, t1)); a click without drag calls onClick(px, py).
 */
class TimeCanvas {
  constructor(canvas, height, opts) {
    this.canvas = canvas;
    this.height = height;
    this.tooltip = opts.tooltip;
    this.onSelect = opts.onSelect;
    this.onClickAt = opts.onClick || null;
    this.start = 0;
    this.end = 1;
    this.unit = '';
    this.overlays = []; // [{start, end, fill, stroke}]
    this.drag = null; // {x0, x1}
    this.width = 0;
    canvas.addEventListener('pointerdown', (e) => this.onDown(e));
    canvas.addEventListener('pointermove', (e) => this.onMove(e));
    canvas.addEventListener('pointerup', (e) => this.onUp(e));
    canvas.addEventListener('pointercancel', () => { this.drag = null; this.render(); });
    canvas.addEventListener('pointerleave', () => { if (!this.drag) this.tooltip.hide(); });
  }

  setRange(start, end) {
    this.start = start;
    this.end = end > start ? end : start + 1;
  }

  localX(e) {
    const r = this.canvas.getBoundingClientRect();
    return { x: clamp(e.clientX - r.left, 0, this.width), y: e.clientY - r.top };
  }

  timeAt(px) {
    return this.start + (px / Math.max(1, this.width)) * (this.end - this.start);
  }

  xAt(t) {
    return ((t - this.start) / (this.end - this.start)) * this.width;
  }

  onDown(e) {
    if (e.button !== 0) return;
    const { x } = this.localX(e);
    this.drag = { x0: x, x1: x };
    try { this.canvas.setPointerCapture(e.pointerId); } catch (err) { /* ignore */ }
    this.tooltip.hide();
  }

  onMove(e) {
    const { x, y } = this.localX(e);
    if (this.drag) {
      this.drag.x1 = x;
      this.render();
      return;
    }
    const lines = this.hoverLines(x, y);
    if (lines) this.tooltip.show(e.clientX, e.clientY, lines); else this.tooltip.hide();
  }

  onUp(e) {
    if (!this.drag) return;
    const { x0, x1 } = this.drag;
    this.drag = null;
    try { this.canvas.releasePointerCapture(e.pointerId); } catch (err) { /* ignore */ }
    if (Math.abs(x1 - x0) >= 4) {
      const t0 = Math.round(this.timeAt(Math.min(x0, x1)));
      const t1 = Math.round(this.timeAt(Math.max(x0, x1)));
      this.render();
      if (this.onSelect) this.onSelect(t0, t1);
    } else {
      this.render();
      if (this.onClickAt) {
        const { y } = this.localX(e);
        this.onClickAt(x0, y);
      }
    }
  }

  render() {
    const wrap = this.canvas.parentElement;
    const w = Math.floor(wrap ? wrap.clientWidth : 0);
    if (w <= 0) return;
    this.width = w;
    const ctx = sizeCanvas(this.canvas, w, this.height);
    if (!ctx) return;
    const plotH = this.height - AXIS_H - PLOT_TOP;
    this.drawContent(ctx, w, plotH);
    for (const o of this.overlays) {
      const a = clamp(this.xAt(o.start), 0, w);
      const b = clamp(this.xAt(o.end), 0, w);
      if (b <= a) continue;
      ctx.fillStyle = o.fill;
      ctx.fillRect(a, PLOT_TOP, b - a, plotH);
      ctx.strokeStyle = o.stroke;
      ctx.lineWidth = 1;
      ctx.strokeRect(a + 0.5, PLOT_TOP + 0.5, Math.max(0, b - a - 1), plotH - 1);
    }
    if (this.drag) {
      const a = Math.min(this.drag.x0, this.drag.x1);
      const b = Math.max(this.drag.x0, this.drag.x1);
      ctx.fillStyle = 'rgba(37, 99, 235, 0.18)';
      ctx.fillRect(a, PLOT_TOP, b - a, plotH);
      ctx.strokeStyle = 'rgba(37, 99, 235, 0.8)';
      ctx.strokeRect(a + 0.5, PLOT_TOP + 0.5, Math.max(0, b - a - 1), plotH - 1);
    }
    this.drawTimeAxis(ctx, w, this.height - AXIS_H);
  }

  drawTimeAxis(ctx, w, y) {
    ctx.strokeStyle = '#cfd4dc';
    ctx.beginPath();
    ctx.moveTo(0, y + 0.5);
    ctx.lineTo(w, y + 0.5);
    ctx.stroke();
    const span = this.end - this.start;
    const iv = TICK_INTERVALS.find((v) => span / v <= Math.max(2, w / 110)) || TICK_INTERVALS[TICK_INTERVALS.length - 1];
    const offMs = new Date(this.start).getTimezoneOffset() * 60e3;
    const withDate = span > 86400e3 || iv >= 86400e3;
    ctx.fillStyle = '#5b6472';
    ctx.font = SMALL_FONT;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'center';
    // Ticks aligned to the interval in local time; seconds shown when the
    // interval is under a minute, so no two labels read the same.
    const labels = [];
    for (let t = Math.ceil((this.start - offMs) / iv) * iv + offMs; t <= this.end; t += iv) {
      const x = this.xAt(t);
      ctx.fillRect(Math.round(x), y, 1, 4);
      if (x > 20 && x < w - 20) {
        const label = formatTime(t, withDate, iv < 60e3);
        ctx.fillText(label, x, y + 5);
        labels.push(label);
      }
    }
    // What the axis shows, for tests and assistive tools (the canvas has no text).
    this.canvas.dataset.ticks = labels.join('|');
    ctx.textAlign = 'left';
  }

  drawContent() { /* subclasses */ }

  hoverLines() { return null; }
}

/** The time series of the current selection, as bars per step. */
class Timeline extends TimeCanvas {
  constructor(canvas, opts) {
    super(canvas, 110, opts);
    this.points = []; // [{t: right edge ms, v}]
    this.step = 60;
    this.message = '';
  }

  setData(points, stepSeconds, unit) {
    this.points = points;
    this.step = stepSeconds;
    this.unit = unit;
  }

  drawContent(ctx, w, plotH) {
    let max = 0;
    for (const p of this.points) if (p.v > max) max = p.v;
    ctx.fillStyle = '#f7f8fa';
    ctx.fillRect(0, PLOT_TOP, w, plotH);
    if (!this.points.length || max <= 0) {
      ctx.fillStyle = '#8a93a1';
      ctx.font = SMALL_FONT;
      ctx.textBaseline = 'middle';
      ctx.fillText(this.message || 'No data in this time range', 8, PLOT_TOP + plotH / 2);
      return;
    }
    const stepMs = this.step * 1000;
    const base = PLOT_TOP + plotH;
    ctx.fillStyle = 'rgba(37, 99, 235, 0.55)';
    for (const p of this.points) {
      // A point covers (t - step, t].
      const a = this.xAt(p.t - stepMs);
      const b = this.xAt(p.t);
      if (b < 0 || a > w) continue;
      const h = (p.v / max) * (plotH - 4);
      ctx.fillRect(a, base - h, Math.max(1, b - a - (b - a > 3 ? 1 : 0)), h);
    }
    const label = `max ${formatValue(max, this.unit)} / ${formatDuration(stepMs)}`;
    ctx.font = SMALL_FONT;
    ctx.textBaseline = 'top';
    ctx.fillStyle = 'rgba(247, 248, 250, 0.85)';
    ctx.fillRect(2, PLOT_TOP, ctx.measureText(label).width + 8, 15);
    ctx.fillStyle = '#5b6472';
    ctx.fillText(label, 6, PLOT_TOP + 2);
  }

  hoverLines(px) {
    const t = this.timeAt(px);
    const stepMs = this.step * 1000;
    const p = this.points.find((q) => t > q.t - stepMs && t <= q.t);
    const lines = [{ text: formatDateTime(t), strong: true }];
    lines.push({ text: p ? formatValue(p.v, this.unit) : 'no samples' });
    lines.push({ text: 'Drag to select a range', cls: 'hint' });
    return lines;
  }
}

/**
 * Heatmap of profile values over time: one column per slot (covering
 * (t - step, t]), one cell per value bucket starting at y_min[i].
 */
class Heatmap extends TimeCanvas {
  constructor(canvas, opts) {
    super(canvas, 220, opts);
    this.cells = []; // [{t0, t1, y0, y1, count, slot}]
    this.yLo = 0;
    this.yHi = 1;
    this.maxCount = 0;
    this.plotH = 0;
  }

  /** Builds cells from types.v1.HeatmapSeries. */
  setData(series, stepSeconds, unit) {
    this.unit = unit;
    const stepMs = stepSeconds * 1000;
    const cells = [];
    for (const s of series || []) {
      for (const slot of (s && s.slots) || []) {
        const t1 = Number(slot.timestamp);
        const ys = (slot.yMin || []).map(Number);
        const counts = (slot.counts || []).map(Number);
        for (let i = 0; i < ys.length; i++) {
          const c = counts[i] || 0;
          if (c <= 0) continue;
          let y1;
          if (i + 1 < ys.length) y1 = ys[i + 1];
          else if (ys.length > 1) y1 = ys[i] + (ys[i] - ys[i - 1]);
          else y1 = ys[i] + Math.max(1, Math.abs(ys[i]) * 0.1);
          cells.push({ t0: t1 - stepMs, t1, y0: ys[i], y1, count: c });
        }
      }
    }
    this.cells = cells;
    this.maxCount = 0;
    this.yLo = Infinity;
    this.yHi = -Infinity;
    for (const c of cells) {
      if (c.count > this.maxCount) this.maxCount = c.count;
      if (c.y0 < this.yLo) this.yLo = c.y0;
      if (c.y1 > this.yHi) this.yHi = c.y1;
    }
    if (!(this.yHi > this.yLo)) { this.yLo = 0; this.yHi = 1; }
  }

  yAt(v, plotH) {
    return PLOT_TOP + plotH - ((v - this.yLo) / (this.yHi - this.yLo)) * plotH;
  }

  drawContent(ctx, w, plotH) {
    this.plotH = plotH;
    ctx.fillStyle = '#f7f8fa';
    ctx.fillRect(0, PLOT_TOP, w, plotH);
    if (!this.cells.length) {
      ctx.fillStyle = '#8a93a1';
      ctx.font = SMALL_FONT;
      ctx.textBaseline = 'middle';
      ctx.fillText('No heatmap data in this time range', 8, PLOT_TOP + plotH / 2);
      return;
    }
    for (const c of this.cells) {
      const a = this.xAt(c.t0);
      const b = this.xAt(c.t1);
      const top = this.yAt(c.y1, plotH);
      const bottom = this.yAt(c.y0, plotH);
      ctx.fillStyle = heatColor(Math.sqrt(c.count / this.maxCount));
      ctx.fillRect(a, top, Math.max(1, b - a - 1), Math.max(1, bottom - top - 1));
    }
    ctx.fillStyle = '#5b6472';
    ctx.font = SMALL_FONT;
    ctx.textBaseline = 'top';
    ctx.fillText(formatValue(this.yHi, this.unit), 4, PLOT_TOP + 2);
    ctx.textBaseline = 'bottom';
    ctx.fillText(formatValue(this.yLo, this.unit), 4, PLOT_TOP + plotH - 2);
  }

  cellAt(px, py) {
    const t = this.timeAt(px);
    for (const c of this.cells) {
      if (t <= c.t0 || t > c.t1) continue;
      const top = this.yAt(c.y1, this.plotH);
      const bottom = this.yAt(c.y0, this.plotH);
      if (py >= top && py <= bottom) return c;
    }
    return null;
  }

  hoverLines(px, py) {
    const c = this.cellAt(px, py);
    if (!c) return null;
    return [
      { text: `${formatDateTime(c.t0)} – ${formatTime(c.t1)}`, strong: true },
      { text: `${formatValue(c.y0, this.unit)} – ${formatValue(c.y1, this.unit)}` },
      { text: `${c.count} profile${c.count === 1 ? '' : 's'}` },
      { text: 'Click to narrow the time range to this cell', cls: 'hint' },
    ];
  }
}

// ---------------------------------------------------------------------------
// 7. Label filters
// ---------------------------------------------------------------------------

/**
 * A label name select, an operator select, a value select (values filtered
 * by the current selector minus this label) or, for the regex operators, a
 * free-text input (the values offered as suggestions), an add button and
 * removable chips. Several filters may name one label (they are AND-ed);
 * the values offered for a label ignore all of that label's own filters, so
 * `pod!="a"` still offers `b` for a second `pod!="b"`. Each chip removes
 * only its own filter.
 */
class FilterPicker {
  constructor({
    nameSelect, opSelect, valueSelect, regexInput, addButton, chips, chipTestId, onChange, selectorWithout, onError,
  }) {
    this.nameSelect = nameSelect;
    this.opSelect = opSelect;
    this.valueSelect = valueSelect;
    this.regexInput = regexInput;
    this.addButton = addButton;
    this.chips = chips;
    this.chipTestId = chipTestId;
    this.onChange = onChange;
    this.selectorWithout = selectorWithout; // (labelName) => selector string
    this.onError = onError;
    this.filters = [];
    this.range = null;
    this.ready = false; // whether the pickers may call the API (type known)
    this.valuesReq = 0;
    this.namesReq = 0;
    setOptions(nameSelect, [], 'label…');
    setOptions(opSelect, FILTER_OPS.map((op) => ({ value: op, label: op, title: FILTER_OP_TITLES[op] })));
    setOptions(valueSelect, [], 'value…');
    // The regex input suggests the label's values through a datalist.
    this.suggestions = document.createElement('datalist');
    this.suggestions.id = `label-suggestions-${++FilterPicker.count}`;
    regexInput.after(this.suggestions);
    regexInput.setAttribute('list', this.suggestions.id);
    nameSelect.addEventListener('change', () => this.loadValues());
    opSelect.addEventListener('change', () => this.syncOp());
    regexInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') this.add(); });
    addButton.addEventListener('click', () => this.add());
    this.syncOp();
  }

  /** Shows the value select or the regex input, as the operator needs. */
  syncOp() {
    const regex = isRegexOp(this.opSelect.value);
    this.opSelect.title = FILTER_OP_TITLES[this.opSelect.value] || '';
    // Switching to a regex seeds it with the chosen value, matched literally.
    if (regex && !this.regexInput.value && this.valueSelect.value) {
      this.regexInput.value = escapeRegex(this.valueSelect.value);
    }
    this.valueSelect.hidden = regex;
    this.regexInput.hidden = !regex;
    this.regexInput.disabled = !this.nameSelect.value;
  }

  setFilters(filters) {
    this.filters = filters.slice();
    this.renderChips();
  }

  renderChips() {
    this.chips.textContent = '';
    this.filters.forEach((f, idx) => {
      const chip = document.createElement('span');
      chip.className = 'chip';
      if (this.chipTestId) chip.dataset.testid = this.chipTestId;
      const text = document.createElement('span');
      text.textContent = filterText(f);
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.className = 'chip-remove'; // the × is drawn by CSS, so the chip's text is just the matcher
      rm.title = `Remove ${filterText(f)}`;
      rm.setAttribute('aria-label', `Remove filter ${filterText(f)}`);
      rm.addEventListener('click', () => {
        const next = this.filters.slice();
        next.splice(idx, 1);
        this.onChange(next);
      });
      chip.append(text, rm);
      this.chips.appendChild(chip);
    });
  }

  async loadNames(range, signal) {
    this.range = range;
    const req = ++this.namesReq;
    const selected = this.nameSelect.value;
    try {
      const resp = await api.call('LabelNames', {
        matchers: [this.selectorWithout(null)], start: range.start, end: range.end,
      }, signal);
      if (req !== this.namesReq) return;
      const names = (resp.names || []).filter((n) => n && !n.startsWith('__') && n !== 'service_name');
      names.sort();
      setOptions(this.nameSelect, names, 'label…', selected);
      if (this.nameSelect.value !== selected || !selected) {
        this.setValues([]);
        this.valueSelect.disabled = true;
        this.syncOp();
      } else {
        await this.loadValues(signal);
      }
    } catch (e) {
      if (!isAbort(e) && this.onError) this.onError(e);
    }
  }

  setValues(values, selected) {
    setOptions(this.valueSelect, values, 'value…', selected);
    setOptions(this.suggestions, values);
  }

  async loadValues(signal) {
    const name = this.nameSelect.value;
    const req = ++this.valuesReq;
    const selected = this.valueSelect.value;
    this.syncOp();
    if (!name || !this.range) {
      this.setValues([]);
      this.valueSelect.disabled = true;
      return;
    }
    this.valueSelect.disabled = true;
    try {
      const resp = await api.call('LabelValues', {
        name, matchers: [this.selectorWithout(name)], start: this.range.start, end: this.range.end,
      }, signal);
      if (req !== this.valuesReq) return;
      const values = (resp.names || []).slice().sort();
      this.setValues(values, selected);
      // Preselect the single value so "Add" works right away.
      if (values.length === 1) this.valueSelect.value = values[0];
      this.valueSelect.disabled = false;
    } catch (e) {
      if (!isAbort(e) && this.onError) this.onError(e);
    }
  }

  add() {
    const name = this.nameSelect.value;
    const op = normalizeOp(this.opSelect.value);
    if (!name) return;
    let value;
    if (isRegexOp(op)) {
      // An empty regex is meaningful (`!~""`: the label is set), so allowed.
      value = this.regexInput.value;
    } else {
      value = this.valueSelect.value;
      if (!value || this.valueSelect.disabled) return;
    }
    // Filters on one label combine (AND); an exact repeat changes nothing.
    const f = { name, op, value };
    if (this.filters.some((g) => sameFilter(g, f))) return;
    this.onChange(this.filters.concat([f]));
  }
}
FilterPicker.count = 0;

/** Replaces a select's options with a placeholder plus `values`. */
function setOptions(select, values, placeholder, selected) {
  select.textContent = '';
  if (placeholder != null) {
    const o = document.createElement('option');
    o.value = '';
    o.textContent = placeholder;
    select.appendChild(o);
  }
  for (const v of values) {
    const o = document.createElement('option');
    if (typeof v === 'object') {
      o.value = v.value;
      o.textContent = v.label;
      if (v.title) o.title = v.title;
    } else {
      o.value = v;
      o.textContent = v;
    }
    select.appendChild(o);
  }
  if (selected != null && values.some((v) => (typeof v === 'object' ? v.value : v) === selected)) {
    select.value = selected;
  }
}

// ---------------------------------------------------------------------------
// 8. URL state
// ---------------------------------------------------------------------------

function emptySide() {
  return { from: '', until: '', filters: [] };
}

function defaultState() {
  return {
    service: '',
    type: '',
    filters: [],
    from: DEFAULT_FROM,
    until: DEFAULT_UNTIL,
    mode: 'single',
    left: emptySide(),
    right: emptySide(),
    heatmap: 'individual',
    pid: '', // single profile (exemplar) view
    span: '', // single span view
    search: '',
    zoom: '',
    maxNodes: DEFAULT_MAX_NODES,
    sort: 'total-desc',
    diffSort: DEFAULT_DIFF_SORT,
    diffMetric: 'total', // what the diff table compares: 'total' or 'self'
    tenant: '',
  };
}

// A filter in the URL is `name<op>value` with the operator written as in
// PromQL (`region!=us`, `region=~eu.*`, `region!~us`); plain `name=value`
// (the format before operators existed) still means equality. The name ends
// at the first operator (so a label name containing one cannot round-trip).
// The value is raw, except that an equality value starting with `~` or `\`
// gets a `\` prefix, so that `=` + `~x` is not read as `=~` + `x`.
// Every filter is its own repeated param, in order, so several filters on
// one label (`f=pod!=a&f=pod!=b`) survive a reload and a shared link.

function formatFilterParam(f) {
  const op = normalizeOp(f.op);
  const value = op === '=' && /^[~\\]/.test(f.value) ? `\\${f.value}` : f.value;
  return `${f.name}${op}${value}`;
}

function parseFilter(text) {
  // Lazy name: the first operator wins; `!=`/`!~`/`=~` before `=` at one position.
  const m = /^(.+?)(!=|!~|=~|=)(.*)$/s.exec(String(text));
  if (!m) return null;
  const [, name, op, raw] = m;
  const value = op === '=' && raw.startsWith('\\') ? raw.slice(1) : raw;
  return { name, op, value };
}

/** Repeated filter params (`f`, `lf` or `rf`), in order, exact repeats dropped. */
function parseFilters(params) {
  return uniqueFilters(params.map(parseFilter).filter(Boolean));
}

function parseState(query) {
  const p = new URLSearchParams(query);
  const s = defaultState();
  const str = (k) => p.get(k) || '';
  s.service = str('service');
  s.type = str('type');
  s.filters = parseFilters(p.getAll('f'));
  s.from = str('from') || DEFAULT_FROM;
  s.until = str('until') || DEFAULT_UNTIL;
  s.mode = MODES.includes(p.get('mode')) ? p.get('mode') : 'single';
  s.left = { from: str('lfrom'), until: str('luntil'), filters: parseFilters(p.getAll('lf')) };
  s.right = { from: str('rfrom'), until: str('runtil'), filters: parseFilters(p.getAll('rf')) };
  s.heatmap = p.get('hm') === 'span' ? 'span' : 'individual';
  s.pid = str('pid');
  s.span = str('span');
  s.search = str('search');
  s.zoom = str('zoom');
  const mn = Number(p.get('maxNodes'));
  if (Number.isInteger(mn) && mn > 0) s.maxNodes = mn;
  if (/^(name|self|total)-(asc|desc)$/.test(p.get('sort') || '')) s.sort = p.get('sort');
  if (/^(name|left|right|change)-(asc|desc)$/.test(p.get('dsort') || '')) s.diffSort = p.get('dsort');
  if (p.get('dmetric') === 'self') s.diffMetric = 'self';
  s.tenant = str('tenant');
  return s;
}

function serializeState(s) {
  const p = new URLSearchParams();
  const set = (k, v) => { if (v !== '' && v != null) p.set(k, String(v)); };
  set('service', s.service);
  set('type', s.type);
  for (const f of s.filters) p.append('f', formatFilterParam(f));
  set('from', s.from);
  set('until', s.until);
  if (s.mode !== 'single') set('mode', s.mode);
  if (s.mode === 'diff') {
    set('lfrom', s.left.from);
    set('luntil', s.left.until);
    for (const f of s.left.filters) p.append('lf', formatFilterParam(f));
    set('rfrom', s.right.from);
    set('runtil', s.right.until);
    for (const f of s.right.filters) p.append('rf', formatFilterParam(f));
    if (s.diffSort !== DEFAULT_DIFF_SORT) set('dsort', s.diffSort);
    if (s.diffMetric !== 'total') set('dmetric', s.diffMetric);
  }
  if (s.mode === 'heatmap' && s.heatmap !== 'individual') set('hm', s.heatmap);
  set('pid', s.pid);
  set('span', s.span);
  set('search', s.search);
  set('zoom', s.zoom);
  if (s.maxNodes !== DEFAULT_MAX_NODES) set('maxNodes', s.maxNodes);
  if (s.sort !== 'total-desc') set('sort', s.sort);
  set('tenant', s.tenant);
  return p.toString();
}

// ---------------------------------------------------------------------------
// 9. The app
// ---------------------------------------------------------------------------

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
