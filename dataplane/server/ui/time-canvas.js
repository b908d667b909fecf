// Phlox web UI: canvases over time: timeline and heatmap, with brush selection (see app.js for the modules).

import {
  SMALL_FONT, TICK_INTERVALS, clamp, formatDateTime, formatDuration, formatTime, formatValue,
} from './util.js';
import { heatColor } from './colors.js';
import { sizeCanvas } from './flame-view.js';

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
export class Timeline extends TimeCanvas {
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
export class Heatmap extends TimeCanvas {
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
