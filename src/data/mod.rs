//! Data sources: where batches come from. Each source knows its width d and,
//! for synthetic data, the true features the metrics compare against, and
//! where its stream stands (`SourceState`), so a checkpoint can resume it.

pub mod activations;
pub mod edf;
pub mod eeg;
pub mod filter;
pub mod synthetic;
pub mod validate;

use crate::error::{Error, Result};
use crate::rng::RngState;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Where a stream of batches stands: enough to continue it exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceState {
    /// The stream's random generator (data points, or the order rows are served in).
    pub rng: RngState,
    /// File sources: rows read from the file this epoch; in-memory rows: rows served
    /// this epoch; 0 for synthetic data.
    pub position: u64,
    /// File sources: the file rows the shuffling buffer holds, in its order; in-memory
    /// rows: this epoch's order; empty for synthetic data. Kept out of the JSON (a
    /// checkpoint stores it as a tensor).
    #[serde(skip)]
    pub rows: Vec<u64>,
}

/// A stream of batches, row-major [rows, d] f32.
pub trait Source {
    fn d(&self) -> usize;
    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>>;
    /// The next batch and, for denoising, the clean target it should be
    /// reconstructed as (None: the batch is its own target).
    fn next_pair(&mut self, rows: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        Ok((self.next_batch(rows)?, None))
    }
    /// The true features [n, d], where the data has them.
    fn truth(&self) -> Option<&[f32]> {
        None
    }
    /// Where the stream stands, for a checkpoint; None: this source cannot resume.
    fn state(&self) -> Option<SourceState> {
        None
    }
    /// Puts the stream where `state` says (a state from `state()` of the same source).
    fn restore(&mut self, _state: &SourceState) -> Result<()> {
        Err(Error::Config("this data source cannot resume from a checkpoint".into()))
    }
}

/// Rows held in memory, served in a fresh seeded random order every epoch
/// (each row once per epoch; a batch may span two epochs). The rows are shared, not
/// copied: an experiment's runs serve one split's training rows.
pub struct Rows {
    d: usize,
    data: Arc<[f32]>,
    order: Vec<usize>,
    next: usize,
    rng: crate::rng::Rng,
}

impl Rows {
    pub fn new(data: impl Into<Arc<[f32]>>, d: usize, seed: u64) -> Result<Rows> {
        let data = data.into();
        if d == 0 || data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(Error::Shape(format!(
                "{} values do not make whole rows of width {d}",
                data.len()
            )));
        }
        let order = (0..data.len() / d).collect();
        let mut rows = Rows {
            d,
            data,
            order,
            next: 0,
            rng: crate::rng::Rng::new(seed),
        };
        rows.shuffle();
        Ok(rows)
    }

    /// The rows, in their stored order: [rows, d] row-major.
    pub fn values(&self) -> &[f32] {
        &self.data
    }

    fn shuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = self.rng.below(i + 1);
            self.order.swap(i, j);
        }
        self.next = 0;
    }
}

impl Source for Rows {
    fn d(&self) -> usize {
        self.d
    }

    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows * self.d);
        for _ in 0..rows {
            if self.next == self.order.len() {
                self.shuffle();
            }
            let r = self.order[self.next];
            self.next += 1;
            out.extend_from_slice(&self.data[r * self.d..(r + 1) * self.d]);
        }
        Ok(out)
    }

    fn state(&self) -> Option<SourceState> {
        Some(SourceState {
            rng: self.rng.state(),
            position: self.next as u64,
            rows: self.order.iter().map(|&r| r as u64).collect(),
        })
    }

    fn restore(&mut self, state: &SourceState) -> Result<()> {
        let n = self.order.len();
        let mut seen = vec![false; n];
        let permutation = state.rows.len() == n
            && state
                .rows
                .iter()
                .all(|&r| (r as usize) < n && !std::mem::replace(&mut seen[r as usize], true));
        if !permutation || state.position > n as u64 {
            return Err(Error::Config(format!(
                "the saved row order ({} rows, position {}) does not fit this data's {n} rows",
                state.rows.len(),
                state.position
            )));
        }
        self.rng = crate::rng::Rng::from_state(&state.rng)?;
        self.order = state.rows.iter().map(|&r| r as usize).collect();
        self.next = state.position as usize;
        Ok(())
    }
}

/// Adds noise to a clean batch; the second argument counts batches (for seeding).
pub type NoiseFn = Box<dyn FnMut(&[f32], u64) -> Result<Vec<f32>>>;

/// A source whose batches get noise added: the noisy batch is the input and the
/// clean one the target (denoising).
pub struct Noisy<S> {
    pub inner: S,
    pub add_noise: NoiseFn,
    batches: u64,
}

impl<S: Source> Noisy<S> {
    pub fn new(inner: S, add_noise: NoiseFn) -> Noisy<S> {
        Noisy {
            inner,
            add_noise,
            batches: 0,
        }
    }
}

impl<S: Source> Source for Noisy<S> {
    fn d(&self) -> usize {
        self.inner.d()
    }

    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>> {
        Ok(self.next_pair(rows)?.0)
    }

    fn next_pair(&mut self, rows: usize) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let clean = self.inner.next_batch(rows)?;
        self.batches += 1;
        let noisy = (self.add_noise)(&clean, self.batches)?;
        Ok((noisy, Some(clean)))
    }
}
