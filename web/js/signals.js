// The views of real data, on canvases: decoder atoms drawn as per-channel waveforms
// (EEG), a held-out EEG segment with its reconstruction as channel traces, and a
// held-out activation row with its reconstruction over the d dimensions. Owns the
// drawing only; the numbers come from the trainer's atoms() and segment().

import { fmt } from './format.js';

const INK = '#1d2330';
const MUTED = '#5d6675';
const GRID = '#dfe3ea';
/** Input in light grey under the reconstruction, in the colour of SAE 0 (the SAE these views read). */
const INPUT = '#8a909b';
const RECON = '#c44e00';
const FONT = '12px system-ui, sans-serif';
const LABEL_W = 40;

/** Sizes the canvas to its CSS box (height `cssH`) at the screen's pixel ratio; returns [ctx, width]. */
function prepare(canvas, cssH) {
  const cssW = canvas.clientWidth || canvas.width;
  const dpr = window.devicePixelRatio || 1;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = FONT;
  ctx.lineJoin = 'round';
  return [ctx, cssW];
}

/** Height of one channel's band: channels share about 240 px, each gets 14 to 60. */
const bandHeight = (channels) => Math.max(14, Math.min(60, Math.floor(240 / channels)));

/** Draws `values[from, from+n)` as one line across the box (x, y, w, h), ±`scale` filling the height. */
function trace(ctx, values, from, n, box, scale, colour, width) {
  const { x, y, w, h } = box;
  ctx.strokeStyle = colour;
  ctx.lineWidth = width;
  ctx.beginPath();
  for (let i = 0; i < n; i++) {
    const v = Math.max(-1, Math.min(1, values[from + i] / scale));
    const px = x + (n > 1 ? (i / (n - 1)) * w : w / 2);
    const py = y + h / 2 - (v * h) / 2;
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  }
  ctx.stroke();
}

function channelLabels(ctx, labels, top, band) {
  ctx.fillStyle = MUTED;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  labels.forEach((label, c) => ctx.fillText(label, LABEL_W - 6, top + c * band + band / 2));
}

const maxAbs = (xs) => xs.reduce((s, v) => Math.max(s, Math.abs(v)), 0) || 1;

/**
 * EEG decoder atoms: one panel per atom of a = { latents, firing, atoms: [[channels × S]] }
 * (channel-major), a thin line per channel, the channel labels of `info` on the left.
 * Each atom is scaled by its own largest value, written above it (± amplitude, in the
 * z-scored units of the segments); under each panel its time axis (0 to the segment length).
 */
export function drawAtoms(canvas, a, info) {
  const channels = info.channels;
  const S = info.samples_per_segment;
  const band = bandHeight(channels);
  const top = 32;
  const bottom = 16;
  const [ctx, cssW] = prepare(canvas, top + channels * band + bottom);
  channelLabels(ctx, info.labels, top, band);
  const count = a.atoms.length;
  const gap = 10;
  const panelW = (cssW - LABEL_W - gap * (count - 1)) / Math.max(1, count);
  const seconds = `${(S / info.sample_rate).toFixed(S % info.sample_rate ? 2 : 0)} s`;
  a.atoms.forEach((atom, j) => {
    const x = LABEL_W + j * (panelW + gap);
    const scale = maxAbs(atom);
    const fired = Number.isInteger(a.firing[j]) ? String(a.firing[j]) : fmt(a.firing[j]);
    ctx.fillStyle = INK;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    ctx.fillText(`latent ${a.latents[j]}`, x, 12, panelW);
    ctx.fillStyle = MUTED;
    ctx.fillText(`${fired}× · ±${fmt(scale)}`, x, 26, panelW);
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.strokeRect(x, top, panelW, channels * band);
    for (let c = 0; c < channels; c++) {
      trace(ctx, atom, c * S, S, { x, y: top + c * band, w: panelW, h: band }, scale, RECON, 1);
    }
    const axisY = top + channels * band + 13;
    ctx.fillStyle = MUTED;
    ctx.fillText('0', x, axisY);
    ctx.textAlign = 'right';
    ctx.fillText(seconds, x + panelW, axisY);
  });
}

/**
 * A held-out EEG segment s = { input, reconstruction } (channels × S, channel-major)
 * as channel traces, input and reconstruction overlaid, on one scale for all channels
 * (each channel is z-scored, so ±3 covers nearly all of it).
 */
export function drawSegment(canvas, s, info) {
  const channels = info.channels;
  const S = info.samples_per_segment;
  const band = bandHeight(channels) + 4;
  const top = 4;
  const bottom = 16;
  const [ctx, cssW] = prepare(canvas, top + channels * band + bottom);
  channelLabels(ctx, info.labels, top, band);
  const w = cssW - LABEL_W - 4;
  const scale = Math.min(maxAbs(s.input), 4);
  for (let c = 0; c < channels; c++) {
    const box = { x: LABEL_W, y: top + c * band, w, h: band };
    ctx.strokeStyle = GRID;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(LABEL_W, box.y + band / 2);
    ctx.lineTo(LABEL_W + w, box.y + band / 2);
    ctx.stroke();
    trace(ctx, s.input, c * S, S, box, scale, INPUT, 2);
    trace(ctx, s.reconstruction, c * S, S, box, scale, RECON, 1);
  }
  ctx.fillStyle = MUTED;
  ctx.textBaseline = 'alphabetic';
  ctx.textAlign = 'left';
  ctx.fillText('0 s', LABEL_W, top + channels * band + 12);
  ctx.textAlign = 'right';
  ctx.fillText(`${(S / info.sample_rate).toFixed(2)} s`, LABEL_W + w, top + channels * band + 12);
}

/** An activation row s = { input, reconstruction } over its d dimensions, both as lines. */
export function drawRow(canvas, s) {
  const height = 220;
  const pad = { left: 48, right: 8, top: 8, bottom: 22 };
  const [ctx, cssW] = prepare(canvas, height);
  const box = { x: pad.left, y: pad.top, w: cssW - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const scale = maxAbs(s.input) * 1.05;
  ctx.strokeStyle = GRID;
  ctx.fillStyle = MUTED;
  ctx.lineWidth = 1;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (const t of [-1, -0.5, 0, 0.5, 1]) {
    const y = box.y + box.h / 2 - (t * box.h) / 2;
    ctx.beginPath();
    ctx.moveTo(box.x, y);
    ctx.lineTo(box.x + box.w, y);
    ctx.stroke();
    ctx.fillText(fmt(t * scale), box.x - 4, y);
  }
  const d = s.input.length;
  ctx.textBaseline = 'alphabetic';
  ctx.textAlign = 'left';
  ctx.fillText('dimension 0', box.x, height - 6);
  ctx.textAlign = 'right';
  ctx.fillText(String(d - 1), box.x + box.w, height - 6);
  trace(ctx, s.input, 0, d, box, scale, INPUT, 2);
  trace(ctx, s.reconstruction, 0, d, box, scale, RECON, 1);
}

/** Blank canvas: nothing to show yet. */
export function clearSignal(canvas) {
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
}
