// The page as a lesson, end to end in headless Chromium (SwiftShader when there is no GPU):
// every preset loads from its URL and, after a bounded number of steps, shows what its
// "what you should see" sentence says (asserted on the page's own numbers); settings made
// through the controls survive a reload through the URL; the result card, the loss chart
// and both heatmaps fit the first 1440×900 screen, and the run controls the first 390×844
// one; axe-core finds no serious or critical accessibility violation. Screenshots of both
// layouts go to $ARTIFACTS_DIR (desktop.png, phone.png; default target/artifacts/).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS, WEB, launch, openPage, trainTo } from './harness.mjs';

const { PRESETS } = await import(new URL('../../web/js/presets.js', import.meta.url));

const TRAIN_TIMEOUT_MS = 300_000;
const DESKTOP = { width: 1440, height: 900 };
const PHONE = { width: 390, height: 844 };

let browser;

before(async () => {
  browser = await launch(DESKTOP);
});

after(async () => {
  await browser?.close();
});

/** The numbers a preset's sentence is about, as the page has them after its last read. */
async function readings(page) {
  return page.evaluate(() => {
    const mean = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const m = window.__mfr.lastMetrics;
    const run = (name) => {
      const r = m.runs.find((x) => x.name === name);
      const held = window.__mfr.heldOut[name];
      return {
        truth: r.saes.every((s) => s.truth) ? mean(r.saes.map((s) => s.truth.matched)) : null,
        agree: mean(r.pairs.map((p) => p.matched)),
        max: mean(r.pairs.map((p) => (p.max_ab + p.max_ba) / 2)),
        dead: mean(r.saes.map((s) => s.dead_fraction)),
        heldOut: held ? mean(held.mse) : null,
      };
    };
    const card = Object.fromEntries([...document.querySelectorAll('.deltas dd')]
      .map((el) => [el.id.replace('delta-', ''), el.dataset.value === '' ? null : Number(el.dataset.value)]));
    return {
      step: m.step, mfr: run('mfr'), baseline: run('baseline'), card,
      r: Number(document.getElementById('motivation-r').textContent), view: document.getElementById('motivation-run').value,
    };
  });
}

/**
 * Per preset: the steps it trains and the check of its sentence (web/js/presets.js), on
 * `x` = readings(). Each returns a line for the log.
 */
const CHECKS = {
  independent: [300, (x) => {
    assert.equal(x.view, 'baseline', 'the motivation plot shows the baseline');
    assert.ok(x.r > 0.5, `baseline motivation r = ${x.r}`);
    return `baseline r = ${x.r}`;
  }],
  authors: [300, (x) => {
    assert.ok(x.mfr.agree > 0.99, `MFR agreement ${x.mfr.agree}`);
    assert.ok(x.baseline.agree < 0.97, `baseline agreement ${x.baseline.agree}`);
    assert.ok(Math.abs(x.card.truth) < 0.03, `Δ truth ${x.card.truth}`);
    return `agreement MFR ${x.mfr.agree.toFixed(4)} vs ${x.baseline.agree.toFixed(4)}, Δ truth ${x.card.truth.toFixed(4)}`;
  }],
  crowding: [300, (x) => {
    const gap = (r) => r.max - r.agree;
    assert.ok(gap(x.mfr) > gap(x.baseline) + 0.05, `max − one-to-one: MFR ${gap(x.mfr)}, baseline ${gap(x.baseline)}`);
    assert.ok(x.card.truth < -0.02, `Δ truth ${x.card.truth}`);
    return `max − one-to-one MFR ${gap(x.mfr).toFixed(3)} vs ${gap(x.baseline).toFixed(3)}, Δ truth ${x.card.truth.toFixed(4)}`;
  }],
  collapse: [300, (x) => {
    assert.ok(x.mfr.agree > 0.99, `MFR agreement ${x.mfr.agree}`);
    assert.ok(x.card.truth < 0.01, `Δ truth ${x.card.truth}`);
    return `agreement MFR ${x.mfr.agree.toFixed(4)}, Δ truth ${x.card.truth.toFixed(4)}`;
  }],
  overcomplete: [300, (x) => {
    assert.ok(x.mfr.truth > 0.9 && x.baseline.truth > 0.9, `truth MFR ${x.mfr.truth}, baseline ${x.baseline.truth}`);
    assert.ok(Math.abs(x.card.truth) < 0.02, `Δ truth ${x.card.truth}`);
    assert.ok(x.baseline.agree < 0.9 && x.mfr.agree > 0.95, `agreement MFR ${x.mfr.agree}, baseline ${x.baseline.agree}`);
    return `truth ${x.mfr.truth.toFixed(4)} vs ${x.baseline.truth.toFixed(4)}, agreement ${x.mfr.agree.toFixed(4)} vs `
      + `${x.baseline.agree.toFixed(4)}`;
  }],
  eeg: [150, (x) => {
    assert.ok(x.mfr.agree > 0.99, `MFR agreement ${x.mfr.agree}`);
    assert.ok(x.baseline.agree < 0.7, `baseline agreement ${x.baseline.agree}`);
    assert.ok(Number.isFinite(x.mfr.heldOut) && Number.isFinite(x.baseline.heldOut), 'held-out MSE of both runs');
    assert.ok(Math.abs(x.card.loss) <= 0.02 * x.baseline.heldOut, `held-out MSE ${x.mfr.heldOut} vs ${x.baseline.heldOut}`);
    return `agreement ${x.mfr.agree.toFixed(4)} vs ${x.baseline.agree.toFixed(4)}, held-out MSE ${x.mfr.heldOut.toFixed(4)} `
      + `vs ${x.baseline.heldOut.toFixed(4)}`;
  }],
  lm: [150, (x) => {
    assert.ok(x.mfr.agree > x.baseline.agree + 0.1, `agreement MFR ${x.mfr.agree}, baseline ${x.baseline.agree}`);
    assert.ok(x.mfr.dead < x.baseline.dead, `dead MFR ${x.mfr.dead}, baseline ${x.baseline.dead}`);
    assert.ok(Math.abs(x.card.loss) <= 0.02 * x.baseline.heldOut, `held-out MSE ${x.mfr.heldOut} vs ${x.baseline.heldOut}`);
    return `agreement ${x.mfr.agree.toFixed(4)} vs ${x.baseline.agree.toFixed(4)}, dead ${x.mfr.dead.toFixed(3)} vs `
      + `${x.baseline.dead.toFixed(3)}, held-out MSE ${x.mfr.heldOut.toFixed(4)} vs ${x.baseline.heldOut.toFixed(4)}`;
  }],
};

test('every preset loads from its URL and shows what its sentence says', { timeout: 1_500_000 }, async () => {
  assert.deepEqual(PRESETS.map((p) => p.id).sort(), Object.keys(CHECKS).sort(), 'every preset has its check');
  const log = [];
  for (const preset of PRESETS) {
    const [steps, check] = CHECKS[preset.id];
    const t0 = Date.now();
    const { page, problems } = await openPage(browser, `#preset=${preset.id}`);
    assert.equal(await page.getByTestId('preset').inputValue(), preset.id);
    assert.equal(await page.getByTestId('data').inputValue(), preset.settings.data);
    assert.equal(Number(await page.getByTestId('lambda').inputValue()), preset.settings.lambda);
    assert.match(await page.getByTestId('preset-says').textContent(), new RegExp(preset.says.slice(0, 40).replace(/[()]/g, '.')));
    await trainTo(page, steps, TRAIN_TIMEOUT_MS);
    const x = await readings(page);
    log.push(`${preset.id} at step ${x.step} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${check(x)}`);
    // The card's numbers are MFR minus baseline of the same reads.
    if (x.mfr.truth !== null) assert.ok(Math.abs(x.card.truth - (x.mfr.truth - x.baseline.truth)) < 1e-9);
    assert.ok(Math.abs(x.card.agree - (x.mfr.agree - x.baseline.agree)) < 1e-9);
    assert.match(await page.getByTestId('result-says').textContent(), new RegExp(`^Step ${x.step}: `));
    assert.deepEqual(problems, [], preset.id);
    await page.close();
  }
  for (const line of log) console.log(`# preset ${line}`);
});

test('settings made through the controls survive a reload through the URL', { timeout: 300_000 }, async () => {
  const { page, problems } = await openPage(browser);
  await page.getByTestId('m').selectOption('32');
  await page.getByTestId('form').selectOption('max');
  await page.getByTestId('lambda').fill('0.2');
  await page.getByTestId('lambda').press('Enter');
  await page.getByTestId('seed').fill('7');
  await page.getByTestId('seed').press('Enter');
  await page.getByTestId('compare').uncheck();
  await page.getByTestId('motivation-run').selectOption('mfr');
  // Arrow keys on a slider restart once, after the keys stop, not once per press.
  const before = await page.evaluate(() => window.__mfr.trainersCreated);
  await page.getByTestId('k').focus();
  for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowRight');
  await page.waitForFunction((n) => window.__mfr.trainersCreated === n + 1 && window.__mfr.idle, before, { timeout: 60_000 });
  await page.waitForTimeout(600);
  assert.equal(await page.evaluate(() => window.__mfr.trainersCreated), before + 1, 'one restart for four key presses');
  const want = { m: 32, form: 'max', lambda: 0.2, seed: 7, compare: false, k: 8 };
  const hash = await page.evaluate(() => location.hash);
  assert.match(hash, /lambda=0\.2/);

  await page.reload();
  await page.waitForFunction(() => window.__mfr.trainersCreated >= 1 && window.__mfr.idle, null, { timeout: 120_000 });
  assert.equal(await page.evaluate(() => location.hash), hash);
  const config = await page.evaluate(() => window.__mfr.config());
  for (const [key, value] of Object.entries(want)) assert.equal(config[key], value, key);
  assert.equal(await page.getByTestId('motivation-run').inputValue(), 'mfr');
  assert.equal(await page.getByTestId('lambda-slider').inputValue(), '58', 'the log slider sits at λ 0.2 (25 steps a decade from 0.001)');
  assert.equal(await page.getByTestId('preset').inputValue(), '', 'hand-made settings are no preset');
  assert.deepEqual(problems, []);
  await page.close();
});

/** Whether the element's box lies inside the viewport. */
async function inViewport(page, selector) {
  const box = await page.locator(selector).boundingBox();
  const { width, height } = page.viewportSize();
  assert.ok(box, `${selector} has a box`);
  const inside = box.x >= 0 && box.y >= 0 && box.x + box.width <= width && box.y + box.height <= height;
  return { inside, box: `${selector} ${[box.x, box.y, box.width, box.height].map(Math.round).join(',')}` };
}

test('one screen: desktop 1440×900 and phone 390×844, no serious accessibility violations', { timeout: 600_000 },
  async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const { page, problems } = await openPage(browser);
    const t0 = Date.now();
    const clock = () => page.evaluate(() => [performance.now(), window.__mfr.steps()]);
    await page.getByTestId('start').click();
    // The test's own clock from the 20th step on (start-up, shader compilation and the first
    // steps excluded, as the page's running stretch excludes them), beside the page's rate.
    await page.waitForFunction(() => window.__mfr.steps() >= 20, null, { timeout: TRAIN_TIMEOUT_MS, polling: 20 });
    const [t1, s1] = await clock();
    await page.waitForFunction(() => (window.__mfr.lastMetrics?.step ?? 0) >= 400 && window.__mfr.stepsPerSecond, null,
      { timeout: TRAIN_TIMEOUT_MS, polling: 20 });
    const [t2, s2] = await clock();
    const rate = await page.evaluate(() => window.__mfr.stepsPerSecond);
    const steps = await page.evaluate(() => window.__mfr.steps());
    const shown = await page.getByTestId('speed').textContent();
    await page.getByTestId('start').click();
    await page.waitForFunction(() => !window.__mfr.running && window.__mfr.idle, null, { timeout: 120_000 });
    const seconds = (Date.now() - t0) / 1000;
    const measured = (s2 - s1) / ((t2 - t1) / 1000);
    assert.match(shown, /^[\d.]+ steps\/s$/);
    // The page's wall-clock rate agrees with the test's clock over the same running stretch.
    assert.ok(rate <= 1.5 * measured + 1 && rate >= measured / 1.5 - 1,
      `shown ${rate} steps/s, measured ${measured} (${s2 - s1} steps in ${(t2 - t1) / 1000} s)`);

    const boxes = [];
    for (const sel of ['#result', '#chart-mse', '#heatmap', '#heatmap-baseline', '#start']) {
      const { inside, box } = await inViewport(page, sel);
      boxes.push(box);
      assert.ok(inside, `desktop: ${box} is outside 1440×900`);
    }
    await page.screenshot({ path: join(ARTIFACTS, 'desktop.png') });

    // axe-core in the same Chromium, on the trained page (charts, heatmaps and card drawn).
    await page.addScriptTag({ path: join(WEB, 'node_modules/axe-core/axe.min.js') });
    const axe = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
    });
    const serious = axe.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious, [], 'serious or critical axe violations');

    await page.setViewportSize(PHONE);
    await page.evaluate(() => window.scrollTo(0, 0));
    for (const sel of ['#start', '#step', '#reset']) {
      const { inside, box } = await inViewport(page, sel);
      boxes.push(`phone ${box}`);
      assert.ok(inside, `phone: ${box} is outside 390×844`);
      assert.ok((await page.locator(sel).boundingBox()).height >= 44, `phone: ${box} is under 44 px tall`);
    }
    await page.screenshot({ path: join(ARTIFACTS, 'phone.png') });
    await page.evaluate(() => window.scrollTo(0, 2000));
    assert.ok((await inViewport(page, '#start')).inside, 'phone: the run bar stays on screen when scrolled');
    assert.deepEqual(problems, []);
    console.log(`# layout: defaults at ${rate.toFixed(1)} steps/s wall clock as shown, ${measured.toFixed(1)} by the test's `
      + `clock from step ${s1} to ${s2} (${steps} steps in ${seconds.toFixed(1)} s from Start); ${boxes.join('; ')}; axe: ${axe.length} violations below serious: `
      + `${axe.map((v) => `${v.id} (${v.impact})`).join(', ') || 'none'}`);
    await page.close();
  });

