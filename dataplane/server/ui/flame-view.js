// Phlox web UI: flame graph canvas renderer (see app.js for the modules).

import { FONT, MIN_NODE_PX, ROW_HEIGHT, fmtPct, formatValue, percent } from './util.js';
import { diffChange, nodeName } from './flame-model.js';
import { DIM_FILL, DIM_TEXT, TEXT_COLOR, diffColor, nameColor } from './colors.js';

/** Sizes a canvas for CSS pixels w x h at the device pixel ratio; returns the context. */
export function sizeCanvas(canvas, w, h) {
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

export class FlameGraphView {
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
export class Tooltip {
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
