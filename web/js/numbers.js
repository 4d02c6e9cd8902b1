// The numbers panel: the last metrics() record as tables, every cell straight from
// that JSON through format.js. Each cell the test checks has a data-testid:
// metrics-step, mse-<run>-<i>, fvu-…, l0-…, dead-…, truth-<run>-<i>,
// mmcs-<run>-<a>-<b> (matched), maxab-/maxba-<run>-<a>-<b>, lmfr-<run>, weight-<run>.

import { fmt, pct } from './format.js';
import { RUN_COLOURS } from './charts.js';

const cell = (id, text) => `<td data-testid="${id}">${text}</td>`;
/** A short line in the run's colour, dashed for the baseline, as in the charts. */
const swatch = (run) => `<span class="swatch" style="border-top:2px ${run === 'baseline' ? 'dashed' : 'solid'} ${
  RUN_COLOURS[run] || '#555'}"></span>`;

/** Replaces the panel's content with the numbers of metrics record `m`. */
export function renderNumbers(el, m) {
  const saeRows = m.runs.flatMap((run) => run.saes.map((s, i) => `<tr><td>${swatch(run.name)}${run.name} SAE ${i}</td>${
    cell(`mse-${run.name}-${i}`, fmt(s.mse))}${
    cell(`fvu-${run.name}-${i}`, fmt(s.fvu))}${
    cell(`l0-${run.name}-${i}`, fmt(s.l0))}${
    cell(`dead-${run.name}-${i}`, pct(s.dead_fraction))}${
    cell(`truth-${run.name}-${i}`, fmt(s.truth ? s.truth.matched : null))}</tr>`));
  const pairRows = m.runs.flatMap((run) => run.pairs.map((p) => {
    const id = `${run.name}-${p.a}-${p.b}`;
    return `<tr><td>${run.name} ${p.a}–${p.b}</td>${cell(`mmcs-${id}`, fmt(p.matched))}${
      cell(`maxab-${id}`, fmt(p.max_ab))}${cell(`maxba-${id}`, fmt(p.max_ba))}</tr>`;
  }));
  const penaltyRows = m.runs.map((run) => `<tr><td>${run.name}</td>${cell(`lambda-${run.name}`, fmt(run.lambda))}${
    cell(`weight-${run.name}`, fmt(run.saes[0].mfr_weight))}${cell(`lmfr-${run.name}`, fmt(run.saes[0].mfr_loss))}</tr>`);
  el.innerHTML = `
    <p class="at">Last metrics read at step <strong data-testid="metrics-step">${m.step}</strong>;
      MSE, FVU, L0 and dead are averages over the steps since the read before.</p>
    <table><caption>Per SAE</caption>
      <tr><th></th><th>MSE</th><th>FVU</th><th>L0</th><th>dead</th><th>MMCS to truth</th></tr>${saeRows.join('')}</table>
    <table><caption>Per pair of SAEs</caption>
      <tr><th></th><th>MMCS match</th><th>max(a,b)</th><th>max(b,a)</th></tr>${pairRows.join('')}</table>
    <table><caption>Penalty</caption>
      <tr><th></th><th>λ</th><th>λ·w(t)</th><th>L<sub>MFR</sub></th></tr>${penaltyRows.join('')}</table>`;
}

/** The panel before any metrics read. */
export function clearNumbers(el) {
  el.innerHTML = '<p class="hint">Numbers from the last metrics read appear here once training starts.</p>';
}
