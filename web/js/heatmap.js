// The similarity heatmap between two SAEs' dictionaries, on a canvas, and its colour
// legend. Owns the colour scale (diverging, −1 blue … 0 white … 1 red). The matching
// order comes from the trainer (heatmap() returns the values already ordered).

const STOPS = [
  [-1, [33, 102, 172]],
  [0, [247, 247, 247]],
  [1, [178, 24, 43]],
];

/** Colour of a cosine similarity in [−1, 1] (clamped) as [r, g, b]. */
export function colour(v) {
  const x = Math.max(-1, Math.min(1, v));
  const [lo, hi] = x <= 0 ? [STOPS[0], STOPS[1]] : [STOPS[1], STOPS[2]];
  const t = (x - lo[0]) / (hi[0] - lo[0]);
  return lo[1].map((c, i) => Math.round(c + t * (hi[1][i] - c)));
}

/**
 * Draws h = { m, values: [m*m] row-major } one pixel per entry (CSS scales it up)
 * and returns the mean of the diagonal, which is MMCS_match over those rows.
 */
export function drawHeatmap(canvas, h) {
  const { m, values } = h;
  canvas.width = m;
  canvas.height = m;
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(m, m);
  for (let i = 0; i < m * m; i++) {
    const [r, g, b] = colour(values[i]);
    image.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
  let diagonal = 0;
  for (let i = 0; i < m; i++) diagonal += values[i * m + i];
  return diagonal / m;
}

/** Blank canvas: nothing to show yet. */
export function clearHeatmap(canvas) {
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
}

/** The vertical legend bar: 1 at the top, −1 at the bottom. */
export function drawLegend(canvas) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  for (let y = 0; y < height; y++) {
    const [r, g, b] = colour(1 - (2 * y) / (height - 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(0, y, width, 1);
  }
}
