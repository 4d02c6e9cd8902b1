// The result card: MFR minus baseline at the last metrics read, in truth recovery,
// one-to-one agreement, reconstruction error (held-out rows for real data, fresh batches
// for synthetic data) and dead latents, each coloured by whether it is better or worse,
// and a sentence saying what that means now. It also writes the chart summaries, so the
// captions say what this run shows rather than what the paper claims.
// Each number is also on its element as data-value (the end-to-end test reads them).

import { fmt, mean } from './format.js';

const $ = (id) => document.getElementById(id);

/**
 * Differences smaller than these count as "level": truth and agreement in cosine,
 * dead latents as a fraction, the loss relative to the baseline's.
 */
const LEVEL = { truth: 0.01, agree: 0.01, dead: 0.01, loss: 0.02 };

/** The four quantities of one run: means over its SAEs and pairs (loss: held-out when given). */
function quantities(run, heldOut) {
  const truth = run.saes.every((s) => s.truth) ? mean(run.saes.map((s) => s.truth.matched)) : null;
  const held = heldOut && heldOut[run.name];
  return {
    truth,
    agree: mean(run.pairs.map((p) => p.matched)),
    loss: held ? mean(held.mse) : heldOut ? null : mean(run.saes.map((s) => s.mse)),
    dead: mean(run.saes.map((s) => s.dead_fraction)),
  };
}

const signed = (x, digits = 3) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(digits)}`;

/** Shows one difference in cell `id`: better / worse / level (agreement: neutral, it is not a goal in itself). */
function cell(id, delta, verdict, text) {
  const el = $(id);
  el.dataset.value = delta === null ? '' : String(delta);
  el.className = verdict === 'better' || verdict === 'worse' ? verdict : '';
  el.innerHTML = text;
}

export function clearResult() {
  for (const id of ['delta-truth', 'delta-agree', 'delta-loss', 'delta-dead']) cell(id, null, '', '—');
  $('result-says').textContent = 'Press Start: the card compares the two runs as they train.';
  $('result').dataset.step = '';
}

/**
 * Fills the card from metrics record `m`. `heldOut`: per run name `{mse: [per SAE]}` for real
 * data (null for synthetic data, whose every batch is fresh); `warmup`: T; `truthCeiling`:
 * min(1, m / features). Returns { captions: { element id → sentence } }.
 */
export function renderResult(m, { heldOut, warmup, truthCeiling }) {
  const mfrRun = m.runs.find((r) => r.name === 'mfr');
  const baseRun = m.runs.find((r) => r.name === 'baseline');
  const mfr = quantities(mfrRun, heldOut);
  const base = baseRun ? quantities(baseRun, heldOut) : null;
  $('result').dataset.step = String(m.step);
  $('delta-loss-label').textContent = heldOut ? 'held-out MSE' : 'reconstruction MSE';
  const captions = captionsFor(m, mfr, base, heldOut, truthCeiling);
  if (!base) {
    clearResult();
    $('result').dataset.step = String(m.step);
    $('result-says').textContent = 'Compare is off: there is no baseline to subtract. Turn it on to see what MFR changes.';
    return { captions };
  }

  const verdicts = { better: [], worse: [], level: [] };
  const judge = (key, name, higherIsBetter) => {
    const a = mfr[key];
    const b = base[key];
    if (a === null || b === null) return { delta: null, verdict: '' };
    const delta = a - b;
    const tol = key === 'loss' ? LEVEL.loss * Math.abs(b) : LEVEL[key];
    const verdict = Math.abs(delta) <= tol ? 'level' : (delta > 0) === higherIsBetter ? 'better' : 'worse';
    verdicts[verdict].push(name);
    return { delta, verdict };
  };
  const t = judge('truth', 'truth recovery', true);
  cell('delta-truth', t.delta, t.verdict, t.delta === null ? '— <small>no ground truth</small>'
    : `${signed(t.delta)} <small>${fmt(mfr.truth)} vs ${fmt(base.truth)}</small>`);
  const ag = { delta: mfr.agree - base.agree };
  cell('delta-agree', ag.delta, '', `${signed(ag.delta)} <small>${fmt(mfr.agree)} vs ${fmt(base.agree)}</small>`);
  const l = judge('loss', heldOut ? 'held-out MSE' : 'reconstruction', false);
  const rel = l.delta === null ? '' : ` (${signed((100 * l.delta) / base.loss, 1)} %)`;
  cell('delta-loss', l.delta, l.verdict, l.delta === null ? '— <small>computing…</small>'
    : `${signed(l.delta, 4)}${rel} <small>${fmt(mfr.loss)} vs ${fmt(base.loss)}</small>`);
  const d = judge('dead', 'dead latents', false);
  cell('delta-dead', d.delta, d.verdict, `${signed(100 * d.delta, 1)} pts <small>${(100 * mfr.dead).toFixed(1)} % vs `
    + `${(100 * base.dead).toFixed(1)} %</small>`);

  const list = (xs) => xs.join(', ').replace(/, ([^,]*)$/, ' and $1');
  const parts = [];
  if (verdicts.worse.length) parts.push(`MFR is currently worse on ${list(verdicts.worse)}`);
  if (verdicts.better.length) parts.push(`${parts.length ? 'better' : 'MFR is currently better'} on ${list(verdicts.better)}`);
  if (verdicts.level.length) parts.push(`level on ${list(verdicts.level)}`);
  let says = `Step ${m.step}: ${parts.join('; ')}.`;
  if (mfr.agree > 0.99) {
    says += ' Its SAEs have become copies of each other (one-to-one agreement above 0.99)';
    if (t.delta === null) says += '; with no ground truth, the held-out error is the check that matters.';
    else says += t.verdict === 'better' ? ', and recover more of the true features.' : ', without recovering more of the true features.';
  } else if (ag.delta > LEVEL.agree) {
    says += ` Its SAEs agree more than the baseline's (${fmt(mfr.agree)} vs ${fmt(base.agree)})${
      t.verdict === 'better' ? ', and here that comes with more of the true features.' : '; agreement alone is not truth.'}`;
  }
  if (m.step < warmup) says += ` The penalty is still fading in (warm-up to step ${warmup}).`;
  $('result-says').textContent = says;
  return { captions };
}

/** What each chart shows at this read, in words (its aria description and visible caption). */
function captionsFor(m, mfr, base, heldOut, truthCeiling) {
  const pair = (key) => (base ? `MFR ${fmt(mfr[key])}, baseline ${fmt(base[key])}` : `MFR ${fmt(mfr[key])}`);
  const mfrRun = m.runs.find((r) => r.name === 'mfr');
  const baseRun = m.runs.find((r) => r.name === 'baseline');
  const maxOf = (run) => mean(run.pairs.map((p) => (p.max_ab + p.max_ba) / 2));
  const trainMse = (run) => mean(run.saes.map((s) => s.mse));
  return {
    'mse-summary': `Training MSE per step (log scale), mean over the SAEs; at step ${m.step}: MFR ${fmt(trainMse(mfrRun))}${
      baseRun ? `, baseline ${fmt(trainMse(baseRun))}` : ''}.${heldOut ? ' The card compares held-out rows.' : ''}`,
    'truth-summary': mfr.truth === null ? 'No ground truth for real data.'
      : `Matched MMCS to the true features, mean over the SAEs (ceiling ${fmt(truthCeiling)}): ${pair('truth')}.`,
    'mmcs-summary': `Pairwise MMCS of the decoders, one-to-one (thick) and max (thin): one-to-one ${pair('agree')}; max MFR `
      + `${fmt(maxOf(mfrRun))}${baseRun ? `, baseline ${fmt(maxOf(baseRun))}` : ''}.`,
    'dead-summary': `Fraction of latents that never fired in the last window, mean over the SAEs: MFR ${
      (100 * mfr.dead).toFixed(1)} %${base ? `, baseline ${(100 * base.dead).toFixed(1)} %` : ''}.`,
  };
}
