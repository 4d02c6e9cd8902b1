// The paper's motivating scatter plot on a canvas: per latent, x = cosine to the
// nearest true feature, y = cosine to the nearest latent of the other SAE(s).
// Owns the drawing and the correlation coefficient; the points come from the trainer.

import { RUN_COLOURS } from './charts.js';

const PAD = { left: 46, right: 8, top: 6, bottom: 32 };

/** Pearson correlation of two equal-length arrays; null when undefined. */
export function pearson(xs, ys) {
  const n = xs.length;
  if (n < 2) return null;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
}

/**
 * Draws p = { points: [{ sae, truth_cos, other_cos }] } of run `runName` (or axes only when
 * null) in the run's colour, SAE 0 as dots and the others as squares; returns r.
 */
export function drawMotivation(canvas, p, runName = 'mfr') {
  const cssW = canvas.clientWidth || canvas.width;
  const cssH = canvas.clientHeight || canvas.height;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);

  const points = p ? p.points : [];
  const lo = Math.min(0, ...points.map((q) => Math.min(q.truth_cos, q.other_cos)));
  const w = cssW - PAD.left - PAD.right;
  const h = cssH - PAD.top - PAD.bottom;
  const px = (x) => PAD.left + ((x - lo) / (1 - lo)) * w;
  const py = (y) => PAD.top + (1 - (y - lo) / (1 - lo)) * h;

  ctx.strokeStyle = '#dfe3ea';
  ctx.fillStyle = '#5d6675';
  ctx.font = '12px system-ui, sans-serif';
  ctx.lineWidth = 1;
  for (let t = Math.ceil(lo * 4) / 4; t <= 1.0001; t += 0.25) {
    ctx.beginPath();
    ctx.moveTo(px(t), PAD.top); ctx.lineTo(px(t), PAD.top + h);
    ctx.moveTo(PAD.left, py(t)); ctx.lineTo(PAD.left + w, py(t));
    ctx.stroke();
    ctx.textAlign = 'center';
    ctx.fillText(t.toFixed(2), px(t), PAD.top + h + 13);
    ctx.textAlign = 'right';
    ctx.fillText(t.toFixed(2), PAD.left - 4, py(t) + 4);
  }
  ctx.textAlign = 'center';
  ctx.fillText('cosine to nearest true feature', PAD.left + w / 2, cssH - 4);
  ctx.save();
  ctx.translate(11, PAD.top + h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('cosine to other SAE', 0, 0);
  ctx.restore();

  ctx.globalAlpha = 0.55;
  for (const q of points) {
    ctx.fillStyle = RUN_COLOURS[runName] || '#555';
    if (q.sae === 0) {
      ctx.beginPath();
      ctx.arc(px(q.truth_cos), py(q.other_cos), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.fillRect(px(q.truth_cos) - 2, py(q.other_cos) - 2, 4, 4);
    }
  }
  ctx.globalAlpha = 1;
  return pearson(points.map((q) => q.truth_cos), points.map((q) => q.other_cos));
}
