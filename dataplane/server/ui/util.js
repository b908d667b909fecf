// Phlox web UI: constants and helpers (see app.js for the modules).

export const RPC_BASE = '/querier.v1.QuerierService/';
export const DEFAULT_FROM = 'now-1h';
export const DEFAULT_UNTIL = 'now';
export const DEFAULT_MAX_NODES = 8192;
export const MODES = ['single', 'diff', 'heatmap'];
export const ROW_HEIGHT = 18; // px per flame graph level
export const MIN_NODE_PX = 0.5; // nodes narrower than this are not drawn
export const TOP_TABLE_LIMIT = 500; // rows put into the DOM
// The diff table opens with the functions that grew most (in percentage points).
export const DEFAULT_DIFF_SORT = 'change-desc';
export const EXEMPLAR_LIMIT = 100;
export const FONT = '12px ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
export const SMALL_FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };
// Timeline steps (seconds) that give readable buckets.
const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
  10800, 21600, 43200, 86400, 172800, 604800];
// Axis tick intervals (ms).
export const TICK_INTERVALS = [1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3,
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
export function resolveRange(from, until, now = Date.now()) {
  let end = parseTime(until, now);
  if (!Number.isFinite(end)) end = now;
  let start = parseTime(from, now);
  if (!Number.isFinite(start)) start = end - 3600e3;
  if (end <= start) end = start + 1000;
  return { start: Math.floor(start), end: Math.floor(end) };
}

/** The smallest nice step (seconds) giving at most `maxPoints` buckets. */
export function chooseStep(rangeMs, maxPoints = 300, minStep = 10) {
  const raw = rangeMs / 1000 / maxPoints;
  for (const s of NICE_STEPS) if (s >= raw && s >= minStep) return s;
  return Math.ceil(raw / 86400) * 86400;
}

/** Escapes a label value for a double-quoted PromQL string. */
export function escapeLabelValue(v) {
  return String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatLabelName(name) {
  // Legacy names are written bare; anything else (e.g. `service.name`) quoted.
  return /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) ? name : `"${escapeLabelValue(name)}"`;
}

// Label matcher operators (Prometheus syntax); `=~` and `!~` take a regular
// expression (RE2, anchored on the server) instead of a value.
export const FILTER_OPS = ['=', '!=', '=~', '!~'];
export const FILTER_OP_TITLES = {
  '=': 'equals', '!=': 'does not equal', '=~': 'matches regex', '!~': 'does not match regex',
};

export function isRegexOp(op) {
  return op === '=~' || op === '!~';
}

export function normalizeOp(op) {
  return FILTER_OPS.includes(op) ? op : '=';
}

/** Escapes RE2 metacharacters, so a label value can seed a regex filter. */
export function escapeRegex(v) {
  return String(v).replace(/[\\.+*?()|[\]{}^$]/g, '\\$&');
}

/** Whether two filters are the same matcher (name, operator and value). */
export function sameFilter(a, b) {
  return a.name === b.name && normalizeOp(a.op) === normalizeOp(b.op) && a.value === b.value;
}

/** The filters without exact repeats (see sameFilter), first occurrence kept, in order. */
export function uniqueFilters(filters) {
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
export function buildSelector(service, filters) {
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
export function sideFilters(mainFilters, ownFilters) {
  const own = ownFilters || [];
  const names = new Set(own.map((f) => f.name));
  return (mainFilters || []).filter((f) => !names.has(f.name)).concat(own);
}

/** The filters without any on label `name` (all of them, whatever the operator). */
export function filtersWithout(filters, name) {
  return (filters || []).filter((f) => f.name !== name);
}

/** A filter as shown on its chip: the matcher with the value unescaped, for reading. */
export function filterText(f) {
  return `${f.name}${normalizeOp(f.op)}"${f.value}"`;
}

function pad2(n) {
  return String(n).padStart(2, '0');
}

/**
 * `YYYY-MM-DD HH:MM:SS` in local time, 24-hour like the time axis: the time
 * inputs are text fields (a datetime-local field shows AM/PM in some locales).
 */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}` +
    ` ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fromLocalInput(value) {
  const m = /^\s*(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?\s*$/.exec(value || '');
  if (!m) return NaN;
  const [y, mo, d, h, mi, sec] = m.slice(1).map((x) => Number(x || 0));
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59) return NaN;
  return new Date(y, mo - 1, d, h, mi, sec).getTime();
}

export function formatTime(ms, withDate, withSeconds = false) {
  const d = new Date(ms);
  const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}${withSeconds ? `:${pad2(d.getSeconds())}` : ''}`;
  return withDate ? `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hm}` : hm;
}

export function formatDateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function formatDuration(ms) {
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
export function unitOf(profileTypeID) {
  return String(profileTypeID || '').split(':')[2] || '';
}

/** Formats a sample value according to its unit. */
export function formatValue(v, unit) {
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

export function percent(part, whole) {
  return whole > 0 ? (100 * part) / whole : 0;
}

export function fmtPct(p) {
  return `${p.toFixed(2)}%`;
}

export function isAbort(e) {
  return e && (e.name === 'AbortError' || e.name === 'StaleError');
}

export function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}
