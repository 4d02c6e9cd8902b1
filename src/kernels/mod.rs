//! One Rust wrapper per WGSL kernel: it compiles the shader once (in
//! `Kernels::new`), checks the shapes of the tensors it is given, and returns a
//! `Dispatch` bound to them. Buffer layouts are written here once, row-major.
//! What each kernel computes is documented at the top of its `.wgsl` file and
//! mirrored, in f64, by `crate::reference`.

mod activation;
mod adam;
mod elementwise;
mod loss;
mod matmul;
mod mfr;
mod normalise;
mod reduce;
mod sparse;

pub use activation::TopK;
pub use adam::{AdamHyper, STEP_UNIFORM_BYTES};
#[cfg(not(target_arch = "wasm32"))]
pub use matmul::cache as matmul_cache;
pub use matmul::{
    autotune as autotune_matmul, MatmulChoice, MatmulReason, MatmulTune, MatmulVariant, Op, SHAPE_CLASSES, TUNE_SHAPE,
};
pub use mfr::{groups_of, GroupScratch, Groups, MaxPartials, MmcsForm, MFR_STEP_UNIFORM_BYTES};
pub use reduce::ColumnOp;
pub use sparse::{Csc, SparseCode};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Program, Tensor};

/// Every compiled kernel. Built once per device and shared by all SAEs on it.
pub struct Kernels {
    matmul: matmul::Matmul,
    topk: Program,
    relu: Program,
    act_backward: Program,
    mse: Program,
    columns: Program,
    total: Program,
    rows_normalise: Program,
    renormalise: Program,
    project: Program,
    adam: Program,
    add_row_vector: Program,
    fill: Program,
    axpby: Program,
    mask_dead: Program,
    since_fired: Program,
    deviation: Program,
    mfr_max_tiles: Program,
    mfr_max_reduce: Program,
    mfr_column_max: Program,
    mfr_matched: Program,
    mfr_grad_a: Program,
    mfr_grad_b: Program,
    mfr_group_count: Program,
    mfr_group_scan: Program,
    mfr_group_fill: Program,
    mfr_group_sort: Program,
    sparse_decode: Program,
    sparse_code_gradient: Program,
    csc_count: Program,
    csc_block_scan: Program,
    csc_scan: Program,
    csc_fill: Program,
    sparse_scatter: Program,
    sparse_columns: Program,
    /// Bound where a kernel's optional input is absent (no bias, no norms).
    unused: Tensor<f32>,
}

/// WGSL sources, embedded so the native binary and the wasm module carry them.
pub mod source {
    pub const MATMUL_REGISTER: &str = include_str!("../../shaders/matmul_register.wgsl");
    pub const MATMUL_TILED: &str = include_str!("../../shaders/matmul_tiled.wgsl");
    pub const ACTIVATION: &str = include_str!("../../shaders/activation.wgsl");
    pub const LOSS: &str = include_str!("../../shaders/loss.wgsl");
    pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
    pub const NORMALISE: &str = include_str!("../../shaders/normalise.wgsl");
    pub const ADAM: &str = include_str!("../../shaders/adam.wgsl");
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    pub const MFR: &str = include_str!("../../shaders/mfr.wgsl");
    pub const SPARSE: &str = include_str!("../../shaders/sparse.wgsl");
}

/// Workgroup width of the 1-D kernels (must match `WG` in the shaders).
const WG: u32 = 64;

/// How `Kernels` chooses among kernel variants (today: the matmul's).
#[derive(Clone, Debug, Default)]
pub struct KernelOptions {
    /// Use this matmul variant for every product (the `--matmul` flag, `MFR_SAE_MATMUL`).
    pub matmul: Option<MatmulVariant>,
    /// A tune result for this adapter (`autotune_matmul`, perhaps from a cache); used
    /// unless `matmul` forces a variant.
    pub tuned: Option<MatmulTune>,
}

impl Kernels {
    /// The kernels with the default variants for this adapter's device type.
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Self::with_options(gpu, KernelOptions::default())
    }

    /// The kernels with variants chosen by `options` (no timing happens here).
    pub fn with_options(gpu: &Gpu, options: KernelOptions) -> Result<Kernels> {
        Self::build(gpu, &options, |_, s| s.to_string())
    }

    /// Compiles every kernel after passing each source through `edit(name, source)`.
    /// Tests use it to plant a bug in one shader and check that a test notices.
    #[doc(hidden)]
    pub fn with_sources(gpu: &Gpu, edit: impl Fn(&str, &str) -> String) -> Result<Kernels> {
        Self::build(gpu, &KernelOptions::default(), edit)
    }

    fn build(gpu: &Gpu, options: &KernelOptions, edit: impl Fn(&str, &str) -> String) -> Result<Kernels> {
        use source::*;
        let p = |name: &'static str, src: &str, entry: &'static str| Program::new(gpu, name, &edit(name, src), entry);
        let choice = MatmulChoice::new(&gpu.report, options.matmul, options.tuned.as_ref());
        Ok(Kernels {
            matmul: matmul::Matmul::new(
                edit("matmul_register", MATMUL_REGISTER),
                edit("matmul_tiled", MATMUL_TILED),
                choice,
            ),
            topk: p("activation", ACTIVATION, "topk"),
            relu: p("activation", ACTIVATION, "relu"),
            act_backward: p("activation", ACTIVATION, "backward"),
            mse: p("loss", LOSS, "mse"),
            columns: p("reduce", REDUCE, "columns"),
            total: p("reduce", REDUCE, "total"),
            rows_normalise: p("normalise", NORMALISE, "rows"),
            renormalise: p("normalise", NORMALISE, "renormalise"),
            project: p("normalise", NORMALISE, "project"),
            adam: p("adam", ADAM, "main"),
            add_row_vector: p("elementwise", ELEMENTWISE, "add_row_vector"),
            fill: p("elementwise", ELEMENTWISE, "fill"),
            axpby: p("elementwise", ELEMENTWISE, "axpby"),
            mask_dead: p("activation", ACTIVATION, "mask_dead"),
            since_fired: p("activation", ACTIVATION, "since_fired"),
            deviation: p("reduce", REDUCE, "deviation"),
            mfr_max_tiles: p("mfr", MFR, "max_tiles"),
            mfr_max_reduce: p("mfr", MFR, "max_reduce"),
            mfr_column_max: p("mfr", MFR, "column_max"),
            mfr_matched: p("mfr", MFR, "matched"),
            mfr_grad_a: p("mfr", MFR, "grad_a"),
            mfr_grad_b: p("mfr", MFR, "grad_b"),
            mfr_group_count: p("mfr", MFR, "group_count"),
            mfr_group_scan: p("mfr", MFR, "group_scan"),
            mfr_group_fill: p("mfr", MFR, "group_fill"),
            mfr_group_sort: p("mfr", MFR, "group_sort"),
            sparse_decode: p("sparse", SPARSE, "decode"),
            sparse_code_gradient: p("sparse", SPARSE, "code_gradient"),
            csc_count: p("sparse", SPARSE, "count"),
            csc_block_scan: p("sparse", SPARSE, "block_scan"),
            csc_scan: p("sparse", SPARSE, "scan"),
            csc_fill: p("sparse", SPARSE, "fill"),
            sparse_scatter: p("sparse", SPARSE, "scatter"),
            sparse_columns: p("sparse", SPARSE, "columns"),
            unused: Tensor::zeros(gpu, &[1], "unused")?,
        })
    }
}

/// Rows and columns of a tensor read as a matrix (a vector is one row).
fn matrix_dims<T: bytemuck::Pod>(t: &Tensor<T>) -> (usize, usize) {
    match *t.shape() {
        [n] => (1, n),
        [r, c] => (r, c),
        _ => (t.len(), 1),
    }
}

fn expect_shape<T: bytemuck::Pod>(kernel: &str, what: &str, t: &Tensor<T>, dims: &[usize]) -> Result<()> {
    let (r, c) = matrix_dims(t);
    let ok = match dims {
        [n] => t.len() == *n,
        [rr, cc] => r == *rr && c == *cc,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{kernel}: `{what}` has shape {:?}, expected {dims:?}",
            t.shape()
        )))
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("tensor dimensions are bounded by the binding limit")
}
