// Development stand-in for the wasm package (web/pkg/mfr_sae.js), used to build the
// page before the real one exists and to work on the page without a WebGPU adapter:
// open index.html?mock=1. It has the same exports and the same JSON shapes as
// src/web.rs, with made-up but plausible numbers (losses fall, MMCS rises), and it
// rejects overlapping calls with "busy" like the real trainer. It trains nothing and
// must never be used for results. Add `&nogpu=1` to see the page without an adapter.

// The shapes it returns are those of web/js/types.js.
/** @typedef {import('../js/types.js').Metrics} Metrics */
/** @typedef {import('../js/types.js').Heatmap} Heatmap */

const STEP_MS = 3; // simulated GPU time per step

/**
 * The library's page configuration (src/experiment/page.rs), as the real pageDefaults()
 * returns it: page_defaults.json beside this file, which a native test
 * (`cargo test --lib page_defaults`) keeps equal to the library's object.
 */
const PAGE_DEFAULTS = await (await fetch(new URL('./page_defaults.json', import.meta.url))).text();

/** Loads nothing: the real init() fetches and instantiates the .wasm. */
export default async function init() {}

/** @returns {string} JSON of a PageDefaults */
export function pageDefaults() {
  return PAGE_DEFAULTS;
}

export async function adapterInfo() {
  if (new URLSearchParams(location.search).has('nogpu')) {
    throw new Error('WebGPU is not available in this browser: navigator.gpu is undefined (mock)');
  }
  return JSON.stringify({
    name: 'Mock adapter (web/dev/mock_pkg.js)',
    backend: 'mock',
    device_type: 'Cpu',
    driver: 'mock',
    driver_info: 'no GPU work is done',
    is_software: true,
    limits: {},
  });
}

/** A small seeded generator (mulberry32), so that a seed gives the same curves. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function check(cfg) {
  const positive = ['n_saes', 'm', 'k', 'batch'];
  for (const key of positive) {
    if (!(Number.isInteger(cfg[key]) && cfg[key] > 0)) throw new Error(`${key} = ${cfg[key]}: must be a positive integer`);
  }
  if (cfg.n_saes < 2) throw new Error(`n_saes = ${cfg.n_saes}: MFR needs at least 2 SAEs`);
  if (cfg.k > cfg.m) throw new Error(`k = ${cfg.k} is larger than m = ${cfg.m}`);
  if (!(cfg.lambda >= 0)) throw new Error(`lambda = ${cfg.lambda}: must be >= 0`);
  if (!['tied', 'standard'].includes(cfg.arch)) throw new Error(`arch = "${cfg.arch}": expected "tied" or "standard"`);
  if (!['max', 'match'].includes(cfg.form)) throw new Error(`form = "${cfg.form}": expected "max" or "match"`);
}

export class Trainer {
  constructor(cfg) {
    this.cfg = cfg;
    this.t = 0;
    this.busy = false;
    this.freed = false;
    this.random = rng(cfg.seed + 1);
    this.records = [];
    this.runs = [{ name: 'mfr', lambda: cfg.lambda }];
    if (cfg.compare) this.runs.push({ name: 'baseline', lambda: 0 });
  }

  static async create(json) {
    const cfg = JSON.parse(json);
    check(cfg);
    await sleep(20);
    const trainer = new Trainer(cfg);
    trainer.info = { kind: 'synthetic', d: cfg.data.d, true_features: cfg.data.n_features };
    return trainer;
  }

  /** A made-up EEG (.edf: 14 channels × 128 samples) or activation (d = 576) data set; nothing is parsed. */
  static async createFromFile(json, name, bytes) {
    const cfg = JSON.parse(json);
    check(cfg);
    if (bytes.length < 256) throw new Error(`${name}: truncated: ${bytes.length} bytes (mock)`);
    await sleep(20);
    const trainer = new Trainer(cfg);
    trainer.info = name.toLowerCase().endsWith('.edf')
      ? { kind: 'eeg', name, d: 14 * 128, channels: 14, labels: Array.from({ length: 14 }, (_, c) => `C${c}`),
        sample_rate: 128, samples_per_segment: 128, train_rows: 310, held_out_rows: 75, stride_samples: 32 }
      : { kind: 'activations', name, d: 576, rows: 5000, train_rows: 4000, held_out_rows: 1000, scale: 1 };
    return trainer;
  }

  dataInfo() {
    return JSON.stringify(this.info);
  }

  /** Sines of made-up frequencies per atom and channel. */
  atoms(run, sae, count) {
    return this.exclusive(async () => {
      const { d } = this.info;
      const n = Math.min(count, this.cfg.m);
      const latents = Array.from({ length: n }, (_, j) => j);
      const atoms = latents.map((j) => Array.from({ length: d }, (_, i) => Math.sin((i % 128) * (j + 1) * 0.1 + Math.floor(i / 128))));
      return JSON.stringify({ latents, firing: latents.map((j) => 50 - j), atoms });
    });
  }

  /** A noisy sine as the held-out row, a smoother one as its reconstruction. */
  segment(run, sae, index) {
    return this.exclusive(async () => {
      if (this.info.kind === 'synthetic') throw new Error('segments are shown for loaded files (EEG, activations)');
      const { d, held_out_rows: rows } = this.info;
      if (index >= rows) throw new Error(`held-out row ${index}: there are ${rows}`);
      const reconstruction = Array.from({ length: d }, (_, i) => Math.sin(i * 0.2 + index));
      const input = reconstruction.map((v) => v + 0.3 * (this.random() - 0.5));
      const mse = input.reduce((s, v, i) => s + (v - reconstruction[i]) ** 2, 0) / d;
      return JSON.stringify({ index, rows, input, reconstruction, mse });
    });
  }

  /** Held-out errors per SAE: the MSE curve of sae() plus a little, as heldOut() of src/web.rs. */
  heldOut(run) {
    return this.exclusive(async () => {
      if (this.info.kind === 'synthetic') throw new Error('held-out rows exist for loaded files (EEG, activations)');
      const rows = this.info.held_out_rows;
      const mse = Array.from({ length: this.cfg.n_saes }, (_, i) => this.sae(this.runs[run], i, this.t).mse * 1.1);
      return JSON.stringify({ rows, used: Math.min(rows, 256), mse });
    });
  }

  /** Runs `body` as the one call in flight, as the real trainer does. */
  async exclusive(body) {
    if (this.freed) throw new Error('null pointer passed to rust');
    if (this.busy) throw new Error('busy');
    this.busy = true;
    try {
      return await body();
    } finally {
      this.busy = false;
    }
  }

  step(n) {
    return this.exclusive(async () => {
      await sleep(STEP_MS * n);
      this.t += n;
    });
  }

  steps() {
    if (this.freed) throw new Error('null pointer passed to rust');
    return this.t;
  }

  /** Agreement between SAEs at step t: MFR (λ > 0) agrees sooner. */
  agreement(lambda, t) {
    return 1 - 0.75 * Math.exp(-t / (lambda > 0 ? 150 : 400));
  }

  sae(run, i, t) {
    const { cfg } = this;
    const noise = () => 0.01 * (this.random() - 0.5);
    const floor = run.lambda > 0 ? 0.04 : 0.05;
    const mse = floor + 0.9 * (1 + 0.05 * i) * Math.exp(-t / 120) + noise();
    const w = t < cfg.warmup_steps ? 0.5 * (1 + Math.cos((Math.PI * (cfg.warmup_steps - t)) / cfg.warmup_steps)) : 1;
    const agree = this.agreement(run.lambda, t) + noise();
    const mfrLoss = run.lambda * w * (1 - agree);
    return {
      step: t, sae: i, steps: t,
      mse, fvu: mse / 1.3, l0: cfg.k, l1: cfg.k * 0.4, dead_fraction: Math.max(0, 0.2 * Math.exp(-t / 80) + noise()),
      reinit_stat_max: 0.5, reinit_over: 0, aux_mse: 0, lr: cfg.lr, mfr_weight: run.lambda * w,
      penalty_mmcs: run.lambda > 0 ? agree : null, mfr_loss: mfrLoss,
      mmcs_max_to_others: agree + 0.03, mmcs_match_to_others: agree,
      truth: this.info.kind !== 'synthetic' ? null : { matched: this.agreement(run.lambda, t) * 0.95 + noise(), max: 0.97 * this.agreement(run.lambda, t) + 0.02, recovered: Math.max(0, this.agreement(run.lambda, t) - 0.3) },
    };
  }

  /** @returns {Promise<string>} JSON of a {@link Metrics} record. */
  metrics() {
    return this.exclusive(async () => {
      await sleep(5);
      const t = this.t;
      const runs = this.runs.map((run) => {
        const saes = Array.from({ length: this.cfg.n_saes }, (_, i) => this.sae(run, i, t));
        const pairs = [];
        for (let a = 0; a < this.cfg.n_saes; a++) {
          for (let b = a + 1; b < this.cfg.n_saes; b++) {
            const s = this.agreement(run.lambda, t);
            pairs.push({ a, b, max_ab: s + 0.03, max_ba: s + 0.02, matched: s });
          }
        }
        return { name: run.name, lambda: run.lambda, saes, pairs };
      });
      const record = { step: t, runs };
      this.records.push(record);
      return JSON.stringify(record);
    });
  }

  /** @returns {Promise<Heatmap>} */
  heatmap(run, a, b) {
    return this.exclusive(async () => {
      const { m } = this.cfg;
      const s = this.agreement(this.runs[run].lambda, this.t);
      const order = (salt) => Array.from({ length: m }, (_, i) => (i * (2 * salt + 1) + salt) % m);
      const values = new Float32Array(m * m);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < m; j++) {
          const off = 0.4 * (this.random() - 0.5);
          values[i * m + j] = i === j ? Math.min(1, s + 0.1 * (this.random() - 0.5)) : off;
        }
      }
      return { m, rows: Uint32Array.from(order(a)), cols: Uint32Array.from(order(b + 1)), values };
    });
  }

  motivation(run) {
    return this.exclusive(async () => {
      if (this.info.kind !== 'synthetic') throw new Error('this data has no true features (mock)');
      const s = this.agreement(this.runs[run].lambda, this.t);
      const points = [];
      for (let sae = 0; sae < this.cfg.n_saes; sae++) {
        for (let latent = 0; latent < this.cfg.m; latent++) {
          const truth = Math.min(1, s * this.random() ** 0.3);
          points.push({ sae, latent, truth_cos: truth, other_cos: Math.min(1, 0.8 * truth + 0.25 * this.random()) });
        }
      }
      return JSON.stringify({ points });
    });
  }

  exportSaelens(run, sae) {
    return this.exclusive(async () => {
      const cfg = JSON.stringify({ architecture: 'topk', d_in: this.info.d, d_sae: this.cfg.m, k: this.cfg.k, mock: true, run, sae }, null, 2);
      const header = new TextEncoder().encode(JSON.stringify({ __metadata__: { mock: 'true' } }));
      const weights = new Uint8Array(8 + header.length);
      new DataView(weights.buffer).setBigUint64(0, BigInt(header.length), true);
      weights.set(header, 8);
      return { cfg, weights, warnings: [] };
    });
  }

  metricsCsv() {
    const rows = ['step,run,sae,mse,fvu,l0,dead_fraction,mfr_loss'];
    for (const rec of this.records) {
      for (const run of rec.runs) {
        for (const s of run.saes) rows.push([rec.step, run.name, s.sae, s.mse, s.fvu, s.l0, s.dead_fraction, s.mfr_loss].join(','));
      }
    }
    return rows.join('\n') + '\n';
  }

  free() {
    if (this.freed) throw new Error('null pointer passed to rust');
    this.freed = true;
  }
}
