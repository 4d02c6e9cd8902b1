//! Data sources: where batches come from. Each source knows its width d and,
//! for synthetic data, the true features the metrics compare against.

pub mod activations;
pub mod edf;
pub mod eeg;
pub mod filter;
pub mod synthetic;
pub mod validate;

use crate::error::Result;

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
}

/// Rows held in memory, served in a fresh seeded random order every epoch
/// (each row once per epoch; a batch may span two epochs).
pub struct Rows {
    d: usize,
    data: Vec<f32>,
    order: Vec<usize>,
    next: usize,
    rng: crate::rng::Rng,
}

impl Rows {
    pub fn new(data: Vec<f32>, d: usize, seed: u64) -> Result<Rows> {
        if d == 0 || data.is_empty() || !data.len().is_multiple_of(d) {
            return Err(crate::error::Error::Shape(format!(
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
