// Phlox web UI: flame graph model (see app.js for the modules).

import { fmtPct, percent } from './util.js';

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
export function decodeFlameGraph(fg, isDiff = false) {
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

export function nodeName(g, i) {
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
export function flameSummary(g) {
  if (!g || g.n === 0 || !(g.rootTotal > 0)) return 'No data';
  const w = widestNode(g);
  if (w < 0) return 'No data';
  return `${nodeName(g, w)} ${fmtPct(percent(g.total[w], g.rootTotal))}`;
}

// Value columns the top tables aggregate: pairs of [self, total] arrays of
// the decoded graph, named as in decodeFlameGraph.
const SINGLE_COLUMNS = [['self', 'total']];
export const DIFF_COLUMNS = [['lSelf', 'lTotal'], ['rSelf', 'rTotal']];

/**
 * Aggregates the graph by function name: self = sum of self over all nodes
 * of that name; total = sum of totals over the nodes of that name that have
 * no ancestor of the same name (so recursion is not counted twice). An
 * iterative DFS keeps, per name, how many nodes of that name are on the
 * current path. `columns` lists [selfKey, totalKey] pairs of g's arrays
 * (both sides of a diff are aggregated in one pass). Returns one object per
 * name (root excluded): {name, [selfKey], [totalKey], ...}.
 */
export function aggregateByName(g, columns = SINGLE_COLUMNS) {
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
export function diffTableRows(agg, g, metric) {
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

export function sortRows(rows, sort) {
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

export function zoomPathOf(g, i) {
  const parts = [];
  for (let v = i; v > 0; v = g.parent[v]) parts.push(escapePathPart(nodeName(g, v)));
  return parts.reverse().join(';');
}

/** Resolves a zoom path to a node; stops at the deepest node found (root = 0). */
export function nodeFromPath(g, path) {
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
export function diffChange(lt, rt, leftTicks, rightTicks) {
  const lr = leftTicks > 0 ? lt / leftTicks : 0;
  const rr = rightTicks > 0 ? rt / rightTicks : 0;
  if (lr === 0) return rr === 0 ? 0 : Infinity;
  return ((rr - lr) / lr) * 100;
}
