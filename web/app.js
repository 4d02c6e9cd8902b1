// The page's controller: loads the wasm package, shows the adapter, turns the settings
// into a trainer config, and drives training in chunks between animation frames.
// Every call into the trainer goes through one promise chain (`enqueue`), so no two
// trainer calls ever overlap and pause / step / reset / a settings change are safe at
// any moment. Drawing lives in js/ (charts, heatmap, motivation plot, numbers panel,
// the EEG / activation views of real data).
//
// `?mock=1` loads web/dev/mock_pkg.js instead of the real pkg (page development only).

import { fmt } from './js/format.js';
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

/** The data generators, at sizes a software adapter trains at a readable pace. */
const DATA = {
  paper: { generator: 'paper', d: 32, n_features: 64, n_groups: 4, group_size: 16, active: 4, decay: 0.99 },
  sharkey: { generator: 'sharkey', d: 32, n_features: 64, mean_active: 4, decay: 0.99, pair_correlation: 0 },
};

/**
 * The data sources of the select: a generator, a sample file served beside the page, or
 * the reader's own file. `kind` picks the settings (DEFAULTS) and the views shown.
 */
const SOURCES = {
  paper: {
    kind: 'synthetic',
    desc: 'd = 32; 64 true features (N(0,1) directions) in 4 groups of 16; each point picks a group and 4 of its features, weights U[0,1).',
  },
  sharkey: {
    kind: 'synthetic',
    desc: 'd = 32; 64 unit-norm true features, feature i active with probability ∝ 0.99^i, 4 active on average.',
  },
  'eeg-eyes': {
    kind: 'eeg',
    url: 'samples/eeg/eyes_open_shut.edf',
    desc: 'One real recording, 14 scalp channels, eyes open and shut. As in the paper: band-pass 0.5–45 Hz, 1 s segments, '
      + 'each channel z-scored; a segment starts every 32 samples; the last 20 % of the recording is held out.',
  },
  'eeg-scp1': {
    kind: 'eeg',
    url: 'samples/eeg/scp1_channel0.edf',
    desc: 'Slow cortical potentials (BCI Competition II), the one genuine channel. Same preprocessing: 0.5–45 Hz, 1 s '
      + 'segments z-scored, a segment every 32 samples, the last 20 % held out.',
  },
  lm: {
    kind: 'activations',
    url: 'samples/lm/smollm2_135m_resid.npy',
    desc: 'Residual-stream activations of a real language model on real text, one row per token, scaled to mean row norm '
      + '√d; the last 20 % of the rows are held out.',
  },
  file: {
    kind: null, // from the file's name: .edf is EEG, .npy / .safetensors activations
    desc: 'An EDF/EDF+ recording (EEG preprocessing as for the samples) or activations [N, d] as .npy (f32/f16, C order) or '
      + '.safetensors (one 2-D tensor). The file never leaves this tab.',
  },
};

/** Settings that suit each kind of data on a slow adapter, applied when the data source changes. */
const DEFAULTS = {
  synthetic: { m: 64, k: 4, batch: 128, lambda: 1, lr: 0.01 },
  eeg: { m: 128, k: 6, batch: 32, lambda: 0.5, lr: 0.001 },
  activations: { m: 256, k: 6, batch: 32, lambda: 0.005, lr: 0.001 },
};

const kindOfFile = (name) => (name.toLowerCase().endsWith('.edf') ? 'eeg' : 'activations');

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
  /** Real data: the trainer's dataInfo(), the last atoms() and segment(), the held-out row shown. */
  dataInfo: null,
  atoms: null,
  segment: null,
  segmentIndex: 0,
  /** The reader's file { name, bytes } and the sample files fetched so far (url → bytes). */
  file: null,
  samples: new Map(),
  samplesChecked: false,
  trainersCreated: 0,
  trainersFreed: 0,
};

const charts = new Charts({ mse: $('chart-mse'), mmcs: $('chart-mmcs'), truth: $('chart-truth'), sparsity: $('chart-sparsity') });

/** The trainer config the settings describe (the JSON that Trainer.create takes). */
function readConfig() {
  const value = (id) => $(id).value;
  return {
    data: DATA[value('data')] || DATA.paper, // required by the config, ignored for files
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
  Object.assign(state, {
    steps: 0, stepsSinceRead: 0, reads: 0, msPerStep: null, lastMetrics: null, heatmap: null, motivation: null,
    dataInfo: null, atoms: null, segment: null,
  });
  charts.clear();
  clearNumbers($('numbers'));
  clearHeatmap($('heatmap'));
  $('heatmap-diag').textContent = '—';
  $('motivation-r').textContent = '—';
  drawMotivation($('motivation'), null);
  clearSignal($('atoms'));
  clearSignal($('segment'));
  $('segment-at').textContent = '—';
  $('segment-mse').textContent = '—';
  showSteps();
  showPenalty(null);
  const config = readConfig();
  const source = $('data').value;
  showViewsFor(sourceKind(source));
  if (SOURCES[source].kind === 'synthetic') {
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
  state.dataInfo = JSON.parse(state.trainer.dataInfo());
  showDataInfo(state.dataInfo);
  showViewsFor(state.dataInfo.kind);
  setStatus('');
}

/** The bytes of a sample (fetched once) or of the reader's file, as { name, bytes }; null: no file chosen. */
async function dataFile(source) {
  if (source === 'file') return state.file;
  const { url } = SOURCES[source];
  if (!state.samples.has(url)) {
    const res = await fetch(url);
    if (!res.ok) {
      markUnavailable(source);
      throw new Error(`${url}: sample not available in this build (HTTP ${res.status})`);
    }
    state.samples.set(url, new Uint8Array(await res.arrayBuffer()));
  }
  return { name: url.split('/').pop(), bytes: state.samples.get(url) };
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
  if (state.dataInfo && state.dataInfo.kind === 'eeg') {
    const count = state.dataInfo.channels > 1 ? 6 : 8;
    state.atoms = JSON.parse(await trainer.atoms(run, 0, count));
    $('atoms-count').textContent = String(state.atoms.atoms.length);
    drawAtoms($('atoms'), state.atoms, state.dataInfo);
  }
  await refreshSegment();
}

/** Re-reads the chosen held-out row (real data only) and its reconstruction by SAE 0 of the selected run. */
async function refreshSegment() {
  const trainer = state.trainer;
  const info = state.dataInfo;
  if (!trainer || !info || info.kind === 'synthetic') return;
  const run = state.lastMetrics ? Math.min(Number($('run').value), state.lastMetrics.runs.length - 1) : 0;
  const index = Math.max(0, Math.min(state.segmentIndex, info.held_out_rows - 1));
  state.segment = JSON.parse(await trainer.segment(run, 0, index));
  if (info.kind === 'eeg') drawSegment($('segment'), state.segment, info);
  else drawRow($('segment'), state.segment);
  $('segment-at').textContent = `${index + 1} of ${state.segment.rows}`;
  $('segment-mse').textContent = fmt(state.segment.mse);
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

/** The whole training state (every run, the data position, a loaded file's rows) as one file. */
function saveCheckpoint() {
  enqueue(async () => {
    if (!state.trainer) return;
    const bytes = await state.trainer.saveCheckpoint();
    save(new Blob([bytes], { type: 'application/octet-stream' }), `mfr_checkpoint_step${state.steps}.safetensors`);
  });
}

/** The settings of `config` (a trainer's JSON config) shown in the controls, without restarting. */
function showConfig(config) {
  const generator = config.data && config.data.generator;
  if (state.dataInfo && state.dataInfo.kind === 'synthetic' && DATA[generator]) $('data').value = generator;
  for (const id of ['arch', 'form', 'activation']) $(id).value = config[id];
  for (const [id, key] of [['n', 'n_saes'], ['m', 'm'], ['k', 'k'], ['lambda', 'lambda'], ['warmup', 'warmup_steps'],
    ['lr', 'lr'], ['batch', 'batch'], ['seed', 'seed']]) $(id).value = String(config[key]);
  $('compare').checked = config.compare;
  showSettings();
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
    Object.assign(state, {
      steps: trainer.steps(), stepsSinceRead: 0, reads: 0, msPerStep: null, lastMetrics: null, heatmap: null,
      motivation: null, atoms: null, segment: null,
    });
    charts.clear();
    clearNumbers($('numbers'));
    state.dataInfo = JSON.parse(trainer.dataInfo());
    showDataInfo(state.dataInfo);
    showViewsFor(state.dataInfo.kind);
    showConfig(JSON.parse(trainer.config()));
    showSteps();
    setStatus(`continuing ${file.name} from step ${state.steps}`);
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
  $('save-checkpoint').disabled = !ready || !state.trainer;
  $('load-checkpoint').disabled = !ready;
}

/** The settings' values where the page refers to them (slider labels, beside the formulas). */
function showSettings() {
  const c = readConfig();
  $('n-out').textContent = c.n_saes;
  $('k-out').textContent = c.k;
  $('lambda-out').textContent = lambdaText(c.lambda);
  $('live-k').textContent = c.k;
  $('live-m').textContent = c.m;
  $('live-n').textContent = c.n_saes;
  $('live-form').textContent = c.form;
  $('live-lambda').textContent = lambdaText(c.lambda);
  $('live-T').textContent = c.warmup_steps;
  $('data-desc').textContent = SOURCES[$('data').value].desc;
}

/** λ with two decimals, three below 0.1 (the activation default is 0.005). */
const lambdaText = (x) => x.toFixed(x > 0 && x < 0.1 ? 3 : 2);

/** The kind of data a source gives: 'synthetic', 'eeg', 'activations', or null (no file chosen). */
function sourceKind(source) {
  if (source !== 'file') return SOURCES[source].kind;
  return state.file ? kindOfFile(state.file.name) : null;
}

/** Sets the training settings that suit data of `kind` (the reader can change them after). */
function applyDefaults(kind) {
  const d = DEFAULTS[kind];
  if (!d) return;
  $('m').value = String(d.m);
  fitK();
  $('k').value = String(d.k);
  $('batch').value = String(d.batch);
  $('lambda').value = String(d.lambda);
  $('lr').value = String(d.lr);
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
      + `which no SAE trained on; blue: its reconstruction by SAE 0 of the ${run} run. MSE over channels × samples.`
    : `Grey: a held-out row of activations (scaled to mean norm √d) over its d dimensions, which no SAE trained on; `
      + `blue: its reconstruction by SAE 0 of the ${run} run. MSE over the d dimensions.`;
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
  await Promise.all(Object.entries(SOURCES).filter(([, s]) => s.url).map(async ([source, s]) => {
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

// ---- start-up --------------------------------------------------------------------------

function bindControls() {
  const form = $('controls');
  form.addEventListener('submit', (e) => e.preventDefault());
  form.addEventListener('input', showSettings);
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
    showSettings();
    if (state.mod) reset();
  });
  $('start').addEventListener('click', () => (state.running ? pause() : start()));
  $('step').addEventListener('click', stepOnce);
  $('reset').addEventListener('click', reset);
  $('download-saes').addEventListener('click', downloadSaes);
  $('download-csv').addEventListener('click', downloadCsv);
  $('save-checkpoint').addEventListener('click', saveCheckpoint);
  $('load-checkpoint').addEventListener('change', () => {
    const file = $('load-checkpoint').files[0];
    if (file) loadCheckpoint(file);
    $('load-checkpoint').value = '';
  });
  for (const id of ['run', 'pair']) $(id).addEventListener('change', () => enqueue(refreshViews));
  $('run').addEventListener('change', () => showViewsFor(state.dataInfo ? state.dataInfo.kind : sourceKind($('data').value)));
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
  checkSamples();
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
  get dataInfo() { return state.dataInfo; },
  get atoms() { return state.atoms; },
  get segment() { return state.segment; },
  get samplesChecked() { return state.samplesChecked; },
  get adapter() { return state.info || null; },
  chartData: () => charts.data(),
  config: readConfig,
};

main();
