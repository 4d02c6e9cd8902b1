//! `shaders/metrics_latents.wgsl` and `metrics_latents_sparse.wgsl` (one step's per-latent
//! metrics and firing clock in one pass over the code) and `metrics_window.wgsl` (the step's
//! totals into the metrics accumulator, in one dispatch).

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, u32_of, Csc, Kernels, WG};
use crate::error::{Error, Result};
use crate::gpu::{Bind, Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Latents {
    rows: u32,
    m: u32,
    _pad: [u32; 2],
}

shader_params!(Latents as "Latents" { rows, m, _pad });
pub(super) const LATENTS: EntryPoint = EntryPoint::new("metrics_latents", "latents", &[layout_of::<Latents>], 5);
pub(super) const LATENTS_SPARSE: EntryPoint =
    EntryPoint::new("metrics_latents_sparse", "latents_sparse", &[layout_of::<Latents>], 7);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Window {
    rows: u32,
    aux_rows: u32,
    d: u32,
    m: u32,
    batch: f32,
    rate: f32,
    threshold: f32,
    deviation: u32,
    slot_sq: u32,
    slot_aux: u32,
    slot_var: u32,
    slot_active: u32,
    slot_abs: u32,
    slot_reinit: u32,
    /// Where the absolute sums start in stats (m; N·m stacked).
    stats_row: u32,
    /// Values between the SAEs' accumulators (stacked).
    acc_stride: u32,
}

shader_params!(Window as "Window" {
    rows, aux_rows, d, m, batch, rate, threshold, deviation,
    slot_sq, slot_aux, slot_var, slot_active, slot_abs, slot_reinit, stats_row, acc_stride
});
pub(super) const WINDOW: EntryPoint = EntryPoint::new("metrics_window", "window", &[layout_of::<Window>], 6);

/// The code whose per-latent metrics `latent_stats` takes.
pub enum CodeOf<'a> {
    /// z [rows, m].
    Dense(&'a Tensor<f32>),
    /// A TopK code's values val [rows, k] through its latent-major index.
    Sparse { csc: &'a Csc, val: &'a Tensor<f32> },
}

/// Where `window_totals` adds each total in the accumulator.
#[derive(Clone, Copy, Debug)]
pub struct WindowSlots {
    pub squared_error: usize,
    pub aux_squared_error: usize,
    pub target_variance: usize,
    pub active: usize,
    pub abs_code: usize,
    /// The reinit statistic's maximum; the slot after it counts steps above the threshold.
    pub reinit: usize,
}

/// The re-initialisation statistic's settings (TopK-like activations only).
#[derive(Clone, Copy, Debug)]
pub struct Deviation {
    /// Rows a step (the statistic's p_j = count_j / batch).
    pub batch: usize,
    /// Target firing rate k / m.
    pub rate: f32,
    pub threshold: f32,
}

/// One step's per-row and per-latent metrics, as `window_totals` reads them.
pub struct StepMetrics<'a> {
    /// Squared error per row [rows].
    pub row_sq: &'a Tensor<f32>,
    /// AuxK's squared error per row [rows], where AuxK trains.
    pub aux_sq: Option<&'a Tensor<f32>>,
    /// The target's centred squares per input [d] (`columns` with `CenteredSquares`).
    pub col_sq: &'a Tensor<f32>,
    /// `latent_stats`' [2, m]: firing counts, then absolute sums.
    pub stats: &'a Tensor<f32>,
    /// An ensemble's SAEs stacked in one dispatch (1 for one SAE): row_sq and aux_sq then
    /// hold N SAEs' rows, stats [2, N·m] their latents side by side (a stacked code's
    /// `latent_stats`), acc N accumulators; col_sq is shared.
    pub instances: usize,
}

impl Kernels {
    /// Per latent j of `code` (rows rows, m latents): stats[j] = its firing count and
    /// stats[m + j] = its absolute sum over the rows, firing[j] += the count, and
    /// since[j] = 0 where it fired, else since[j] + rows. For a stacked code (its index
    /// from `Csc::stacked`) j runs over the stack's latents and rows is each SAE's.
    pub fn latent_stats(
        &self,
        gpu: &Gpu,
        code: CodeOf<'_>,
        stats: &Tensor<f32>,
        firing: &Tensor<f32>,
        since: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, m) = match &code {
            CodeOf::Dense(z) => super::matrix_dims(z),
            CodeOf::Sparse { csc, val } => {
                expect_shape("latent_stats", "val", val, &[csc.rows, csc.k])?;
                (csc.rows, csc.m)
            }
        };
        let tokens = match &code {
            CodeOf::Sparse { csc, .. } => rows / csc.instances(),
            CodeOf::Dense(_) => rows,
        };
        expect_shape("latent_stats", "stats", stats, &[2, m])?;
        expect_shape("latent_stats", "firing", firing, &[m])?;
        expect_shape("latent_stats", "since", since, &[m])?;
        let params = Latents {
            rows: u32_of(tokens),
            m: u32_of(m),
            _pad: [0; 2],
        };
        let grid = gpu.grid_1d(m, WG);
        let out = [&stats, &firing, &since];
        Ok(match code {
            CodeOf::Dense(z) => {
                let buffers: &[&dyn Bind] = &[out[0], out[1], out[2], &z];
                self.latent_stats.dispatch(gpu, &params, buffers, grid)
            }
            CodeOf::Sparse { csc, val } => {
                let buffers: &[&dyn Bind] = &[out[0], out[1], out[2], &csc.offsets, &csc.entries, &val];
                self.latent_stats_sparse.dispatch(gpu, &params, buffers, grid)
            }
        })
    }

    /// Adds one step's totals of `step` to `acc` at `slots` (and, with `deviation`, the
    /// reinit statistic's maximum and count), in one workgroup and a fixed order.
    pub fn window_totals(
        &self,
        gpu: &Gpu,
        step: StepMetrics<'_>,
        deviation: Option<Deviation>,
        slots: WindowSlots,
        acc: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let n = step.instances;
        let (all_rows, (two, all_m)) = (step.row_sq.len(), super::matrix_dims(step.stats));
        if n == 0 || !all_rows.is_multiple_of(n) || !all_m.is_multiple_of(n) || !acc.len().is_multiple_of(n) {
            return Err(Error::Shape(format!(
                "window_totals: {all_rows} rows, {all_m} latents and {} slots do not split into {n} SAEs",
                acc.len()
            )));
        }
        let (rows, m, acc_stride) = (all_rows / n, all_m / n, acc.len() / n);
        if let Some(aux) = step.aux_sq {
            expect_shape("window_totals", "aux_sq", aux, &[all_rows])?;
        }
        if two != 2 {
            return Err(Error::Shape(format!(
                "window_totals: `stats` has shape {:?}, expected [2, m]",
                step.stats.shape()
            )));
        }
        let highest = [
            slots.squared_error,
            slots.aux_squared_error,
            slots.target_variance,
            slots.active,
            slots.abs_code,
            slots.reinit + 1,
        ];
        if let Some(&bad) = highest.iter().find(|&&s| s >= acc_stride) {
            return Err(Error::Shape(format!(
                "window_totals: slot {bad} is outside the accumulator of {acc_stride} values"
            )));
        }
        let dev = deviation.unwrap_or(Deviation {
            batch: 1,
            rate: 1.0,
            threshold: 0.0,
        });
        let params = Window {
            rows: u32_of(rows),
            aux_rows: step.aux_sq.map_or(0, |_| u32_of(rows)),
            d: u32_of(step.col_sq.len()),
            m: u32_of(m),
            batch: dev.batch as f32,
            rate: dev.rate,
            threshold: dev.threshold,
            deviation: deviation.is_some() as u32,
            slot_sq: u32_of(slots.squared_error),
            slot_aux: u32_of(slots.aux_squared_error),
            slot_var: u32_of(slots.target_variance),
            slot_active: u32_of(slots.active),
            slot_abs: u32_of(slots.abs_code),
            slot_reinit: u32_of(slots.reinit),
            stats_row: u32_of(all_m),
            acc_stride: u32_of(acc_stride),
        };
        let aux = step.aux_sq.unwrap_or(&self.unused);
        let buffers: &[&dyn Bind] = &[&step.row_sq, &aux, &step.col_sq, &step.stats, &acc];
        Ok(self.window.dispatch(gpu, &params, buffers, [1, 1, u32_of(n)]))
    }
}
