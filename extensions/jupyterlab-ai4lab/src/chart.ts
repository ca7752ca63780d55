/** A small SVG line chart for metric histories (no charting library needed). */

export type Point = { step: number; value: number };
export type Series = Record<string, Point[]>;

const SVG = 'http://www.w3.org/2000/svg';
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

export interface Box {
  width: number;
  height: number;
  pad: number;
}

/** Min and max over all series, widened when flat so that a line is still drawn mid-height. */
export function extent(series: Series): { x: [number, number]; y: [number, number] } | null {
  const pts = Object.values(series)
    .flat()
    .filter(p => Number.isFinite(p.value) && Number.isFinite(p.step));
  if (!pts.length) {
    return null;
  }
  let [x0, x1] = [Math.min(...pts.map(p => p.step)), Math.max(...pts.map(p => p.step))];
  let [y0, y1] = [Math.min(...pts.map(p => p.value)), Math.max(...pts.map(p => p.value))];
  if (x0 === x1) {
    x0 -= 1;
    x1 += 1;
  }
  if (y0 === y1) {
    const d = Math.abs(y0) * 0.1 || 1;
    y0 -= d;
    y1 += d;
  }
  return { x: [x0, x1], y: [y0, y1] };
}

/** The `d` attribute of one series' polyline inside the box (y grows upwards). */
export function linePath(points: Point[], ext: { x: [number, number]; y: [number, number] }, box: Box): string {
  const w = box.width - 2 * box.pad;
  const hgt = box.height - 2 * box.pad;
  return [...points]
    .filter(p => Number.isFinite(p.value) && Number.isFinite(p.step))
    .sort((a, b) => a.step - b.step)
    .map((p, i) => {
      const x = box.pad + ((p.step - ext.x[0]) / (ext.x[1] - ext.x[0])) * w;
      const y = box.pad + hgt - ((p.value - ext.y[0]) / (ext.y[1] - ext.y[0])) * hgt;
      return `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

function el(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v * 100) / 100) : v.toPrecision(3);
}

/** One chart with a line and a legend entry per series; "no data yet" while empty. */
export function lineChart(series: Series, box: Box = { width: 360, height: 180, pad: 28 }): SVGSVGElement {
  const svg = el('svg', {
    class: 'ai4lab-chart',
    width: box.width,
    height: box.height,
    viewBox: `0 0 ${box.width} ${box.height}`,
    role: 'img'
  }) as SVGSVGElement;
  const ext = extent(series);
  if (!ext) {
    svg.append(el('text', { x: box.width / 2, y: box.height / 2, 'text-anchor': 'middle', class: 'ai4lab-chart-empty' }, 'no data yet'));
    return svg;
  }
  const bottom = box.height - box.pad;
  svg.append(
    el('line', { x1: box.pad, y1: bottom, x2: box.width - box.pad, y2: bottom, class: 'ai4lab-axis' }),
    el('line', { x1: box.pad, y1: box.pad, x2: box.pad, y2: bottom, class: 'ai4lab-axis' }),
    el('text', { x: 2, y: box.pad + 4, class: 'ai4lab-tick' }, fmt(ext.y[1])),
    el('text', { x: 2, y: bottom, class: 'ai4lab-tick' }, fmt(ext.y[0])),
    el('text', { x: box.pad, y: box.height - 6, class: 'ai4lab-tick' }, fmt(ext.x[0])),
    el('text', { x: box.width - box.pad, y: box.height - 6, 'text-anchor': 'end', class: 'ai4lab-tick' }, fmt(ext.x[1]))
  );
  Object.entries(series).forEach(([name, points], i) => {
    const colour = COLOURS[i % COLOURS.length];
    const d = linePath(points, ext, box);
    if (d && !d.includes('L')) {  // a single value (a final score): a dot, since a line needs two
      const [x, y] = d.slice(1).split(',');
      svg.append(el('circle', { cx: x, cy: y, r: 4, fill: colour, 'data-series': name }));
    }
    svg.append(
      el('path', { d, fill: 'none', stroke: colour, 'stroke-width': 2, 'data-series': name }),
      el('text', { x: box.pad + 6 + i * 110, y: 14, fill: colour, class: 'ai4lab-legend' }, name)
    );
  });
  return svg;
}
