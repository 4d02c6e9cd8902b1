// The page's controller: loads the wasm package, shows the adapter, turns the settings
// into a trainer config, and drives training in chunks between animation frames.
// Every call into the trainer goes through one promise chain (`enqueue`), so no two
// trainer calls ever overlap and pause / step / reset / a settings change are safe at
// any moment. Drawing lives in js/ (charts, heatmap, motivation plot, numbers panel,
// the EEG / activation views of real data).
//
// The settings live in the address bar (js/urlstate.js): every change rewrites the hash,
// a reload or a shared link restores them, and a preset (js/presets.js) is a hash too.
// The result card (js/result.js) says what MFR minus baseline is at the last read.
//
// `?mock=1` loads web/dev/mock_pkg.js instead of the real pkg (page development only).

import { fmt } from './js/format.js';
import { PRESETS, presetById } from './js/presets.js';
import { renderResult, clearResult } from './js/result.js';
import { readHash, writeHash } from './js/urlstate.js';
import { Charts } from './js/charts.js';
import { clearHeatmap, drawHeatmap, drawLegend } from './js/heatmap.js';
import { drawMotivation } from './js/motivation.js';
import { clearNumbers, renderNumbers } from './js/numbers.js';
import { clearSignal, drawAtoms, drawRow, drawSegment } from './js/signals.js';

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

/**
 * The page's configuration from the library (`pageDefaults()`, src/experiment/page.rs),
 * read once at start-up (null until the package has loaded): `data`, the generators at
 * sizes a software adapter trains at a readable pace; `sources`, the data sources of the
 * select (a generator, a sample file served beside the page, or the reader's own file;
 * `kind` picks the settings and the views shown); `defaults`, the settings that suit each
 * kind of data, applied when the data source changes; `software_defaults`, what a software
 * (CPU) adapter cuts (fewer latents, a shorter warm-up) so that a minute of training shows
 * the losses fall and the penalty at full weight.
 * @type {import('./js/types.js').PageDefaults|null}
 */
let page = null;

const kindOfFile = (name) => (name.toLowerCase().endsWith('.edf') ? 'eeg' : 'activations');

const $ = (id) => document.getElementById(id);

/**
 * @typedef {import('./js/types.js').Metrics} Metrics
 * @typedef {import('./js/types.js').Heatmap} Heatmap
 * @typedef {import('./js/types.js').Motivation} Motivation
 * @typedef {import('./js/types.js').HeldOut} HeldOut
 * @typedef {import('./js/types.js').DataInfo} DataInfo
 * @typedef {import('./js/types.js').Atoms} Atoms
 * @typedef {import('./js/types.js').Segment} Segment
 */

/** What belongs to one trainer: reset as a whole when a trainer is created or loaded. */
const freshRun = () => ({
  steps: 0,
  stepsSinceRead: 0,
  lastReadAt: 0,
  reads: 0,
  /** Time of the training calls per step (sizes the chunks). */
  msPerStep: null,
  /** Wall clock: steps and time when the running stretch began, and the rate over it. */
  wall: null,
  stepsPerSecond: null,
  /** @type {Metrics|null} */
  lastMetrics: null,
  /** The last heatmap() per run name, the last motivation(), held-out errors per run name. */
  /** @type {Record<string, Heatmap|null>} */
  heatmaps: {},
  /** @type {Motivation|null} */
  motivation: null,
  /** @type {Record<string, HeldOut>} */
  heldOut: {},
  /** Real data: the trainer's dataInfo(), the last atoms() and segment(). */
  /** @type {DataInfo|null} */
  dataInfo: null,
  /** @type {Atoms|null} */
  atoms: null,
  /** @type {Segment|null} */
  segment: null,
});

const state = {
  mod: null,
  info: null,
  trainer: null,
  running: false,
  chain: Promise.resolve(),
  pending: 0,
  tickQueued: false,
  resetQueued: false,
  run: freshRun(),
  segmentIndex: 0,
  /** The reader's file { name, bytes }, the sample files fetched so far (url → bytes), sample metadata (url → JSON). */
  file: null,
  samples: new Map(),
  meta: new Map(),
  samplesChecked: false,
  trainersCreated: 0,
  trainersFreed: 0,
  /** The preset the settings came from ('' once the reader changes one), and a pending slider restart. */
  preset: '',
  restartTimer: null,
  /** The hash this page last wrote (a hashchange to anything else is the reader's edit). */
  lastHash: '',
};

const charts = new Charts({ mse: $('chart-mse'), mmcs: $('chart-mmcs'), truth: $('chart-truth'), sparsity: $('chart-sparsity') });

/** The trainer config the settings describe (the JSON that Trainer.create takes). */
function readConfig() {
  const value = (id) => $(id).value;
  return {
    // required by the config, ignored for files; null before the package has loaded
    data: page && (page.data[value('data')] || page.data.paper),
    arch: value('arch'),
    n_saes: Number(value('n')),
    m: Number(value('m')),
    k: Number(value('k')),
    activation: value('activation'),
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

/**
 * Frees the current trainer (if any) and creates one from the settings, at step 0.
 * With "Your file…" and no file chosen yet it leaves no trainer and stops training.
 */
async function recreate() {
  state.resetQueued = false;
  if (state.trainer) {
    state.trainer.free();
    state.trainer = null;
    state.trainersFreed++;
  }
  state.run = freshRun();
  clearViews();
  showSteps();
  showPenalty(null);
  const config = readConfig();
  const source = $('data').value;
  showViewsFor(sourceKind(source));
  if (page.sources[source].kind === 'synthetic') {
    setStatus('creating the trainer…');
    state.trainer = await state.mod.Trainer.create(JSON.stringify(config));
  } else {
    showDataInfo(null);
    try {
      const file = await dataFile(source);
      if (!file) {
        state.running = false;
        setStatus('');
        $('data-info').textContent = 'Choose a file above to train on it.';
        return;
      }
      setStatus(`preparing ${file.name}…`);
      state.trainer = await state.mod.Trainer.createFromFile(JSON.stringify(config), file.name, file.bytes);
    } catch (err) {
      showDataInfo(null, err);
      throw err;
    }
  }
  state.trainersCreated++;
  state.run.dataInfo = JSON.parse(state.trainer.dataInfo());
  showDataInfo(state.run.dataInfo);
  showViewsFor(state.run.dataInfo.kind);
  setStatus('');
}

/** The bytes of a sample (fetched once) or of the reader's file, as { name, bytes }; null: no file chosen. */
async function dataFile(source) {
  if (source === 'file') return state.file;
  const { url } = page.sources[source];
  if (!state.samples.has(url)) {
    const res = await fetch(url);
    if (!res.ok) {
      markUnavailable(source);
      throw new Error(`${url}: sample not available in this build (HTTP ${res.status})`);
    }
    state.samples.set(url, new Uint8Array(await res.arrayBuffer()));
  }
  const { meta } = page.sources[source];
  if (meta && !state.meta.has(meta)) {
    const res = await fetch(meta);
    state.meta.set(meta, res.ok ? await res.json() : {});
  }
  return { name: url.split('/').pop(), bytes: state.samples.get(url) };
}

/** Trains n steps of every run, then reads metrics if a read is due (or `forceRead`). */
async function advance(n, forceRead) {
  const trainer = state.trainer;
  const t0 = performance.now();
  await trainer.step(n);
  const perStep = (performance.now() - t0) / n;
  state.run.msPerStep = state.run.msPerStep === null ? perStep : 0.7 * state.run.msPerStep + 0.3 * perStep;
  state.run.steps = trainer.steps();
  measureWallClock();
  state.run.stepsSinceRead += n;
  showSteps();
  const due = state.run.stepsSinceRead >= READ_MAX
    || (state.run.stepsSinceRead >= READ_MIN && performance.now() - state.run.lastReadAt >= READ_MIN_MS);
  if (due || forceRead) await readMetrics();
}

/** Reads metrics() and shows them everywhere; every VIEWS_EVERY reads also the views. */
async function readMetrics() {
  const m = JSON.parse(await state.trainer.metrics());
  state.run.lastMetrics = m;
  state.run.reads++;
  state.run.stepsSinceRead = 0;
  state.run.lastReadAt = performance.now();
  charts.push(m);
  renderNumbers($('numbers'), m);
  showResult();
  showPenalty(m);
  updateSelectors(m);
  if (state.run.reads % VIEWS_EVERY === 1) await refreshViews();
}

/** Index of the run named `name` in the last metrics read, or -1. */
const runIndex = (name) => (state.run.lastMetrics ? state.run.lastMetrics.runs.findIndex((r) => r.name === name) : -1);

/**
 * Re-reads the views: both runs' heatmaps of the selected pair, the motivation plot of
 * the selected run, and for real data the held-out errors of both runs, the atoms and
 * the held-out row.
 */
async function refreshViews() {
  const trainer = state.trainer;
  const m = state.run.lastMetrics;
  if (!trainer || !m) return;
  const [a, b] = $('pair').value.split('-').map(Number);
  for (const name of ['mfr', 'baseline']) {
    const r = runIndex(name);
    const canvas = $(name === 'mfr' ? 'heatmap' : 'heatmap-baseline');
    const title = `${name === 'mfr' ? 'MFR' : 'Baseline'}: SAE ${a} vs ${b}`;
    $(`heat-title-${name}`).textContent = title;
    if (r < 0) {
      state.run.heatmaps[name] = null;
      clearHeatmap(canvas);
      $(`heat-summary-${name}`).textContent = 'No baseline: compare is off.';
      $(name === 'mfr' ? 'heatmap-diag' : 'heatmap-diag-baseline').textContent = '—';
      continue;
    }
    const h = await trainer.heatmap(r, a, b);
    state.run.heatmaps[name] = h;
    const diagonal = drawHeatmap(canvas, h);
    $(name === 'mfr' ? 'heatmap-diag' : 'heatmap-diag-baseline').textContent = fmt(diagonal);
    $(`heat-summary-${name}`).textContent = heatmapSummary(h, diagonal);
  }
  const view = runIndex($('motivation-run').value) >= 0 ? $('motivation-run').value : 'mfr';
  const vr = runIndex(view);
  const hasTruth = m.runs[vr].saes.every((s) => s.truth);
  state.run.motivation = hasTruth ? JSON.parse(await trainer.motivation(vr)) : null;
  const r = drawMotivation($('motivation'), state.run.motivation, view);
  $('motivation-r').textContent = fmt(r);
  $('motivation-summary').textContent = motivationSummary(view, state.run.motivation, r);
  const info = state.run.dataInfo;
  if (info && info.kind !== 'synthetic') {
    for (const run of m.runs) state.run.heldOut[run.name] = JSON.parse(await trainer.heldOut(runIndex(run.name)));
    showResult();
  }
  const run = Math.min(Number($('run').value), m.runs.length - 1);
  if (info && info.kind === 'eeg') {
    const count = info.channels > 1 ? 6 : 8;
    state.run.atoms = JSON.parse(await trainer.atoms(run, 0, count));
    $('atoms-count').textContent = String(state.run.atoms.atoms.length);
    drawAtoms($('atoms'), state.run.atoms, info);
    $('atoms-summary').textContent = atomsSummary(state.run.atoms, info);
  }
  await refreshSegment();
}

/** A heatmap in words: its diagonal and how many matched pairs are near-identical. */
function heatmapSummary(h, diagonal) {
  let close = 0;
  for (let i = 0; i < h.m; i++) if (h.values[i * h.m + i] > 0.9) close++;
  return `Diagonal mean ${fmt(diagonal)}; ${close} of ${h.m} matched pairs have cosine above 0.9.`;
}

/** The motivation plot in words, for the run it shows. */
function motivationSummary(view, p, r) {
  if (!p) return 'No true features for this data.';
  const who = view === 'baseline' ? 'baseline (SAEs trained independently)' : 'MFR run (SAEs rewarded for agreeing)';
  const reading = r === null ? '' : r > 0.3
    ? ' Latents the other SAE shares tend to be on true features.'
    : r < -0.3 ? ' Shared latents tend to be off the true features.' : ' Sharing says little about truth here.';
  return `${p.points.length} latents of the ${who}: x = cosine to the nearest true feature, y = to the nearest latent `
    + `of the other SAE(s).${reading}`;
}

/** The atoms in words: which latents, how often they fired, their amplitude. */
function atomsSummary(a, info) {
  const parts = a.latents.map((l, j) => `latent ${l} (fired ${Number.isInteger(a.firing[j]) ? a.firing[j] : fmt(a.firing[j])}×)`);
  return `${parts.join(', ')}; ${info.channels} channel(s) × ${(info.samples_per_segment / info.sample_rate).toFixed(2)} s.`;
}

/** Re-reads the chosen held-out row (real data only) and its reconstruction by SAE 0 of the selected run. */
async function refreshSegment() {
  const trainer = state.trainer;
  const info = state.run.dataInfo;
  if (!trainer || !info || info.kind === 'synthetic') return;
  const run = state.run.lastMetrics ? Math.min(Number($('run').value), state.run.lastMetrics.runs.length - 1) : 0;
  const index = Math.max(0, Math.min(state.segmentIndex, info.held_out_rows - 1));
  state.run.segment = JSON.parse(await trainer.segment(run, 0, index));
  if (info.kind === 'eeg') drawSegment($('segment'), state.run.segment, info);
  else drawRow($('segment'), state.run.segment);
  $('segment-at').textContent = `${index + 1} of ${state.run.segment.rows}`;
  $('segment-mse').textContent = fmt(state.run.segment.mse);
  $('segment-source').textContent = rowSource(index);
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
  if (!state.trainer) return updateButtons();
  const fit = state.run.msPerStep ? Math.round(CHUNK_TARGET_MS / state.run.msPerStep) : 1;
  await advance(Math.max(1, Math.min(fit, READ_MAX - state.run.stepsSinceRead)), false);
  scheduleTick();
}

function start() {
  state.running = true;
  state.run.wall = null;
  setStatus('');
  updateButtons();
  scheduleTick();
}

function pause() {
  state.running = false;
  state.run.wall = null;
  updateButtons();
  enqueue(async () => {
    if (state.running || !state.trainer) return;
    if (state.run.stepsSinceRead > 0) await readMetrics();
    await refreshViews();
  });
}

function stepOnce() {
  if (state.running) state.running = false;
  enqueue(async () => {
    if (!state.trainer) await recreate();
    if (!state.trainer) return;
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

/** Restarts after a slider settles: one restart for a drag or a run of arrow-key presses. */
function restartSoon() {
  clearTimeout(state.restartTimer);
  state.restartTimer = setTimeout(() => {
    state.restartTimer = null;
    if (state.mod) reset();
  }, 450);
}

/** Steps per second of wall-clock time over the current running stretch (training, reads and drawing). */
function measureWallClock() {
  const now = performance.now();
  const w = state.run.wall;
  if (!state.running || !w) {
    state.run.wall = { t: now, steps: state.run.steps };
    return;
  }
  if (now - w.t >= 1000) state.run.stepsPerSecond = (state.run.steps - w.steps) / ((now - w.t) / 1000);
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
    if (!state.trainer || !state.run.lastMetrics) return;
    const run = Number($('run').value);
    const runInfo = state.run.lastMetrics.runs[run];
    for (let i = 0; i < runInfo.saes.length; i++) {
      const files = await state.trainer.exportSaelens(run, i);
      save(new Blob([files.cfg], { type: 'application/json' }), `sae_${runInfo.name}_${i}_cfg.json`);
      save(new Blob([files.weights], { type: 'application/octet-stream' }), `sae_${runInfo.name}_${i}_weights.safetensors`);
      // The export's warnings (e.g. a paper-exact SAE that SAELens runs differently) are shown, never dropped.
      if (files.warnings.length) setStatus(`SAE ${i}: ${files.warnings.join(' ')}`, true);
    }
  });
}

/** The whole training state (every run, the data position, a loaded file's rows) as one file. */
function saveCheckpoint() {
  enqueue(async () => {
    if (!state.trainer) return;
    const bytes = await state.trainer.saveCheckpoint();
    save(new Blob([bytes], { type: 'application/octet-stream' }), `mfr_checkpoint_step${state.run.steps}.safetensors`);
  });
}

/** The settings of `config` (a trainer's JSON config) shown in the controls, without restarting. */
function showConfig(config) {
  const generator = config.data && config.data.generator;
  if (state.run.dataInfo && state.run.dataInfo.kind === 'synthetic' && page.data[generator]) $('data').value = generator;
  for (const id of ['arch', 'form', 'activation']) $(id).value = config[id];
  for (const [id, key] of [['n', 'n_saes'], ['m', 'm'], ['k', 'k'], ['lambda', 'lambda'], ['warmup', 'warmup_steps'],
    ['lr', 'lr'], ['batch', 'batch'], ['seed', 'seed']]) $(id).value = String(config[key]);
  $('compare').checked = config.compare;
  syncLambdaSlider();
  state.preset = '';
  showSettings();
  writeState();
}

/** Replaces the trainer by one continuing from a checkpoint file; training pauses. */
function loadCheckpoint(file) {
  enqueue(async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    setStatus(`loading ${file.name}…`);
    const trainer = await state.mod.Trainer.fromCheckpoint(bytes);
    if (state.trainer) {
      state.trainer.free();
      state.trainersFreed++;
    }
    state.trainer = trainer;
    state.trainersCreated++;
    state.running = false;
    state.run = { ...freshRun(), steps: trainer.steps() };
    clearViews();
    state.run.dataInfo = JSON.parse(trainer.dataInfo());
    showDataInfo(state.run.dataInfo);
    showViewsFor(state.run.dataInfo.kind);
    showConfig(JSON.parse(trainer.config()));
    showSteps();
    setStatus(`continuing ${file.name} from step ${state.run.steps}`);
  });
}

function downloadCsv() {
  enqueue(async () => {
    if (!state.trainer) return;
    save(new Blob([state.trainer.metricsCsv()], { type: 'text/csv' }), 'mfr_metrics.csv');
  });
}

// ---- what the page shows besides the charts -------------------------------------------

/** Blanks every view of a trainer's numbers (a new trainer, or one loaded from a file). */
function clearViews() {
  charts.clear();
  clearNumbers($('numbers'));
  clearResult();
  for (const id of ['heatmap', 'heatmap-baseline']) clearHeatmap($(id));
  for (const id of ['heatmap-diag', 'heatmap-diag-baseline', 'motivation-r', 'segment-at', 'segment-mse']) $(id).textContent = '—';
  drawMotivation($('motivation'), null);
  clearSignal($('atoms'));
  clearSignal($('segment'));
  $('segment-source').textContent = '';
  showSteps();
  showPenalty(null);
}

/** The result card and the chart summaries from the last read (and held-out errors for real data). */
function showResult() {
  const m = state.run.lastMetrics;
  if (!m) return;
  const info = state.run.dataInfo;
  const summary = renderResult(m, {
    heldOut: info && info.kind !== 'synthetic' ? state.run.heldOut : null,
    warmup: Number($('warmup').value),
    truthCeiling: info && info.true_features ? Math.min(1, Number($('m').value) / info.true_features) : null,
  });
  for (const [id, text] of Object.entries(summary.captions)) $(id).textContent = text;
}

/** Where held-out row `index` of the LM sample comes from: page, window and token position (from its .json). */
function rowSource(index) {
  const info = state.run.dataInfo;
  const meta = page.sources[$('data').value].meta && state.meta.get(page.sources[$('data').value].meta);
  if (!info || info.kind !== 'activations' || !meta || !meta.corpus) return '';
  const perWindow = meta.ctx - 1;
  const row = info.train_rows + index;
  const window = Math.floor(row / perWindow);
  const position = (row % perWindow) + 1;
  const start = meta.corpus.window_starts[window];
  if (!start) return '';
  const where = `Row ${row} of ${meta.rows}: token ${start[1] + position} of ${start[0]} (position ${position} of window ${window}, `
    + `${meta.ctx} tokens), ${meta.hook} of layer ${meta.layer}/${meta.n_layer} of ${meta.model.split(' (')[0]}`;
  const tokens = meta.corpus.window_tokens && meta.corpus.window_tokens[window];
  if (!tokens) return `${where}.`;
  const before = tokens.slice(Math.max(0, position - 8), position).join('');
  const after = tokens.slice(position + 1, position + 5).join('');
  return `${where}: “…${before}[${tokens[position]}]${after}…” (the bracketed token's activation: it depends on that token and those before it).`;
}

function setStatus(text, isError = false) {
  const el = $('status');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

function showSteps() {
  $('steps').textContent = String(state.run.steps);
  const rate = state.run.stepsPerSecond;
  $('speed').textContent = rate ? `${rate.toFixed(rate < 10 ? 1 : 0)} steps/s` : '';
}

function updateButtons() {
  const ready = state.mod !== null;
  $('start').disabled = !ready;
  $('start').textContent = state.running ? 'Pause' : (state.run.steps > 0 ? 'Resume' : 'Start');
  $('step').disabled = !ready;
  $('reset').disabled = !ready;
  $('download-saes').disabled = !ready || !state.run.lastMetrics;
  $('download-csv').disabled = !ready || !state.run.lastMetrics;
  $('save-checkpoint').disabled = !ready || !state.trainer;
  $('load-checkpoint').disabled = !ready;
}

/** The settings' values where the page refers to them (slider labels, beside the formulas). */
function showSettings() {
  const c = readConfig();
  $('n-out').textContent = c.n_saes;
  $('k-out').textContent = c.k;
  $('live-k').textContent = c.k;
  $('live-m').textContent = c.m;
  $('live-n').textContent = c.n_saes;
  $('live-form').textContent = c.form;
  $('live-lambda').textContent = lambdaText(c.lambda);
  $('live-T').textContent = c.warmup_steps;
  $('data-desc').textContent = page ? page.sources[$('data').value].desc : '';
}

/** λ with two decimals, three below 0.1 (the activation default is 0.005). */
const lambdaText = (x) => x.toFixed(x > 0 && x < 0.1 ? 3 : 2);

/** The kind of data a source gives: 'synthetic', 'eeg', 'activations', or null (no file chosen). */
function sourceKind(source) {
  if (source !== 'file') return page.sources[source].kind;
  return state.file ? kindOfFile(state.file.name) : null;
}

/** Sets the training settings that suit data of `kind` (the reader can change them after). */
function applyDefaults(kind) {
  if (!page || !page.defaults[kind]) return;
  const d = { ...page.defaults[kind], ...(state.info && state.info.is_software ? page.software_defaults[kind] : {}) };
  $('m').value = String(d.m);
  fitK();
  $('k').value = String(d.k);
  $('batch').value = String(d.batch);
  $('lambda').value = String(d.lambda);
  $('lr').value = String(d.lr);
  $('warmup').value = String(d.warmup);
  syncLambdaSlider();
}

/** Keeps k ≤ m on the k slider. */
function fitK() {
  const k = $('k');
  k.max = String(Math.min(32, Number($('m').value)));
  if (Number(k.value) > Number(k.max)) k.value = k.max;
}

/** One line under the data select: what the trainer loaded (info), or why it could not (err). */
function showDataInfo(info, err = null) {
  const el = $('data-info');
  el.classList.toggle('error', Boolean(err));
  if (err) {
    el.textContent = err && err.message ? err.message : String(err);
    return;
  }
  if (!info) {
    el.textContent = 'loading…';
    return;
  }
  const name = info.name ? `${info.name} · ` : '';
  if (info.kind === 'eeg') {
    const ch = info.channels === 1 ? '1 channel' : `${info.channels} channels`;
    el.textContent = `${name}EEG · ${ch} × ${info.samples_per_segment} samples · ${info.train_rows} training / `
      + `${info.held_out_rows} held-out segments`;
  } else if (info.kind === 'activations') {
    el.textContent = `${name}activations · d = ${info.d} · ${info.train_rows} training / ${info.held_out_rows} held-out rows`;
  } else {
    el.textContent = `synthetic · d = ${info.d} · ${info.true_features} true features`;
  }
  if (info.held_out_rows) {
    $('segment-index').max = String(info.held_out_rows - 1);
    state.segmentIndex = Math.min(state.segmentIndex, info.held_out_rows - 1);
    $('segment-index').value = String(state.segmentIndex);
  }
}

/** Shows the views that data of `kind` has: truth charts for synthetic data, EEG atoms, held-out rows. */
function showViewsFor(kind) {
  const real = kind !== 'synthetic';
  for (const id of ['truth-figure', 'motivation-figure']) {
    $(id).classList.toggle('no-truth-data', real);
    $(id).querySelector('.no-truth').hidden = !real;
  }
  $('atoms-figure').hidden = kind !== 'eeg';
  $('segment-figure').hidden = kind !== 'eeg' && kind !== 'activations';
  for (const el of document.querySelectorAll('.segment-unit')) el.textContent = kind === 'eeg' ? 'segment' : 'row';
  const run = $('run').selectedOptions[0]?.textContent || 'mfr';
  for (const el of document.querySelectorAll('.run-name')) el.textContent = run;
  $('segment-caption').textContent = kind === 'eeg'
    ? `Grey: a 1 s segment (all channels, band-passed, each channel z-scored) from the held-out last 20 % of the recording, `
      + `which no SAE trained on; orange: its reconstruction by SAE 0 of the ${run} run. MSE over channels × samples.`
    : `Grey: a held-out row of activations (scaled to mean norm √d) over its d dimensions, which no SAE trained on; `
      + `orange: its reconstruction by SAE 0 of the ${run} run. MSE over the d dimensions.`;
}

/** Greys out a sample whose file this build of the page does not have. */
function markUnavailable(source) {
  const option = $('data').querySelector(`option[value="${source}"]`);
  if (option.disabled) return;
  option.disabled = true;
  option.textContent += ' — sample not available in this build';
}

/** Asks the server (HEAD) for each sample file once at start-up; the missing ones are disabled. */
async function checkSamples() {
  await Promise.all(Object.entries(page.sources).filter(([, s]) => s.url).map(async ([source, s]) => {
    let ok = false;
    try {
      ok = (await fetch(s.url, { method: 'HEAD' })).ok;
    } catch {
      ok = false;
    }
    if (!ok) markUnavailable(source);
  }));
  state.samplesChecked = true;
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

// ---- λ on a log scale, the address bar, presets ----------------------------------------

/** The λ slider runs 0..100: 0 is λ = 0, 1..100 is 10^-3 … 10^1 on a log scale. */
const LAMBDA_DECADES = 4;
const lambdaFromSlider = (v) => (v <= 0 ? 0 : Number((10 ** (-3 + (LAMBDA_DECADES * v) / 100)).toPrecision(2)));
const sliderFromLambda = (x) => (x <= 0 ? 0 : Math.max(1, Math.min(100, Math.round((100 * (Math.log10(x) + 3)) / LAMBDA_DECADES))));

function syncLambdaSlider() {
  $('lambda-slider').value = String(sliderFromLambda(Number($('lambda').value)));
}

/** The settings as the address bar holds them (string values, the control ids as keys). */
function currentState() {
  const out = {};
  for (const id of URL_FIELDS) out[id] = $(id).value;
  out.compare = $('compare').checked ? '1' : '0';
  out.view = $('motivation-run').value;
  if (state.preset) out.preset = state.preset;
  return out;
}

/** The controls (and their ids) that the address bar stores. */
const URL_FIELDS = ['data', 'arch', 'activation', 'n', 'm', 'k', 'lambda', 'form', 'warmup', 'lr', 'batch', 'seed'];

function writeState() {
  state.lastHash = writeHash(currentState());
  $('preset').value = state.preset;
  const preset = presetById(state.preset);
  $('preset-says').hidden = !preset;
  $('preset-says').innerHTML = preset ? `<strong>What you should see:</strong> ${preset.says}` : '';
}

/** Sets the controls from address-bar values `h` (unknown keys and values are ignored). */
function applyState(h) {
  if (h.data && page.sources[h.data]) {
    $('data').value = h.data;
    $('file-label').hidden = h.data !== 'file';
  }
  for (const id of URL_FIELDS.filter((f) => f !== 'data' && h[f] !== undefined)) {
    const el = $(id);
    if (el.tagName === 'SELECT' && ![...el.options].some((o) => o.value === h[id])) continue;
    if (el.type === 'number' && !Number.isFinite(Number(h[id]))) continue;
    el.value = h[id];
  }
  fitK();
  if (h.k !== undefined) $('k').value = h.k;
  if (h.compare !== undefined) $('compare').checked = h.compare !== '0';
  if (h.view === 'mfr' || h.view === 'baseline') $('motivation-run').value = h.view;
  state.preset = presetById(h.preset) ? h.preset : '';
  syncLambdaSlider();
  showSettings();
}

/** The settings of preset `id` over the defaults of its data's kind. */
function presetState(id) {
  const p = presetById(id);
  const kind = page.sources[p.settings.data].kind;
  const d = { ...page.defaults[kind], ...(state.info && state.info.is_software ? page.software_defaults[kind] : {}) };
  const base = {
    data: p.settings.data, arch: 'tied', n: '2', m: String(d.m), k: String(d.k), lambda: String(d.lambda), form: 'match',
    warmup: String(d.warmup), lr: String(d.lr), batch: String(d.batch), seed: '0', compare: '1', view: 'baseline',
  };
  const own = Object.fromEntries(Object.entries(p.settings).map(([k, v]) => [k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v)]));
  return { ...base, ...own, preset: id };
}

/** The address bar's state on load or after the reader edits it: a bare `#preset=id` is expanded. */
function stateFromHash() {
  const h = readHash();
  if (h.preset && presetById(h.preset) && Object.keys(h).length === 1) return presetState(h.preset);
  return h;
}

async function copyLink() {
  const url = location.href;
  try {
    await navigator.clipboard.writeText(url);
    setStatus('link copied');
  } catch {
    window.prompt('Copy this link:', url);
  }
}

// ---- start-up --------------------------------------------------------------------------

function bindControls() {
  const form = $('controls');
  form.addEventListener('submit', (e) => e.preventDefault());
  form.addEventListener('input', (e) => {
    if (e.target === $('lambda-slider')) $('lambda').value = String(lambdaFromSlider(Number($('lambda-slider').value)));
    showSettings();
  });
  $('m').addEventListener('change', fitK);
  $('data').addEventListener('change', () => {
    $('file-label').hidden = $('data').value !== 'file';
    applyDefaults(sourceKind($('data').value));
  });
  $('file').addEventListener('change', async () => {
    const chosen = $('file').files[0];
    if (!chosen) return;
    state.file = { name: chosen.name, bytes: new Uint8Array(await chosen.arrayBuffer()) };
    applyDefaults(kindOfFile(chosen.name));
    showSettings();
    if (state.mod) reset();
  });
  form.addEventListener('change', (e) => {
    if (e.target === $('file')) return; // handled above, once its bytes are read
    if (e.target === $('lambda')) syncLambdaSlider();
    state.preset = '';
    showSettings();
    writeState();
    if (e.target.type === 'range') restartSoon();
    else if (state.mod) reset();
  });
  $('start').addEventListener('click', () => (state.running ? pause() : start()));
  $('step').addEventListener('click', stepOnce);
  $('reset').addEventListener('click', reset);
  $('copy-link').addEventListener('click', copyLink);
  $('preset').innerHTML = '<option value="">— custom settings —</option>'
    + PRESETS.map((p) => `<option value="${p.id}">${p.title}</option>`).join('');
  $('preset').addEventListener('change', () => {
    if (!$('preset').value) return;
    applyState(presetState($('preset').value));
    writeState();
    if (state.mod) reset();
  });
  window.addEventListener('hashchange', () => {
    if (location.hash === state.lastHash) return;
    applyState(stateFromHash());
    writeState();
    if (state.mod) reset();
  });
  $('download-saes').addEventListener('click', downloadSaes);
  $('download-csv').addEventListener('click', downloadCsv);
  $('save-checkpoint').addEventListener('click', saveCheckpoint);
  $('load-checkpoint').addEventListener('change', () => {
    const file = $('load-checkpoint').files[0];
    if (file) loadCheckpoint(file);
    $('load-checkpoint').value = '';
  });
  $('pair').addEventListener('change', () => enqueue(refreshViews));
  $('motivation-run').addEventListener('change', () => {
    writeState();
    enqueue(refreshViews);
  });
  $('run').addEventListener('change', () => {
    enqueue(refreshViews);
    showViewsFor(state.run.dataInfo ? state.run.dataInfo.kind : sourceKind($('data').value));
  });
  const pickSegment = (index) => {
    state.segmentIndex = Math.max(0, Math.min(index, Number($('segment-index').max)));
    $('segment-index').value = String(state.segmentIndex);
    enqueue(refreshSegment);
  };
  $('segment-index').addEventListener('change', () => pickSegment(Number($('segment-index').value)));
  $('segment-prev').addEventListener('click', () => pickSegment(state.segmentIndex - 1));
  $('segment-next').addEventListener('click', () => pickSegment(state.segmentIndex + 1));
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
  page = JSON.parse(mod.pageDefaults());
  checkSamples();
  showSettings();
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
  applyState(stateFromHash());
  writeState();
  updateButtons();
  reset();
}

window.__mfr = {
  get lastMetrics() { return state.run.lastMetrics; },
  steps: () => state.run.steps,
  get running() { return state.running; },
  /** True when no trainer call is queued or in flight. */
  get idle() { return state.pending === 0 && !state.tickQueued; },
  get trainersCreated() { return state.trainersCreated; },
  get trainersFreed() { return state.trainersFreed; },
  get reads() { return state.run.reads; },
  /** The MFR run's last heatmap, its typed arrays as plain arrays (for the test to read). */
  get heatmap() {
    const h = state.run.heatmaps.mfr;
    return h ? { m: h.m, rows: Array.from(h.rows), cols: Array.from(h.cols), values: Array.from(h.values) } : null;
  },
  get heldOut() { return state.run.heldOut; },
  get stepsPerSecond() { return state.run.stepsPerSecond; },
  get preset() { return state.preset; },
  get motivation() { return state.run.motivation; },
  get dataInfo() { return state.run.dataInfo; },
  get atoms() { return state.run.atoms; },
  get segment() { return state.run.segment; },
  get samplesChecked() { return state.samplesChecked; },
  get adapter() { return state.info || null; },
  chartData: () => charts.data(),
  config: readConfig,
};

main();
