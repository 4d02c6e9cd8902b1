// The four live line charts (uPlot, loaded as the global `uPlot` from pkg/vendor/).
// Owns: what each chart plots from a metrics() record and the series styling — one
// colour per run in every chart (RUN_COLOURS: orange MFR, solid; blue baseline, dashed),
// the legend swatches drawn solid or dashed like their lines — and resizing. Does not
// own: when metrics are read (app.js) or the numbers panel (numbers.js).

import { mean } from './format.js';

/** The colour of each run, the same in every chart, key and view (style.css: --mfr, --base). */
export const RUN_COLOURS = { mfr: '#c44e00', baseline: '#1f5fbf' };
const HEIGHT = 150;

/** Solid for the MFR run, dashed for the baseline; `thin` for a secondary quantity. */
function runStyle(runName, thin = false) {
  const width = thin ? 1 : 2.25;
  return { stroke: RUN_COLOURS[runName] || '#555', width, ...(runName === 'baseline' ? { dash: [6, 4] } : {}) };
}

const pairMean = (run, f) => mean(run.pairs.map(f));
const saeMean = (run, f) => mean(run.saes.map(f));

/**
 * What each chart shows for runs named `runNames`: per run the mean over its SAEs
 * (the numbers table has each SAE). Each series has a label, a style and
 * `value(metrics)` that reads its number.
 */
function chartSpecs(runNames) {
  const perRun = (read) => runNames.map((name, r) => ({ label: name, ...runStyle(name), value: (m) => read(m.runs[r]) }));
  const unit = (u, min, max) => [Math.max(-1, Math.min(0, min)), Math.max(1, max)];
  return {
    mse: {
      scales: { y: { distr: 3 } },
      axes: [{}, { label: 'MSE', size: 60 }],
      series: perRun((run) => saeMean(run, (s) => s.mse)),
    },
    mmcs: {
      scales: { y: { range: unit } },
      axes: [{}, { label: 'MMCS' }],
      series: runNames.flatMap((name, r) => [
        { label: `${name} one-to-one`, ...runStyle(name), value: (m) => pairMean(m.runs[r], (p) => p.matched) },
        { label: `${name} max`, ...runStyle(name, true), value: (m) => pairMean(m.runs[r], (p) => (p.max_ab + p.max_ba) / 2) },
      ]),
    },
    truth: {
      scales: { y: { range: unit } },
      axes: [{}, { label: 'MMCS to truth' }],
      series: perRun((run) => saeMean(run, (s) => (s.truth ? s.truth.matched : null))),
    },
    sparsity: {
      scales: { y: { range: [0, 1] } },
      axes: [{}, { label: 'dead fraction' }],
      series: perRun((run) => saeMean(run, (s) => s.dead_fraction)),
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
      axes: [{ label: 'step', size: 36, labelSize: 18, font: '12px system-ui', labelFont: '12px system-ui' },
        ...spec.axes.slice(1).map((a) => ({ font: '12px system-ui', labelFont: '12px system-ui', ...a }))],
      series,
      legend: {
        live: true,
        markers: { width: 2, dash: (u, i) => (u.series[i].dash ? 'dashed' : 'solid'), fill: () => 'transparent' },
      },
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

/** The four charts together; rebuilt when the runs change. */
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
    const layout = runNames.join(',');
    if (layout !== this.layout) {
      this.clear();
      const specs = chartSpecs(runNames);
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
