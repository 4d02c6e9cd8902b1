// The four live line charts (uPlot, loaded as the global `uPlot` from pkg/vendor/).
// Owns: what each chart plots from a metrics() record, the series styling (colour =
// SAE or quantity, dashed = baseline run) and resizing. Does not own: when metrics
// are read (app.js) or the numbers panel (numbers.js).

import { mean } from './format.js';

/** One colour per SAE of the ensemble (N ≤ 8). */
export const SAE_COLOURS = ['#1f6fd1', '#d62728', '#2ca02c', '#9467bd', '#e07b00', '#8c564b', '#e377c2', '#17becf'];
const MATCHED = '#1f6fd1';
const MAX = '#e07b00';
const L0 = '#2ca02c';
const DEAD = '#d62728';
const HEIGHT = 180;

/** Solid for the MFR run, dashed for the baseline: the same in every chart. */
function runStyle(runName) {
  return runName === 'baseline' ? { dash: [6, 4], width: 1.5 } : { width: 2 };
}

const pairMean = (run, f) => mean(run.pairs.map(f));

/**
 * What each chart shows, for an ensemble of `n` SAEs and runs named `runNames`.
 * Each series has a label, a style and `value(metrics)` that reads its number.
 */
function chartSpecs(runNames, n) {
  const perSae = (read) => runNames.flatMap((name, r) =>
    Array.from({ length: n }, (_, i) => ({
      label: `${name} SAE ${i}`,
      stroke: SAE_COLOURS[i % SAE_COLOURS.length],
      ...runStyle(name),
      value: (m) => read(m.runs[r].saes[i]),
    })));
  const unit = (u, min, max) => [Math.max(-1, Math.min(0, min)), Math.max(1, max)];
  return {
    mse: {
      scales: { y: { distr: 3 } },
      axes: [{}, { label: 'MSE', size: 60 }],
      series: perSae((s) => s.mse),
    },
    mmcs: {
      scales: { y: { range: unit } },
      axes: [{}, { label: 'MMCS' }],
      series: runNames.flatMap((name, r) => [
        { label: `${name} matched`, stroke: MATCHED, ...runStyle(name), value: (m) => pairMean(m.runs[r], (p) => p.matched) },
        { label: `${name} max`, stroke: MAX, ...runStyle(name), value: (m) => pairMean(m.runs[r], (p) => (p.max_ab + p.max_ba) / 2) },
      ]),
    },
    truth: {
      scales: { y: { range: unit } },
      axes: [{}, { label: 'MMCS to truth' }],
      series: perSae((s) => (s.truth ? s.truth.matched : null)),
    },
    sparsity: {
      scales: { l0: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] }, dead: { range: [0, 1] } },
      axes: [{}, { label: 'L0', scale: 'l0' }, { label: 'dead fraction', scale: 'dead', side: 1, grid: { show: false } }],
      series: runNames.flatMap((name, r) => [
        { label: `${name} L0`, stroke: L0, scale: 'l0', ...runStyle(name), value: (m) => mean(m.runs[r].saes.map((s) => s.l0)) },
        { label: `${name} dead`, stroke: DEAD, scale: 'dead', ...runStyle(name), value: (m) => mean(m.runs[r].saes.map((s) => s.dead_fraction)) },
      ]),
    },
  };
}

/** One uPlot chart whose data grows by one point per metrics read. */
class LiveChart {
  constructor(el, spec) {
    this.el = el;
    this.spec = spec;
    this.data = [[], ...spec.series.map(() => [])];
    const series = [{ label: 'step' }, ...spec.series.map(({ value, ...style }) => ({ ...style, points: { show: false } }))];
    this.plot = new uPlot({
      width: Math.max(200, el.clientWidth),
      height: HEIGHT,
      scales: { x: { time: false }, ...spec.scales },
      axes: [{ label: 'step', size: 40 }, ...spec.axes.slice(1)],
      series,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, this.data, el);
  }

  push(metrics) {
    this.data[0].push(metrics.step);
    this.spec.series.forEach((s, i) => {
      const v = s.value(metrics);
      this.data[i + 1].push(v === null || v === undefined || !Number.isFinite(v) ? null : v);
    });
    this.plot.setData(this.data);
  }

  resize() {
    this.plot.setSize({ width: Math.max(200, this.el.clientWidth), height: HEIGHT });
  }

  destroy() {
    this.plot.destroy();
  }
}

/** The four charts together; rebuilt when the runs or the number of SAEs change. */
export class Charts {
  /** `elements`: { mse, mmcs, truth, sparsity } container elements. */
  constructor(elements) {
    this.elements = elements;
    this.charts = null;
    this.layout = '';
    this.observer = new ResizeObserver(() => this.charts && Object.values(this.charts).forEach((c) => c.resize()));
    Object.values(elements).forEach((el) => this.observer.observe(el));
  }

  /** Forgets every point (a new trainer starts at step 0). */
  clear() {
    if (this.charts) Object.values(this.charts).forEach((c) => c.destroy());
    this.charts = null;
    this.layout = '';
  }

  /** Adds one metrics() record to every chart. */
  push(metrics) {
    const runNames = metrics.runs.map((r) => r.name);
    const n = metrics.runs[0].saes.length;
    const layout = `${runNames.join(',')}/${n}`;
    if (layout !== this.layout) {
      this.clear();
      const specs = chartSpecs(runNames, n);
      this.charts = Object.fromEntries(Object.entries(specs).map(([id, spec]) => [id, new LiveChart(this.elements[id], spec)]));
      this.layout = layout;
    }
    Object.values(this.charts).forEach((c) => c.push(metrics));
  }

  /** The plotted arrays, x first, for inspection (the end-to-end test reads them). */
  data() {
    if (!this.charts) return {};
    return Object.fromEntries(Object.entries(this.charts).map(([id, c]) => [id, {
      labels: c.spec.series.map((s) => s.label),
      data: c.data,
    }]));
  }
}
