// The shapes that cross the page's boundary with the trainer (src/web.rs, and its
// stand-in web/dev/mock_pkg.js), as JSDoc typedefs for both sides: app.js and the
// views read them, the mock produces them. No code: `import('./types.js').Metrics`.

/**
 * @typedef {object} Recovery  How well a dictionary recovers the true features (synthetic data).
 * @property {number} matched  Σ over the one-to-one matching of cosines / number of true features.
 * @property {number} max  Mean over true features of the best cosine.
 * @property {number} recovered  Fraction of true features with a latent above cosine 0.9.
 */

/**
 * @typedef {object} SaeRecord  One SAE at one metrics read (averages over the window since the read before).
 * @property {number} step
 * @property {number} sae
 * @property {number} mse
 * @property {number} fvu
 * @property {number} l0
 * @property {number} dead_fraction
 * @property {number} mfr_weight  λ·w(t).
 * @property {number} mfr_loss
 * @property {Recovery|null} truth  null for real data.
 */

/**
 * @typedef {object} PairRecord  One pair of SAEs of a run.
 * @property {number} a
 * @property {number} b
 * @property {number} matched  MMCS_match(a, b).
 * @property {number} max_ab
 * @property {number} max_ba
 */

/**
 * @typedef {object} RunMetrics
 * @property {'mfr'|'baseline'} name
 * @property {number} lambda
 * @property {SaeRecord[]} saes
 * @property {PairRecord[]} pairs
 */

/**
 * @typedef {object} Metrics  Trainer.metrics(), parsed.
 * @property {number} step
 * @property {RunMetrics[]} runs  mfr first, then baseline in compare mode.
 */

/**
 * @typedef {object} Heatmap  Trainer.heatmap(): typed arrays, no JSON.
 * @property {number} m
 * @property {Uint32Array} rows  Latents of SAE a in matching order.
 * @property {Uint32Array} cols  Latents of SAE b in matching order.
 * @property {Float32Array} values  [m·m] row-major cosines in that order.
 */

/**
 * @typedef {object} Motivation  Trainer.motivation(), parsed.
 * @property {{sae: number, latent: number, truth_cos: number, other_cos: number}[]} points
 */

/**
 * @typedef {object} HeldOut  Trainer.heldOut(), parsed (loaded files only).
 * @property {number} rows  Held-out rows there are.
 * @property {number} used  Rows used (at most 256, evenly spaced).
 * @property {number[]} mse  Per SAE.
 */

/**
 * @typedef {object} SaelensFiles  Trainer.exportSaelens(run, sae).
 * @property {string} cfg  cfg.json's text.
 * @property {Uint8Array} weights  sae_weights.safetensors.
 * @property {string[]} warnings  What SAELens will do differently (to be shown, e.g. paper-exact TopK).
 */

/**
 * @typedef {object} DataInfo  Trainer.dataInfo(), parsed.
 * @property {'synthetic'|'eeg'|'activations'} kind
 * @property {number} d
 * @property {number} [true_features]  Synthetic.
 * @property {string} [name]  Files.
 * @property {number} [train_rows]
 * @property {number} [held_out_rows]
 * @property {number} [channels]  EEG.
 * @property {string[]} [labels]  EEG channel labels.
 * @property {number} [sample_rate]  EEG.
 * @property {number} [samples_per_segment]  EEG.
 */

/**
 * @typedef {object} Atoms  Trainer.atoms(), parsed.
 * @property {number[]} latents
 * @property {number[]} firing
 * @property {number[][]} atoms  d values each (EEG: channels × samples, channel-major).
 */

/**
 * @typedef {object} Segment  Trainer.segment(), parsed.
 * @property {number} index
 * @property {number} rows
 * @property {number[]} input
 * @property {number[]} reconstruction
 * @property {number} mse
 */

/**
 * @typedef {object} Settings  The training settings that suit a kind of data.
 * @property {number} m
 * @property {number} k
 * @property {number} batch
 * @property {number} lambda
 * @property {number} lr
 * @property {number} warmup  MFR warm-up steps.
 */

/**
 * @typedef {object} DataSource  One entry of the page's data select.
 * @property {'synthetic'|'eeg'|'activations'|null} kind  null: the reader's file (its kind from its name).
 * @property {string} [url]  A sample file served beside the page.
 * @property {string} [meta]  The sample's .json (the LM sample's tokens).
 * @property {string} desc
 */

/**
 * @typedef {object} PageDefaults  pageDefaults(), parsed (src/experiment/page.rs).
 * @property {Object<string, object>} data  Generator → its SyntheticConfig (the trainer config's `data`).
 * @property {Object<string, DataSource>} sources
 * @property {Object<string, Settings>} defaults  Kind → settings applied when the data source changes.
 * @property {Object<string, Partial<Settings>>} software_defaults  Kind → what a software adapter replaces.
 */

export {};
