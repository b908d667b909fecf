// Phlox web UI: colours (see app.js for the modules).

import { clamp } from './util.js';

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
export function nameColor(name) {
  if (name === 'other') return 'hsl(0 0% 78%)';
  if (name === 'total') return 'hsl(220 10% 72%)';
  const h = hashString(name);
  const hue = h % 360;
  const sat = 45 + ((h >>> 9) % 25);
  const light = 62 + ((h >>> 17) % 12);
  return `hsl(${hue} ${sat}% ${light}%)`;
}

export const DIM_FILL = '#e4e6eb';
export const DIM_TEXT = '#9aa0a8';
export const TEXT_COLOR = '#1d2330';
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
export function diffColor(pct) {
  if (!(pct !== 0) || Number.isNaN(pct)) return DIFF_COLORS_GREW[0];
  const b = Math.round(clamp(Math.abs(pct) / 100, 0, 1) * DIFF_BUCKETS);
  return pct > 0 ? DIFF_COLORS_GREW[b] : DIFF_COLORS_SHRANK[b];
}

export function heatColor(t) {
  // light yellow -> orange -> dark red
  const stops = [[255, 247, 188], [254, 178, 76], [240, 59, 32], [128, 0, 38]];
  const x = clamp(t, 0, 1) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  return mixRgb(stops[i], stops[i + 1], x - i);
}
