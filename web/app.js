// The page's controller: loads the wasm package, shows the adapter, turns the settings
// into a trainer config, and drives training in chunks between animation frames.
// Every call into the trainer goes through one promise chain (`enqueue`), so no two
// trainer calls ever overlap and pause / step / reset / a settings change are safe at
// any moment. Drawing lives in js/ (charts, heatmap, motivation plot, numbers panel).
//
// `?mock=1` loads web/dev/mock_pkg.js instead of the real pkg (page development only).

import { fmt } from './js/format.js';
import { Charts } from './js/charts.js';
import { clearHeatmap, drawHeatmap, drawLegend } from './js/heatmap.js';
import { drawMotivation } from './js/motivation.js';
import { clearNumbers, renderNumbers } from './js/numbers.js';

const PKG = new URLSearchParams(location.search).has('mock') ? './dev/mock_pkg.js' : './pkg/mfr_sae.js';

/** Metrics are read every READ_MIN..READ_MAX steps, and not more often than READ_MIN_MS. */
const READ_MIN = 10;
const READ_MAX = 25;
const READ_MIN_MS = 250;
/** A chunk of steps should take about this long, so the page stays responsive. */
const CHUNK_TARGET_MS = 40;
/** Steps of one press of "Step". */
const STEP_CHUNK = 10;
/** The heatmap and the motivation plot are refreshed every this many metrics reads. */
const VIEWS_EVERY = 3;

/** The data generators, at sizes a software adapter trains at a readable pace. */
const DATA = {
  paper: { generator: 'paper', d: 32, n_features: 64, n_groups: 4, group_size: 16, active: 4, decay: 0.99 },
  sharkey: { generator: 'sharkey', d: 32, n_features: 64, mean_active: 4, decay: 0.99, pair_correlation: 0 },
};
const DATA_DESC = {
  paper: 'd = 32; 64 true features (N(0,1) directions) in 4 groups of 16; each point picks a group and 4 of its features, weights U[0,1).',
  sharkey: 'd = 32; 64 unit-norm true features, feature i active with probability ∝ 0.99^i, 4 active on average.',
};

const $ = (id) => document.getElementById(id);

const state = {
  mod: null,
  trainer: null,
  running: false,
  chain: Promise.resolve(),
  pending: 0,
  tickQueued: false,
  resetQueued: false,
  steps: 0,
  stepsSinceRead: 0,
  lastReadAt: 0,
  reads: 0,
  msPerStep: null,
  lastMetrics: null,
  heatmap: null,
  motivation: null,
  trainersCreated: 0,
  trainersFreed: 0,
};

const charts = new Charts({ mse: $('chart-mse'), mmcs: $('chart-mmcs'), truth: $('chart-truth'), sparsity: $('chart-sparsity') });

/** The trainer config the settings describe (the JSON that Trainer.create takes). */
function readConfig() {
  const value = (id) => $(id).value;
  return {
    data: DATA[value('data')],
    arch: value('arch'),
    n_saes: Number(value('n')),
    m: Number(value('m')),
    k: Number(value('k')),
    lambda: Number(value('lambda')),
    warmup_steps: Number(value('warmup')),
    form: value('form'),
    lr: Number(value('lr')),
    batch: Number(value('batch')),
    seed: Number(value('seed')),
    compare: $('compare').checked,
  };
}

// ---- the one chain of trainer calls -------------------------------------------------

/** Runs `body` after every call queued before it; a failure stops training and is shown. */
function enqueue(body) {
  state.pending++;
  updateButtons();
  state.chain = state.chain
    .then(body)
    .catch(showFailure)
    .finally(() => {
      state.pending--;
      updateButtons();
    });
  return state.chain;
}

function showFailure(err) {
  state.running = false;
  setStatus(err && err.message ? err.message : String(err), true);
}

/** Frees the current trainer (if any) and creates one from the settings, at step 0. */
async function recreate() {
  state.resetQueued = false;
  if (state.trainer) {
    state.trainer.free();
    state.trainer = null;
    state.trainersFreed++;
  }
  Object.assign(state, { steps: 0, stepsSinceRead: 0, reads: 0, msPerStep: null, lastMetrics: null, heatmap: null, motivation: null });
  charts.clear();
  clearNumbers($('numbers'));
  clearHeatmap($('heatmap'));
  $('heatmap-diag').textContent = '—';
  $('motivation-r').textContent = '—';
  drawMotivation($('motivation'), null);
  showSteps();
  showPenalty(null);
  const config = readConfig();
  setStatus('creating the trainer…');
  state.trainer = await state.mod.Trainer.create(JSON.stringify(config));
  state.trainersCreated++;
  setStatus('');
}

/** Trains n steps of every run, then reads metrics if a read is due (or `forceRead`). */
async function advance(n, forceRead) {
  const trainer = state.trainer;
  const t0 = performance.now();
  await trainer.step(n);
  const perStep = (performance.now() - t0) / n;
  state.msPerStep = state.msPerStep === null ? perStep : 0.7 * state.msPerStep + 0.3 * perStep;
  state.steps = trainer.steps();
  state.stepsSinceRead += n;
  showSteps();
  const due = state.stepsSinceRead >= READ_MAX
    || (state.stepsSinceRead >= READ_MIN && performance.now() - state.lastReadAt >= READ_MIN_MS);
  if (due || forceRead) await readMetrics();
}

/** Reads metrics() and shows them everywhere; every VIEWS_EVERY reads also the views. */
async function readMetrics() {
  const m = JSON.parse(await state.trainer.metrics());
  state.lastMetrics = m;
  state.reads++;
  state.stepsSinceRead = 0;
  state.lastReadAt = performance.now();
  charts.push(m);
  renderNumbers($('numbers'), m);
  showPenalty(m);
  updateSelectors(m);
  if (state.reads % VIEWS_EVERY === 1) await refreshViews();
}

/** Re-reads the heatmap and the motivation plot of the selected run and pair. */
async function refreshViews() {
  const trainer = state.trainer;
  if (!trainer || !state.lastMetrics) return;
  const run = Math.min(Number($('run').value), state.lastMetrics.runs.length - 1);
  const [a, b] = $('pair').value.split('-').map(Number);
  state.heatmap = JSON.parse(await trainer.heatmap(run, a, b));
  $('heatmap-diag').textContent = fmt(drawHeatmap($('heatmap'), state.heatmap));
  const hasTruth = state.lastMetrics.runs[run].saes.every((s) => s.truth);
  state.motivation = hasTruth ? JSON.parse(await trainer.motivation(run)) : null;
  $('motivation-r').textContent = fmt(drawMotivation($('motivation'), state.motivation));
}

// ---- the animation-frame loop and the buttons ---------------------------------------

function scheduleTick() {
  if (!state.running || state.tickQueued) return;
  state.tickQueued = true;
  requestAnimationFrame(() => enqueue(tick));
}

/** One chunk sized to take about CHUNK_TARGET_MS, never past the next due read. */
async function tick() {
  state.tickQueued = false;
  if (!state.running) return;
  if (!state.trainer) await recreate();
  const fit = state.msPerStep ? Math.round(CHUNK_TARGET_MS / state.msPerStep) : 1;
  await advance(Math.max(1, Math.min(fit, READ_MAX - state.stepsSinceRead)), false);
  scheduleTick();
}

function start() {
  state.running = true;
  setStatus('');
  updateButtons();
  scheduleTick();
}

function pause() {
  state.running = false;
  updateButtons();
  enqueue(async () => {
    if (state.running || !state.trainer) return;
    if (state.stepsSinceRead > 0) await readMetrics();
    await refreshViews();
  });
}

function stepOnce() {
  if (state.running) state.running = false;
  enqueue(async () => {
    if (!state.trainer) await recreate();
    await advance(STEP_CHUNK, true);
    await refreshViews();
  });
}

/** A fresh trainer from the current settings; training goes on if it was running. */
function reset() {
  setStatus('');
  if (!state.resetQueued) {
    state.resetQueued = true;
    enqueue(recreate);
  }
  scheduleTick();
}

// ---- downloads ------------------------------------------------------------------------

function save(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function downloadSaes() {
  enqueue(async () => {
    if (!state.trainer || !state.lastMetrics) return;
    const run = Number($('run').value);
    const runInfo = state.lastMetrics.runs[run];
    for (let i = 0; i < runInfo.saes.length; i++) {
      const files = await state.trainer.exportSaelens(run, i);
      save(new Blob([files.cfg], { type: 'application/json' }), `sae_${runInfo.name}_${i}_cfg.json`);
      save(new Blob([files.weights], { type: 'application/octet-stream' }), `sae_${runInfo.name}_${i}_weights.safetensors`);
    }
  });
}

function downloadCsv() {
  enqueue(async () => {
    if (!state.trainer) return;
    save(new Blob([state.trainer.metricsCsv()], { type: 'text/csv' }), 'mfr_metrics.csv');
  });
}

// ---- what the page shows besides the charts -------------------------------------------

function setStatus(text, isError = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function showSteps() {
  $('steps').textContent = String(state.steps);
  $('speed').textContent = state.msPerStep ? `${(1000 / state.msPerStep).toFixed(1)} steps/s` : '';
}

function updateButtons() {
  const ready = state.mod !== null;
  $('start').disabled = !ready;
  $('start').textContent = state.running ? 'Pause' : (state.steps > 0 ? 'Resume' : 'Start');
  $('step').disabled = !ready;
  $('reset').disabled = !ready;
  $('download-saes').disabled = !ready || !state.lastMetrics;
  $('download-csv').disabled = !ready || !state.lastMetrics;
}

/** The settings' values where the page refers to them (slider labels, beside the formulas). */
function showSettings() {
  const c = readConfig();
  $('n-out').textContent = c.n_saes;
  $('k-out').textContent = c.k;
  $('lambda-out').textContent = c.lambda.toFixed(2);
  $('live-k').textContent = c.k;
  $('live-m').textContent = c.m;
  $('live-n').textContent = c.n_saes;
  $('live-form').textContent = c.form;
  $('live-lambda').textContent = c.lambda.toFixed(2);
  $('live-T').textContent = c.warmup_steps;
  $('data-desc').textContent = DATA_DESC[$('data').value];
}

/** w(t) and L_MFR of the MFR run beside the formulas, from metrics record m (null: none yet). */
function showPenalty(m) {
  const mfr = m && m.runs[0];
  const s = mfr && mfr.saes[0];
  $('live-step').textContent = m ? m.step : 0;
  $('live-w').textContent = s && mfr.lambda > 0 ? fmt(s.mfr_weight / mfr.lambda) : '—';
  $('live-lmfr').textContent = s ? fmt(s.mfr_loss) : '—';
}

/** Keeps the run and pair selectors in line with the runs and SAEs of record m. */
function updateSelectors(m) {
  const runs = m.runs.map((r, i) => `${i}:${r.name}`).join(',');
  const runSelect = $('run');
  if (runSelect.dataset.runs !== runs) {
    const keep = Math.min(Number(runSelect.value), m.runs.length - 1);
    runSelect.innerHTML = m.runs.map((r, i) => `<option value="${i}">${r.name}</option>`).join('');
    runSelect.value = String(keep);
    runSelect.dataset.runs = runs;
  }
  const pairs = m.runs[0].pairs.map((p) => `${p.a}-${p.b}`).join(',');
  const pairSelect = $('pair');
  if (pairSelect.dataset.pairs !== pairs) {
    const keep = pairSelect.value;
    pairSelect.innerHTML = m.runs[0].pairs.map((p) => `<option value="${p.a}-${p.b}">SAE ${p.a} vs SAE ${p.b}</option>`).join('');
    pairSelect.value = pairs.split(',').includes(keep) ? keep : '0-1';
    pairSelect.dataset.pairs = pairs;
  }
}

// ---- start-up --------------------------------------------------------------------------

function bindControls() {
  const form = $('controls');
  form.addEventListener('submit', (e) => e.preventDefault());
  form.addEventListener('input', showSettings);
  $('m').addEventListener('change', () => {
    const k = $('k');
    k.max = String(Math.min(32, Number($('m').value)));
    if (Number(k.value) > Number(k.max)) k.value = k.max;
  });
  form.addEventListener('change', () => {
    showSettings();
    if (state.mod) reset();
  });
  $('start').addEventListener('click', () => (state.running ? pause() : start()));
  $('step').addEventListener('click', stepOnce);
  $('reset').addEventListener('click', reset);
  $('download-saes').addEventListener('click', downloadSaes);
  $('download-csv').addEventListener('click', downloadCsv);
  for (const id of ['run', 'pair']) $(id).addEventListener('change', () => enqueue(refreshViews));
}

/** The browser's own words for its adapter (vendor, architecture), where wgpu gives no name. */
async function browserAdapterName() {
  try {
    const adapter = await navigator.gpu.requestAdapter();
    const info = adapter && adapter.info;
    return info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') : '';
  } catch {
    return '';
  }
}

function showLoadError(text) {
  $('load-error').textContent = text;
  $('load-error').hidden = false;
}

function showAdapter(text, stateName) {
  $('adapter').textContent = text;
  $('adapter').dataset.state = stateName;
}

async function main() {
  bindControls();
  drawLegend($('heatmap-legend'));
  drawMotivation($('motivation'), null);
  showSettings();
  if (typeof uPlot === 'undefined') {
    showAdapter('not started', 'error');
    showLoadError('The chart library is missing (pkg/vendor/uPlot.iife.min.js): build the page with `bash scripts/web.sh build`.');
    return;
  }
  let mod;
  try {
    mod = await import(PKG);
    await mod.default();
  } catch (err) {
    showAdapter('not started', 'error');
    showLoadError(`Could not load the WebAssembly package ${PKG} (${err.message}). Build it with \`bash scripts/web.sh build\` and serve web/ over HTTP.`);
    return;
  }
  let info;
  try {
    info = JSON.parse(await mod.adapterInfo());
  } catch (err) {
    showAdapter('no WebGPU adapter', 'error');
    $('no-webgpu-reason').textContent = err && err.message ? err.message : String(err);
    $('no-webgpu').hidden = false;
    return;
  }
  const name = info.name || info.driver_info || info.driver || (await browserAdapterName()) || 'unnamed adapter';
  showAdapter(`Adapter: ${name} · ${info.backend} · ${info.device_type}${info.is_software ? ' (software)' : ''}`,
    info.is_software ? 'software' : 'ready');
  $('software-notice').hidden = !info.is_software;
  state.mod = mod;
  state.info = info;
  updateButtons();
  reset();
}

window.__mfr = {
  get lastMetrics() { return state.lastMetrics; },
  steps: () => state.steps,
  get running() { return state.running; },
  /** True when no trainer call is queued or in flight. */
  get idle() { return state.pending === 0 && !state.tickQueued; },
  get trainersCreated() { return state.trainersCreated; },
  get trainersFreed() { return state.trainersFreed; },
  get reads() { return state.reads; },
  get heatmap() { return state.heatmap; },
  get motivation() { return state.motivation; },
  get adapter() { return state.info || null; },
  chartData: () => charts.data(),
  config: readConfig,
};

main();
