//! Data sources: where batches come from. Each source knows its width d and,
//! for synthetic data, the true features the metrics compare against.

pub mod activations;
pub mod edf;
pub mod eeg;
pub mod filter;
pub mod synthetic;

use crate::error::Result;

/// A stream of batches, row-major [rows, d] f32.
pub trait Source {
    fn d(&self) -> usize;
    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>>;
    /// The true features [n, d], where the data has them.
    fn truth(&self) -> Option<&[f32]> {
        None
    }
}
