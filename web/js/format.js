// How the page writes numbers. One function, shared with the end-to-end test, so
// that "the number shown is the trainer's" can be checked character for character.

/** A metric as shown on the page: 4 significant digits, "—" when absent. */
export function fmt(x) {
  if (x === null || x === undefined) return '—';
  const v = Number(x);
  if (!Number.isFinite(v)) return String(v);
  return v.toPrecision(4);
}

/** A fraction as a percentage with one decimal ("12.5 %"). */
export function pct(x) {
  if (x === null || x === undefined) return '—';
  return `${(100 * Number(x)).toFixed(1)} %`;
}

/** Mean of an array of numbers, skipping null; null when nothing is left. */
export function mean(xs) {
  const v = xs.filter((x) => x !== null && x !== undefined);
  return v.length ? v.reduce((s, x) => s + x, 0) / v.length : null;
}
