// Phlox web UI: uRL state (see app.js for the modules).

import {
  DEFAULT_DIFF_SORT, DEFAULT_FROM, DEFAULT_MAX_NODES, DEFAULT_UNTIL, MODES, normalizeOp,
  uniqueFilters,
} from './util.js';

export function emptySide() {
  return { from: '', until: '', filters: [] };
}

export function defaultState() {
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

export function parseState(query) {
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

export function serializeState(s) {
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
