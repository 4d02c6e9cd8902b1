// End-to-end test of the demo page (web/) in headless Chromium with WebGPU
// (SwiftShader when there is no GPU). Run from the repository root:
//   (cd web && npm ci) && bash scripts/web.sh build && node --test tests/e2e/
// It serves web/ itself on 127.0.0.1, drives Debian's chromium through playwright-core
// (CHROMIUM overrides the path; no browser download; both in harness.mjs), and saves screenshots to
// $ARTIFACTS_DIR/page.png and eeg.png (default target/artifacts/).
// Tests 3 and 4 use the samples under web/samples/ (the LM sample only where this build has it).
// MFR_E2E_QUERY='?mock=1' runs it against web/dev/mock_pkg.js (page development only).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS, WEB, launch, openPage as open, pauseAndSettle } from './harness.mjs';

const { fmt, pct } = await import(new URL('../../web/js/format.js', import.meta.url));

/** SwiftShader trains the default config at a few steps per second on 2 cores. */
const TRAIN_TIMEOUT_MS = 240_000;
const STEPS_WANTED = 50;
const ROUNDS = 20;
const MB = 1024 * 1024;
/** Steps each real-data sample trains for in test 3, and how long that may take (m = 576 on the LM sample is slow). */
const REAL_STEPS = 30;
const REAL_TRAIN_TIMEOUT_MS = 480_000;

let browser;
let context;

before(async () => {
  browser = await launch();
  context = browser.context;
});

after(async () => {
  await browser?.close();
});

/** Opens the page at its defaults (an empty hash). */
const openPage = () => open(browser);

/** Opens the collapsed "Files" box (downloads, checkpoints). */
const openFiles = (page) => page.locator('details.files').evaluate((d) => { d.open = true; });

/** Waits until the trainer has done `n` more steps than now (same trainer generation). */
async function waitForSteps(page, n, timeout = TRAIN_TIMEOUT_MS) {
  const from = await page.evaluate(() => ({ gen: window.__mfr.trainersCreated, steps: window.__mfr.steps() }));
  await page.waitForFunction(({ gen, steps, n }) => !window.__mfr.running || (window.__mfr.trainersCreated > gen
    ? window.__mfr.steps() >= n : window.__mfr.steps() >= steps + n), { ...from, n }, { timeout, polling: 100 });
  assert.ok(await page.evaluate(() => window.__mfr.running),
    `training stopped by itself: ${await page.getByTestId('status').textContent()}`);
}

/** Sets the λ slider as a reader would (input, then change: the page restarts the run). */
async function setLambda(page, value) {
  await page.getByTestId('lambda').evaluate((el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input', { bubbles: true }));
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, value);
}

test('a compare-mode run trains, and the page shows the trainer\'s numbers', { timeout: 600_000 }, async () => {
  const t0 = Date.now();
  const { page, problems } = await openPage();
  assert.equal(await page.getByTestId('data').inputValue(), 'paper');
  assert.ok(await page.getByTestId('compare').isChecked(), 'compare mode is on by default');

  await page.getByTestId('start').click();
  await page.waitForFunction((n) => (window.__mfr.lastMetrics?.step ?? 0) >= n || !window.__mfr.running, STEPS_WANTED,
    { timeout: TRAIN_TIMEOUT_MS, polling: 250 });
  await pauseAndSettle(page);
  const trainSeconds = (Date.now() - t0) / 1000;

  const { metrics, charts, steps } = await page.evaluate(() => ({
    metrics: window.__mfr.lastMetrics, charts: window.__mfr.chartData(), steps: window.__mfr.steps(),
  }));
  assert.deepEqual(metrics.runs.map((r) => r.name), ['mfr', 'baseline']);
  assert.equal(metrics.step, steps, 'pausing reads the metrics of the last step');

  // Every chart holds finite numbers only, for at least two reads.
  for (const id of ['mse', 'mmcs', 'truth', 'sparsity']) {
    const chart = charts[id];
    assert.ok(chart, `chart ${id} exists`);
    const [xs, ...series] = chart.data;
    assert.ok(xs.length >= 2, `chart ${id} has ${xs.length} points`);
    series.forEach((ys, i) => ys.forEach((y, j) => assert.ok(Number.isFinite(y),
      `chart ${id}, series "${chart.labels[i]}", point ${j} (step ${xs[j]}): ${y}`)));
  }
  // Losses fall: every SAE's MSE at the last read is below its MSE at the first read.
  charts.mse.data.slice(1).forEach((ys, i) => assert.ok(ys.at(-1) < ys[0],
    `MSE of ${charts.mse.labels[i]} went from ${ys[0]} to ${ys.at(-1)}`));

  // The numbers shown are the trainer's (the last metrics() JSON, formatted by format.js).
  const shown = (id) => page.getByTestId(id).textContent();
  assert.equal(await shown('steps'), String(steps));
  assert.equal(await shown('metrics-step'), String(metrics.step));
  for (const run of metrics.runs) {
    for (const [i, s] of run.saes.entries()) {
      assert.equal(await shown(`mse-${run.name}-${i}`), fmt(s.mse));
      assert.equal(await shown(`fvu-${run.name}-${i}`), fmt(s.fvu));
      assert.equal(await shown(`l0-${run.name}-${i}`), fmt(s.l0));
      assert.equal(await shown(`dead-${run.name}-${i}`), pct(s.dead_fraction));
      assert.equal(await shown(`truth-${run.name}-${i}`), fmt(s.truth.matched));
    }
    for (const p of run.pairs) {
      assert.equal(await shown(`mmcs-${run.name}-${p.a}-${p.b}`), fmt(p.matched));
      assert.equal(await shown(`maxab-${run.name}-${p.a}-${p.b}`), fmt(p.max_ab));
    }
    assert.equal(await shown(`lmfr-${run.name}`), fmt(run.saes[0].mfr_loss));
  }
  assert.equal(await shown('live-lmfr'), fmt(metrics.runs[0].saes[0].mfr_loss));

  // The heatmap and the motivation plot were drawn from the trainer.
  const views = await page.evaluate(() => ({ heatmap: window.__mfr.heatmap, motivation: window.__mfr.motivation }));
  assert.equal(views.heatmap.values.length, views.heatmap.m ** 2);
  assert.ok(views.heatmap.values.every(Number.isFinite));
  assert.ok(views.motivation.points.length > 0);

  // Downloads: the metrics CSV and, for the MFR run, each SAE in the SAELens format.
  await openFiles(page);
  const [csv] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-csv').click()]);
  const csvText = await readFile(await csv.path(), 'utf8');
  assert.ok(csvText.split('\n').length > 2, 'the CSV has a header and rows');
  const names = [];
  const done = new Promise((ok) => page.on('download', (d) => names.push(d.suggestedFilename()) === 4 && ok()));
  await page.getByTestId('download-saes').click();
  await done;
  assert.deepEqual(names.sort(), ['sae_mfr_0_cfg.json', 'sae_mfr_0_weights.safetensors', 'sae_mfr_1_cfg.json',
    'sae_mfr_1_weights.safetensors']);

  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, 'page.png'), fullPage: true });
  assert.deepEqual(problems, []);
  console.log(`# test 1: ${steps} steps, ${metrics.runs[0].saes.length} SAEs x ${metrics.runs.length} runs, ` +
    `trained in ${trainSeconds.toFixed(1)} s; adapter ${await shown('adapter')}`);
  await page.close();
});

test('pause, resume, settings changes and reset, 20 times: no crash, no leak', { timeout: 900_000 }, async () => {
  const t0 = Date.now();
  const { page, problems } = await openPage();
  const cdp = await context.newCDPSession(page);
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    return (await cdp.send('Runtime.getHeapUsage')).usedSize;
  };
  /** One settings change per round, in turn; each re-creates the trainer. */
  const changes = [
    (r) => setLambda(page, [0.5, 2, 1][r % 3]),
    (r) => page.getByTestId('k').evaluate((el, v) => {
      el.value = v;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }, String([2, 6, 4][r % 3])),
    (r) => page.getByTestId('m').selectOption(['32', '64'][r % 2]),
    () => page.getByTestId('compare').click(),
  ];

  const heaps = [];
  await page.getByTestId('start').click();
  for (let round = 0; round < ROUNDS; round++) {
    await waitForSteps(page, 2);
    await page.getByTestId('start').click(); // pause
    assert.equal(await page.evaluate(() => window.__mfr.running), false);
    await page.getByTestId('start').click(); // resume
    await waitForSteps(page, 1);
    await changes[round % changes.length](Math.floor(round / changes.length));
    await page.getByTestId('reset').click();
    await waitForSteps(page, 2); // a new trainer keeps stepping
    assert.deepEqual(problems, [], `round ${round}`);
    assert.equal(await page.getByTestId('status').textContent(), '', `round ${round}`);
    heaps.push(await heap());
  }
  await pauseAndSettle(page);
  const counts = await page.evaluate(() => ({ created: window.__mfr.trainersCreated, freed: window.__mfr.trainersFreed }));
  assert.equal(counts.freed, counts.created - 1, 'every trainer but the current one was freed');
  assert.ok(counts.created > ROUNDS, `${counts.created} trainers created`);
  const limit = 2 * heaps[0] + 10 * MB;
  assert.ok(heaps.at(-1) < limit, `JS heap ${(heaps.at(-1) / MB).toFixed(1)} MB after round ${ROUNDS}, ` +
    `${(heaps[0] / MB).toFixed(1)} MB after round 1`);
  assert.deepEqual(problems, []);
  console.log(`# test 2: ${ROUNDS} rounds, ${counts.created} trainers in ${((Date.now() - t0) / 1000).toFixed(1)} s; ` +
    `JS heap ${(heaps[0] / MB).toFixed(2)} MB after round 1, ${(heaps.at(-1) / MB).toFixed(2)} MB after round ${ROUNDS}`);
  await page.close();
});

/** Whether any pixel of canvas `testid` was drawn. */
const inked = (page, testid) => page.getByTestId(testid).evaluate((c) => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
});

/**
 * Selects data source `source`, waits for its trainer, trains until a metrics read at
 * step >= REAL_STEPS, pauses, and checks the charts and the views of real data.
 * Returns what it saw, for the caller's own checks and the log line.
 */
async function trainOnSample(page, source) {
  const t0 = Date.now();
  const gen = await page.evaluate(() => window.__mfr.trainersCreated);
  await page.getByTestId('data').selectOption(source);
  await page.waitForFunction((gen) => (window.__mfr.trainersCreated > gen && window.__mfr.idle)
    || document.getElementById('data-info').classList.contains('error'), gen, { timeout: 180_000, polling: 100 });
  const infoLine = await page.getByTestId('data-info').textContent();
  assert.equal(await page.getByTestId('data-info').getAttribute('class'), 'hint data-info', `loading failed: ${infoLine}`);
  const loadSeconds = (Date.now() - t0) / 1000;

  await page.getByTestId('start').click();
  await page.waitForFunction((n) => (window.__mfr.lastMetrics?.step ?? 0) >= n || !window.__mfr.running, REAL_STEPS,
    { timeout: REAL_TRAIN_TIMEOUT_MS, polling: 250 });
  await pauseAndSettle(page);
  const trainSeconds = (Date.now() - t0) / 1000 - loadSeconds;
  const seen = await page.evaluate(() => ({
    info: window.__mfr.dataInfo, metrics: window.__mfr.lastMetrics, charts: window.__mfr.chartData(),
    atoms: window.__mfr.atoms, segment: window.__mfr.segment, steps: window.__mfr.steps(),
  }));
  const { info, metrics, charts, segment } = seen;
  assert.ok(metrics.step >= REAL_STEPS, `${source}: trained ${metrics.step} steps`);
  assert.equal(await page.getByTestId('status').textContent(), '');

  // MSE: finite at every read, and lower at the last read than at the first, for every SAE.
  const [xs, ...series] = charts.mse.data;
  assert.ok(xs.length >= 2, `${source}: ${xs.length} MSE reads`);
  series.forEach((ys, i) => {
    ys.forEach((y, j) => assert.ok(Number.isFinite(y), `${source}: ${charts.mse.labels[i]}, read ${j}: ${y}`));
    assert.ok(ys.at(-1) < ys[0], `${source}: MSE of ${charts.mse.labels[i]} went from ${ys[0]} to ${ys.at(-1)}`);
  });
  // Real data has no truth: the truth chart and the motivation plot say so.
  assert.ok(metrics.runs.every((r) => r.saes.every((s) => s.truth === null)));
  assert.ok(await page.locator('#truth-figure .no-truth').isVisible());
  assert.ok(await page.locator('#motivation-figure .no-truth').isVisible());

  // The held-out row and its reconstruction, drawn, with the MSE shown.
  assert.equal(segment.input.length, info.d);
  assert.equal(segment.reconstruction.length, info.d);
  assert.ok(segment.input.concat(segment.reconstruction).every(Number.isFinite), `${source}: segment values`);
  assert.equal(segment.rows, info.held_out_rows);
  assert.ok(await page.getByTestId('segment-figure').isVisible());
  assert.ok(await inked(page, 'segment'), `${source}: the segment view drew nothing`);
  assert.equal(await page.getByTestId('segment-mse').textContent(), fmt(segment.mse));
  // ▶ shows the next held-out row.
  await page.getByTestId('segment-next').click();
  await page.waitForFunction((i) => window.__mfr.segment?.index === i && window.__mfr.idle, segment.index + 1,
    { timeout: 60_000 });
  return { ...seen, infoLine, loadSeconds, trainSeconds };
}

test('the EEG samples (and the LM sample where shipped) load and train; the real-data views draw', { timeout: 1_500_000 },
  async () => {
    const { page, problems } = await openPage();
    const log = [];
    for (const [source, channels] of [['eeg-eyes', 14], ['eeg-scp1', 1]]) {
      const seen = await trainOnSample(page, source);
      const { info, atoms } = seen;
      assert.equal(info.kind, 'eeg');
      assert.equal(info.channels, channels);
      assert.equal(info.labels.length, channels);
      assert.equal(info.d, channels * info.samples_per_segment);
      assert.match(seen.infoLine, new RegExp(`EEG · ${channels} channels? × ${info.samples_per_segment} samples · `
        + `${info.train_rows} training / ${info.held_out_rows} held-out segments`));
      // The decoder atoms: the most-used latents of SAE 0, drawn as per-channel waveforms.
      assert.ok(atoms.atoms.length >= 6 && atoms.atoms.length <= 8, `${atoms.atoms.length} atoms`);
      atoms.atoms.forEach((a, j) => {
        assert.equal(a.length, info.d, `atom ${j}`);
        assert.ok(a.every(Number.isFinite), `atom ${j}`);
      });
      assert.ok(await page.getByTestId('atoms-figure').isVisible());
      assert.ok(await inked(page, 'atoms'), `${source}: the atoms view drew nothing`);
      if (source === 'eeg-eyes') {
        await mkdir(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS, 'eeg.png'), fullPage: true });
      }
      log.push(`${source}: ${seen.infoLine}; loaded in ${seen.loadSeconds.toFixed(1)} s, ${seen.steps} steps in `
        + `${seen.trainSeconds.toFixed(1)} s`);
    }

    await page.waitForFunction(() => window.__mfr.samplesChecked, null, { timeout: 60_000 });
    if (await page.locator('#data option[value="lm"]').isDisabled()) {
      log.push(`lm: skipped, the page disabled the option: "${await page.locator('#data option[value="lm"]').textContent()}"`);
    } else {
      const seen = await trainOnSample(page, 'lm');
      assert.equal(seen.info.kind, 'activations');
      assert.ok(await page.getByTestId('atoms-figure').isHidden(), 'atoms are drawn for EEG only');
      log.push(`lm: ${seen.infoLine}; loaded in ${seen.loadSeconds.toFixed(1)} s, ${seen.steps} steps in `
        + `${seen.trainSeconds.toFixed(1)} s`);
    }
    assert.deepEqual(problems, []);
    for (const line of log) console.log(`# test 3: ${line}`);
    await page.close();
  });

test('a checkpoint saved from the page reloads at its step, with its settings, and trains on', { timeout: 600_000 },
  async () => {
    const { page, problems } = await openPage();
    await setLambda(page, 0.3);
    await page.waitForFunction(() => window.__mfr.trainersCreated >= 2 && window.__mfr.idle, null, { timeout: 120_000 });
    await page.getByTestId('start').click();
    await waitForSteps(page, 20);
    await pauseAndSettle(page);
    const saved = await page.evaluate(() => window.__mfr.steps());
    await openFiles(page);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('save-checkpoint').click()]);
    assert.equal(download.suggestedFilename(), `mfr_checkpoint_step${saved}.safetensors`);
    const bytes = await readFile(await download.path());

    // A different trainer (λ 1), then the checkpoint: its step and its λ come back.
    await setLambda(page, 1);
    await page.waitForFunction(() => window.__mfr.steps() === 0 && window.__mfr.idle, null, { timeout: 120_000 });
    await page.getByTestId('load-checkpoint').setInputFiles({
      name: 'run.safetensors', mimeType: 'application/octet-stream', buffer: bytes,
    });
    await page.waitForFunction((n) => window.__mfr.steps() === n && window.__mfr.idle, saved, { timeout: 120_000 });
    assert.equal(await page.getByTestId('steps').textContent(), String(saved));
    assert.equal(Number(await page.getByTestId('lambda').inputValue()), 0.3);
    assert.match(await page.getByTestId('status').textContent(), /from step/);
    await page.getByTestId('start').click();
    await waitForSteps(page, 10);
    await pauseAndSettle(page);
    assert.ok(await page.evaluate(() => window.__mfr.steps()) >= saved + 10);

    // A damaged file is refused with a visible message; the loaded trainer stays.
    await page.getByTestId('load-checkpoint').setInputFiles({
      name: 'cut.safetensors', mimeType: 'application/octet-stream', buffer: bytes.subarray(0, 100),
    });
    await page.waitForFunction(() => document.getElementById('status').classList.contains('error') && window.__mfr.idle,
      null, { timeout: 60_000 });
    assert.ok(await page.evaluate(() => window.__mfr.steps()) >= saved + 10);
    assert.deepEqual(problems, []);
    console.log(`# checkpoint test: checkpoint of ${bytes.length} bytes at step ${saved} reloaded and trained on`);
    await page.close();
  });

test('a truncated EDF from disk gets a visible error that names the file', { timeout: 300_000 }, async () => {
  const { page, problems } = await openPage();
  const edf = await readFile(join(WEB, 'samples/eeg/eyes_open_shut.edf'));
  await page.getByTestId('data').selectOption('file');
  assert.ok(await page.getByTestId('file').isVisible());
  await page.getByTestId('file').setInputFiles({
    name: 'broken.edf', mimeType: 'application/octet-stream', buffer: edf.subarray(0, Math.floor(edf.length / 2)),
  });
  const info = page.getByTestId('data-info');
  await page.waitForFunction(() => document.getElementById('data-info').classList.contains('error')
    && window.__mfr.idle, null, { timeout: 120_000 });
  assert.ok(await info.isVisible());
  const text = await info.textContent();
  assert.match(text, /broken\.edf/);
  assert.equal(await page.evaluate(() => window.__mfr.dataInfo), null, 'no trainer on a broken file');
  // Start does not crash on it either: the same error, training stopped.
  await page.getByTestId('start').click();
  await page.waitForFunction(() => !window.__mfr.running && window.__mfr.idle, null, { timeout: 60_000 });
  assert.match(await page.getByTestId('status').textContent(), /broken\.edf/);
  assert.deepEqual(problems, []);
  console.log(`# test 4: the page says: ${text}`);
  await page.close();
});
