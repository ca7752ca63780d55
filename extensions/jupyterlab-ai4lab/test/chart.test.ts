import { describe, expect, it } from 'vitest';

import { extent, lineChart, linePath } from '../src/chart';

const box = { width: 100, height: 60, pad: 10 };

describe('extent', () => {
  it('is null without data', () => {
    expect(extent({})).toBeNull();
    expect(extent({ loss: [{ step: 1, value: NaN }] })).toBeNull();
  });
  it('widens flat series', () => {
    expect(extent({ acc: [{ step: 3, value: 0.5 }] })).toEqual({ x: [2, 4], y: [0.45, 0.55] });
  });
});

describe('linePath', () => {
  it('maps the lowest value to the bottom and sorts by step', () => {
    const pts = [{ step: 2, value: 1 }, { step: 1, value: 0 }];
    const d = linePath(pts, { x: [1, 2], y: [0, 1] }, box);
    expect(d).toBe('M10.0,50.0 L90.0,10.0');
  });
});

describe('lineChart', () => {
  it('draws one path and one legend per series', () => {
    const svg = lineChart({ accuracy: [{ step: 0, value: 0.2 }, { step: 1, value: 0.9 }], loss: [{ step: 0, value: 2 }, { step: 1, value: 0.3 }] }, box);
    const paths = svg.querySelectorAll('path');
    expect(paths.length).toBe(2);
    expect(paths[0].getAttribute('data-series')).toBe('accuracy');
    expect(Array.from(svg.querySelectorAll('.ai4lab-legend')).map(t => t.textContent)).toEqual(['accuracy', 'loss']);
  });
  it('marks a single value with a dot', () => {
    const svg = lineChart({ final_val_accuracy: [{ step: 0, value: 0.96 }] }, box);
    const dot = svg.querySelector('circle')!;
    expect([dot.getAttribute('cx'), dot.getAttribute('cy')]).toEqual(['50.0', '30.0']);
  });
  it('says no data yet while empty', () => {
    expect(lineChart({}, box).textContent).toBe('no data yet');
  });
});
