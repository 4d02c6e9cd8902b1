//! One Rust wrapper per WGSL kernel: it compiles the shader once (in
//! `Kernels::new`), checks the shapes of the tensors it is given, and returns a
//! `Dispatch` bound to them (`Kernel::dispatch`, with the interface declared once in
//! `contract`). Buffer layouts are written here once, row-major.
//! What each kernel computes is documented at the top of its `.wgsl` file and
//! mirrored, in f64, by `crate::reference`.

mod activation;
mod adam;
mod batchtopk;
pub mod contract;
mod elementwise;
mod loss;
mod matmul;
mod metrics;
mod mfr;
mod normalise;
mod reduce;
mod sparse;
mod texture;

pub use activation::TopK;
pub use adam::{AdamSlot, STEP_UNIFORM_BYTES};
pub use batchtopk::{BatchTopKScratch, BATCH_TOPK_THRESHOLD_LR};
#[cfg(not(target_arch = "wasm32"))]
pub use matmul::cache as matmul_cache;
pub use matmul::{
    autotune as autotune_matmul, MatmulChoice, MatmulReason, MatmulTune, MatmulVariant, Op, SHAPE_CLASSES, TUNE_SHAPE,
};
pub use metrics::{CodeOf, Deviation, StepMetrics, WindowSlots};
pub use mfr::{groups_of, GroupScratch, Groups, MaxPartials, MfrStep, MmcsForm, PairGradients, MFR_STEP_UNIFORM_BYTES};
pub use reduce::ColumnOp;
pub use sparse::{Csc, SparseCode, SparseWidth};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use contract::{EntryPoint, Kernel};

/// Every compiled kernel. Built once per device and shared by all SAEs on it.
pub struct Kernels {
    matmul: matmul::Matmul,
    sparse_width: Option<SparseWidth>,
    read_textures: bool,
    textures: texture::Textures,

    topk: Kernel,
    topk_candidates_texture: Kernel,
    topk_select_texture: Kernel,
    relu: Kernel,
    act_backward: Kernel,
    mse: Kernel,
    columns: Kernel,
    total: Kernel,
    rows_normalise: Kernel,
    renormalise: Kernel,
    project: Kernel,
    adam: Kernel,
    add_row_vector: Kernel,
    axpby: Kernel,
    mask_dead: Kernel,
    latent_stats: Kernel,
    latent_stats_sparse: Kernel,
    window: Kernel,
    mfr_max_tiles: Kernel,
    mfr_max_reduce: Kernel,
    mfr_column_max: Kernel,
    mfr_matched: Kernel,
    mfr_grad_a: Kernel,
    mfr_grad_b: Kernel,
    mfr_matched_pairs: Kernel,
    mfr_grad_pairs: Kernel,
    mfr_group_count: Kernel,
    mfr_group_scan: Kernel,
    mfr_group_fill: Kernel,
    mfr_group_sort: Kernel,
    sparse_decode: Kernel,
    sparse_decode_texture: Kernel,
    sparse_code_gradient: Kernel,
    sparse_code_gradient_texture: Kernel,
    csc_count: Kernel,
    csc_offsets: Kernel,
    csc_fill: Kernel,
    sparse_scatter: Kernel,
    sparse_scatter_texture: Kernel,
    btk_start: Kernel,
    btk_histogram: Kernel,
    btk_pick: Kernel,
    btk_keep: Kernel,
    btk_threshold: Kernel,
    /// Bound where a kernel's optional input is absent (no bias, no norms).
    unused: Tensor<f32>,
}

/// WGSL sources, embedded so the native binary and the wasm module carry them. A family's
/// shared declarations live once in `shaders/common/` and are prepended here (`PRELUDES`);
/// each file names what it is given.
pub mod source {
    /// The shared parts in `shaders/common/`, each prepended to its family's shaders.
    pub const PRELUDES: &[&str] = &[
        "batchtopk",
        "matmul_blocks",
        "metrics_latents",
        "mfr",
        "sparse",
        "sparse_code_gradient",
        "sparse_decode",
        "sparse_products",
        "sparse_scatter",
        "topk",
        "topk_candidates",
        "topk_select",
    ];

    pub const MATMUL_REGISTER: &str = concat!(
        include_str!("../../shaders/common/matmul_blocks.wgsl"),
        include_str!("../../shaders/matmul_register.wgsl")
    );
    pub const MATMUL_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/matmul_blocks.wgsl"),
        include_str!("../../shaders/matmul_texture.wgsl")
    );
    pub const MATMUL_TILED: &str = include_str!("../../shaders/matmul_tiled.wgsl");
    pub const ACTIVATION: &str = concat!(
        include_str!("../../shaders/common/topk.wgsl"),
        include_str!("../../shaders/common/topk_candidates.wgsl"),
        include_str!("../../shaders/common/topk_select.wgsl"),
        include_str!("../../shaders/activation.wgsl")
    );
    pub const TOPK_CANDIDATES_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/topk.wgsl"),
        include_str!("../../shaders/common/topk_candidates.wgsl"),
        include_str!("../../shaders/topk_candidates_texture.wgsl")
    );
    pub const TOPK_SELECT_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/topk.wgsl"),
        include_str!("../../shaders/common/topk_select.wgsl"),
        include_str!("../../shaders/topk_select_texture.wgsl")
    );
    pub const ACTIVATION_BACKWARD: &str = include_str!("../../shaders/activation_backward.wgsl");
    pub const ACTIVATION_MASK_DEAD: &str = include_str!("../../shaders/activation_mask_dead.wgsl");
    pub const LOSS: &str = include_str!("../../shaders/loss.wgsl");
    pub const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
    pub const REDUCE_TOTAL: &str = include_str!("../../shaders/reduce_total.wgsl");
    pub const METRICS_LATENTS: &str = concat!(
        include_str!("../../shaders/common/metrics_latents.wgsl"),
        include_str!("../../shaders/metrics_latents.wgsl")
    );
    pub const METRICS_LATENTS_SPARSE: &str = concat!(
        include_str!("../../shaders/common/metrics_latents.wgsl"),
        include_str!("../../shaders/metrics_latents_sparse.wgsl")
    );
    pub const METRICS_WINDOW: &str = include_str!("../../shaders/metrics_window.wgsl");
    pub const NORMALISE: &str = include_str!("../../shaders/normalise.wgsl");
    pub const NORMALISE_PROJECT: &str = include_str!("../../shaders/normalise_project.wgsl");
    pub const ADAM: &str = include_str!("../../shaders/adam.wgsl");
    pub const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
    pub const ELEMENTWISE_AXPBY: &str = include_str!("../../shaders/elementwise_axpby.wgsl");
    pub const MFR_MAX_TILES: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_max_tiles.wgsl")
    );
    pub const MFR_MAX_REDUCE: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_max_reduce.wgsl")
    );
    pub const MFR_COLUMN_MAX: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_column_max.wgsl")
    );
    pub const MFR_MATCHED: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_matched.wgsl")
    );
    pub const MFR_MATCHED_PAIRS: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_matched_pairs.wgsl")
    );
    pub const MFR_GRAD_PAIRS: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_grad_pairs.wgsl")
    );
    pub const MFR_GRAD_A: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_grad_a.wgsl")
    );
    pub const MFR_GRAD_B: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_grad_b.wgsl")
    );
    pub const MFR_GROUPS: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_groups.wgsl")
    );
    pub const MFR_GROUP_SCAN: &str = concat!(
        include_str!("../../shaders/common/mfr.wgsl"),
        include_str!("../../shaders/mfr_group_scan.wgsl")
    );
    pub const SPARSE: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_products.wgsl"),
        include_str!("../../shaders/common/sparse_decode.wgsl"),
        include_str!("../../shaders/sparse.wgsl")
    );
    pub const SPARSE_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_products.wgsl"),
        include_str!("../../shaders/common/sparse_decode.wgsl"),
        include_str!("../../shaders/sparse_texture.wgsl")
    );
    pub const SPARSE_CODE_GRADIENT: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_code_gradient.wgsl"),
        include_str!("../../shaders/sparse_code_gradient.wgsl")
    );
    pub const SPARSE_CODE_GRADIENT_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_code_gradient.wgsl"),
        include_str!("../../shaders/sparse_code_gradient_texture.wgsl")
    );
    pub const SPARSE_CSC_COUNT: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/sparse_csc_count.wgsl")
    );
    pub const SPARSE_CSC_OFFSETS: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/sparse_csc_offsets.wgsl")
    );
    pub const SPARSE_CSC_FILL: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/sparse_csc_fill.wgsl")
    );
    pub const SPARSE_SCATTER: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_products.wgsl"),
        include_str!("../../shaders/common/sparse_scatter.wgsl"),
        include_str!("../../shaders/sparse_scatter.wgsl")
    );
    pub const SPARSE_SCATTER_TEXTURE: &str = concat!(
        include_str!("../../shaders/common/sparse.wgsl"),
        include_str!("../../shaders/common/sparse_products.wgsl"),
        include_str!("../../shaders/common/sparse_scatter.wgsl"),
        include_str!("../../shaders/sparse_scatter_texture.wgsl")
    );

    pub const BATCH_TOPK: &str = concat!(
        include_str!("../../shaders/common/batchtopk.wgsl"),
        include_str!("../../shaders/batchtopk.wgsl")
    );
    pub const BATCHTOPK_HISTOGRAM: &str = concat!(
        include_str!("../../shaders/common/batchtopk.wgsl"),
        include_str!("../../shaders/batchtopk_histogram.wgsl")
    );
    pub const BATCHTOPK_PICK: &str = concat!(
        include_str!("../../shaders/common/batchtopk.wgsl"),
        include_str!("../../shaders/batchtopk_pick.wgsl")
    );
    pub const BATCHTOPK_KEEP: &str = concat!(
        include_str!("../../shaders/common/batchtopk.wgsl"),
        include_str!("../../shaders/batchtopk_keep.wgsl")
    );
    pub const BATCHTOPK_THRESHOLD: &str = concat!(
        include_str!("../../shaders/common/batchtopk.wgsl"),
        include_str!("../../shaders/batchtopk_threshold.wgsl")
    );
    /// Every shader but the matmul variants (which `Kernels` specialises before compiling), by
    /// the name an `EntryPoint` gives.
    pub const ALL: &[(&str, &str)] = &[
        ("activation", ACTIVATION),
        ("topk_candidates_texture", TOPK_CANDIDATES_TEXTURE),
        ("topk_select_texture", TOPK_SELECT_TEXTURE),
        ("activation_backward", ACTIVATION_BACKWARD),
        ("activation_mask_dead", ACTIVATION_MASK_DEAD),
        ("loss", LOSS),
        ("reduce", REDUCE),
        ("reduce_total", REDUCE_TOTAL),
        ("metrics_latents", METRICS_LATENTS),
        ("metrics_latents_sparse", METRICS_LATENTS_SPARSE),
        ("metrics_window", METRICS_WINDOW),
        ("normalise", NORMALISE),
        ("normalise_project", NORMALISE_PROJECT),
        ("adam", ADAM),
        ("elementwise", ELEMENTWISE),
        ("elementwise_axpby", ELEMENTWISE_AXPBY),
        ("mfr_max_tiles", MFR_MAX_TILES),
        ("mfr_max_reduce", MFR_MAX_REDUCE),
        ("mfr_column_max", MFR_COLUMN_MAX),
        ("mfr_matched", MFR_MATCHED),
        ("mfr_matched_pairs", MFR_MATCHED_PAIRS),
        ("mfr_grad_pairs", MFR_GRAD_PAIRS),
        ("mfr_grad_a", MFR_GRAD_A),
        ("mfr_grad_b", MFR_GRAD_B),
        ("mfr_groups", MFR_GROUPS),
        ("mfr_group_scan", MFR_GROUP_SCAN),
        ("sparse", SPARSE),
        ("sparse_texture", SPARSE_TEXTURE),
        ("sparse_code_gradient", SPARSE_CODE_GRADIENT),
        ("sparse_code_gradient_texture", SPARSE_CODE_GRADIENT_TEXTURE),
        ("sparse_csc_count", SPARSE_CSC_COUNT),
        ("sparse_csc_offsets", SPARSE_CSC_OFFSETS),
        ("sparse_csc_fill", SPARSE_CSC_FILL),
        ("sparse_scatter", SPARSE_SCATTER),
        ("sparse_scatter_texture", SPARSE_SCATTER_TEXTURE),
        ("batchtopk", BATCH_TOPK),
        ("batchtopk_histogram", BATCHTOPK_HISTOGRAM),
        ("batchtopk_pick", BATCHTOPK_PICK),
        ("batchtopk_keep", BATCHTOPK_KEEP),
        ("batchtopk_threshold", BATCHTOPK_THRESHOLD),
    ];

    /// The source of the shader `name` in `ALL`.
    pub(super) fn of(name: &str) -> &'static str {
        ALL.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .expect("every EntryPoint names a shader in source::ALL")
    }
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
    /// Columns per invocation of the sparse decode and scatter for every shape (tests run
    /// both); None chooses by shape (`SparseWidth::for_shape`).
    pub sparse_width: Option<SparseWidth>,
    /// Whether TopK (its input and candidates) and the sparse decode, code gradient and
    /// scatter (the operands they gather rows of: the dictionary; g; y) read from textures
    /// where they fit (tests run both): None
    /// reads them so where `texture::preferred` says (llvmpipe: the synthetic step's two
    /// scatters took 47 ms so against 162 from storage buffers, its decode 17 against 79, its
    /// code gradient 14 against 80, on a 2-core Zen 3).
    pub textures: Option<bool>,
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

        let k = |spec: &'static EntryPoint| Kernel::new(gpu, spec, &edit(spec.shader, source::of(spec.shader)));
        let choice = MatmulChoice::new(&gpu.report, options.matmul, options.tuned.as_ref());
        Ok(Kernels {
            sparse_width: options.sparse_width,
            read_textures: options.textures.unwrap_or_else(|| texture::preferred(&gpu.report)),
            textures: texture::Textures::default(),
            matmul: matmul::Matmul::new(
                matmul::Sources {
                    register: edit("matmul_register", MATMUL_REGISTER),
                    texture: edit("matmul_texture", MATMUL_TEXTURE),
                    tiled: edit("matmul_tiled", MATMUL_TILED),
                },
                choice,
            ),

            topk: k(&activation::TOPK),
            topk_candidates_texture: k(&activation::TOPK_CANDIDATES_TEXTURE),
            topk_select_texture: k(&activation::TOPK_SELECT_TEXTURE),
            relu: k(&activation::RELU),
            act_backward: k(&activation::BACKWARD),
            mse: k(&loss::MSE),
            columns: k(&reduce::COLUMNS),
            total: k(&reduce::TOTAL),
            rows_normalise: k(&normalise::ROWS),
            renormalise: k(&normalise::RENORMALISE),
            project: k(&normalise::PROJECT),
            adam: k(&adam::ADAM),
            add_row_vector: k(&elementwise::ADD_ROW_VECTOR),
            axpby: k(&elementwise::AXPBY),
            mask_dead: k(&activation::MASK_DEAD),
            latent_stats: k(&metrics::LATENTS),
            latent_stats_sparse: k(&metrics::LATENTS_SPARSE),
            window: k(&metrics::WINDOW),
            mfr_max_tiles: k(&mfr::MAX_TILES),
            mfr_max_reduce: k(&mfr::MAX_REDUCE),
            mfr_column_max: k(&mfr::COLUMN_MAX),
            mfr_matched: k(&mfr::MATCHED),
            mfr_grad_a: k(&mfr::GRAD_A),
            mfr_grad_b: k(&mfr::GRAD_B),
            mfr_matched_pairs: k(&mfr::MATCHED_PAIRS),
            mfr_grad_pairs: k(&mfr::GRAD_PAIRS),
            mfr_group_count: k(&mfr::GROUP_COUNT),
            mfr_group_scan: k(&mfr::GROUP_SCAN),
            mfr_group_fill: k(&mfr::GROUP_FILL),
            mfr_group_sort: k(&mfr::GROUP_SORT),
            sparse_decode: k(&sparse::DECODE),
            sparse_decode_texture: k(&sparse::DECODE_TEXTURE),
            sparse_code_gradient: k(&sparse::CODE_GRADIENT),
            sparse_code_gradient_texture: k(&sparse::CODE_GRADIENT_TEXTURE),
            csc_count: k(&sparse::COUNT),
            csc_offsets: k(&sparse::OFFSETS),
            csc_fill: k(&sparse::FILL),
            sparse_scatter: k(&sparse::SCATTER),
            sparse_scatter_texture: k(&sparse::SCATTER_TEXTURE),
            btk_start: k(&batchtopk::START),
            btk_histogram: k(&batchtopk::HISTOGRAM),
            btk_pick: k(&batchtopk::PICK),
            btk_keep: k(&batchtopk::KEEP),
            btk_threshold: k(&batchtopk::THRESHOLD),
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
