//! `shaders/matmul_register.wgsl`, `shaders/matmul_texture.wgsl` and `shaders/matmul_tiled.wgsl`:
//! C = alpha · op(A) · op(B) (+ bias row vector), in variants that suit different adapters,
//! which one chosen per transpose combination ("shape class") when the kernels are built.
//! Owns the variants, their lazily compiled specialisations, the choice and the autotune
//! that informs it; persisting a tune result is the native edge's business (`cache`).

use super::contract::{layout_of, shader_params, EntryPoint, Kernel};
use super::texture::{self, Role};
use super::{matrix_dims, u32_of, Kernels};
use crate::error::{Error, Result};
use crate::gpu::{AdapterReport, Bind, Dispatch, Gpu, Resource, Tensor};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// Whether an operand is used as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    N,
    T,
}

/// How the product is computed. Every variant computes the same thing (to rounding) for
/// every shape, transpose and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatmulVariant {
    /// Each invocation a 16×16 block of C in registers (8×8 where an operand's rows are not
    /// vec4-aligned), vec4 loads, no workgroup memory or barriers: for CPU drivers
    /// (lavapipe, SwiftShader), which run a workgroup as SIMD lanes and pay for every load
    /// and barrier.
    Register,
    /// The register variant's loop (8×8 blocks) reading a and b from rgba32float textures
    /// that the dispatch first fills by copies: for CPU drivers whose storage loads are slow
    /// (lavapipe loads them lane by lane). Only where every operand's contiguous size is a
    /// multiple of 64 (a texture row copy spans a multiple of 256 bytes), K a multiple of 4
    /// and the textures fit the adapter's limits; any other product runs the register
    /// variant (tiles for Aᵀ·B: `MatmulVariant::fallback_for`), whose shader the dispatch's
    /// `kernel()` then names.
    Texture,
    /// 64×64 tiles of C per workgroup, staged through workgroup memory (8 KiB), each
    /// invocation a 4×4 block: the classic SGEMM shape, for real GPUs.
    Tiled,
}

impl MatmulVariant {
    pub const ALL: [MatmulVariant; 3] = [MatmulVariant::Register, MatmulVariant::Texture, MatmulVariant::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Register => "register",
            MatmulVariant::Texture => "texture",
            MatmulVariant::Tiled => "tiled",
        }
    }

    /// The variant a device type gets for the transpose combination `class` without a tune
    /// result: workgroup tiles on GPUs; on llvmpipe (lavapipe) the texture variant, which the
    /// autotune measured 3–10× above the others in every class (2-core Zen 3, 256×256×512:
    /// 8.6–10.2 GFLOP/s against 0.8–3.2); on other CPU adapters what `fallback_for` gives.
    pub fn default_for(report: &AdapterReport, class: (Op, Op)) -> MatmulVariant {
        if texture::preferred(report) {
            MatmulVariant::Texture
        } else {
            MatmulVariant::fallback_for(report, class)
        }
    }

    /// The variant for products the texture variant does not take (and the default on CPU
    /// adapters other than llvmpipe): workgroup tiles on GPUs; register blocks on CPU
    /// adapters except for Aᵀ·B (the dense weight gradients), where lavapipe ran the register
    /// variant ~40× slower than the tiles at d 32, m 64, batch 128 (a dense 2-SAE step: 280 ms
    /// against 7 ms) and the autotune measured it below the tiles too (1.2 against 2.2
    /// GFLOP/s at 256×256×512).
    pub fn fallback_for(report: &AdapterReport, class: (Op, Op)) -> MatmulVariant {
        match (report.is_software, class) {
            (false, _) => MatmulVariant::Tiled,
            (true, (Op::T, Op::N)) => MatmulVariant::Tiled,
            (true, _) => MatmulVariant::Register,
        }
    }
}

/// The texture variant's block of C per invocation, in 4×4 sub-blocks: on lavapipe (2-core
/// Zen 3, 1024×256×512) 8×8 blocks ran at ~9–10 GFLOP/s, 12×8 about the same, 16×16 ~8 (its
/// accumulators spill).
const TEXTURE_BLOCKS: (usize, usize) = (2, 2);

/// The register variant's block of C per invocation, in 4×4 sub-blocks (rows, columns).
/// Measured on lavapipe (1024×256×512): 2×2 blocks ~16, 4×4 ~24, 4×8 or 8×4 ~25 GFLOP/s
/// per two cores of CPU time; beyond 4×4 the accumulators spill for little gain. Where an
/// operand is not vec4-aligned (odd shapes: tests, toy sizes), 2×2 blocks: the shader
/// then loads element by element anyway, and compiles 4× faster (lavapipe takes 2–4 s of
/// CPU for a 4×4 specialisation).
fn register_blocks(s: Specialisation) -> (usize, usize) {
    if s.a_vec && s.b_vec {
        (4, 4)
    } else {
        (2, 2)
    }
}

impl Specialisation {
    /// (rows, columns) of C one invocation computes and the workgroup size, for the grid.
    fn blocking(self) -> ([usize; 2], [usize; 2]) {
        match self.variant {
            MatmulVariant::Register => {
                let (r, c) = register_blocks(self);
                ([4 * r, 4 * c], [8, 8])
            }
            MatmulVariant::Texture => ([4 * TEXTURE_BLOCKS.0, 4 * TEXTURE_BLOCKS.1], [8, 8]),
            MatmulVariant::Tiled => ([4, 4], [16, 16]),
        }
    }
}

/// The entry point of `matmul_register.wgsl` for `rows`×`cols` 4×4 sub-blocks per
/// invocation, with every accumulator a named mat4x4 (see the shader's header), and the
/// scalar loop over the last K mod 4 steps only where K mod 4 ≠ 0 (it doubles the code
/// lavapipe compiles).
fn register_main(rows: usize, cols: usize, k_tail: bool) -> String {
    let each = |f: &dyn Fn(usize, usize) -> String| -> String {
        (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| f(r, c))
            .collect()
    };
    let a = |f: &dyn Fn(usize) -> String| -> String { (0..rows).map(f).collect() };
    let b = |f: &dyn Fn(usize) -> String| -> String { (0..cols).map(f).collect() };
    let tail = if k_tail {
        format!(
            "    for (var k = k4; k < p.k; k++) {{\n{}{}{}    }}\n",
            a(&|r| format!("        let a{r} = a_column(i0 + {}u, k);\n", 4 * r)),
            b(&|c| format!("        let b{c} = b_row(k, j0 + {}u);\n", 4 * c)),
            each(&|r, c| format!("        c{r}_{c} += outer(a{r}, b{c});\n")),
        )
    } else {
        String::new()
    };
    format!(
        "@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    set_instance(gid.z);
    let i0 = gid.y * {tm}u;
    let j0 = gid.x * {tn}u;
    if (i0 >= p.m || j0 >= p.n) {{ return; }}
{init}    let k4 = p.k - p.k % 4u;
    for (var k = 0u; k < k4; k += 4u) {{
{load_a}{load_b}{mul}    }}
{tail}{store}}}
",
        tm = 4 * rows,
        tn = 4 * cols,
        init = each(&|r, c| format!("    var c{r}_{c} = mat4x4<f32>();\n")),
        load_a = a(&|r| format!("        let a{r} = transpose(a_block(i0 + {}u, k));\n", 4 * r)),
        load_b = b(&|c| format!("        let b{c} = b_block(j0 + {}u, k);\n", 4 * c)),
        mul = each(&|r, c| format!("        c{r}_{c} += a{r} * b{c};\n")),
        store = each(&|r, c| format!("    store(i0 + {}u, j0 + {}u, c{r}_{c});\n", 4 * r, 4 * c)),
    )
}

impl fmt::Display for MatmulVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MatmulVariant {
    type Err = Error;

    fn from_str(s: &str) -> Result<MatmulVariant> {
        MatmulVariant::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<&str> = MatmulVariant::ALL.iter().map(|v| v.name()).collect();
            Error::Config(format!(
                "unknown matmul variant `{s}`: choose one of {}",
                names.join(", ")
            ))
        })
    }
}

/// The four transpose combinations (op_a, op_b), the shape classes a tune distinguishes.
pub const SHAPE_CLASSES: [(Op, Op); 4] = [(Op::N, Op::N), (Op::N, Op::T), (Op::T, Op::N), (Op::T, Op::T)];

fn class_index(op_a: Op, op_b: Op) -> usize {
    SHAPE_CLASSES
        .iter()
        .position(|&c| c == (op_a, op_b))
        .expect("every combination is a class")
}

/// What an autotune found on one adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatmulTune {
    /// The fastest variant for each entry of `SHAPE_CLASSES`.
    pub winners: [MatmulVariant; 4],
    /// GFLOP/s measured, `[class][variant]` in the order of `SHAPE_CLASSES` and `MatmulVariant::ALL`.
    pub gflops: Vec<Vec<f64>>,
    /// The product timed, (M, K, N).
    pub shape: (usize, usize, usize),
}

/// Why the kernels use the variants they use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatmulReason {
    /// Forced (`--matmul`, `MFR_SAE_MATMUL`, or `KernelOptions::matmul`).
    Override,
    /// From a tune result for this adapter.
    Tuned,
    /// The default for this device type (`MatmulVariant::default_for`).
    Default,
}

/// The variant for each shape class and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatmulChoice {
    pub variants: [MatmulVariant; 4],
    pub reason: MatmulReason,
}

impl MatmulChoice {
    pub(super) fn new(
        report: &AdapterReport,
        forced: Option<MatmulVariant>,
        tuned: Option<&MatmulTune>,
    ) -> MatmulChoice {
        match (forced, tuned) {
            (Some(v), _) => MatmulChoice {
                variants: [v; 4],
                reason: MatmulReason::Override,
            },
            (None, Some(t)) => MatmulChoice {
                variants: t.winners,
                reason: MatmulReason::Tuned,
            },
            (None, None) => MatmulChoice {
                variants: SHAPE_CLASSES.map(|class| MatmulVariant::default_for(report, class)),
                reason: MatmulReason::Default,
            },
        }
    }
}

impl fmt::Display for MatmulChoice {
    /// `register (default for this device type)`, or per class when the classes differ.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            MatmulReason::Override => "override",
            MatmulReason::Tuned => "cached tune",
            MatmulReason::Default => "default for this device type",
        };
        if self.variants.iter().all(|&v| v == self.variants[0]) {
            write!(f, "{} ({why})", self.variants[0])
        } else {
            let per: Vec<String> = SHAPE_CLASSES
                .iter()
                .zip(self.variants)
                .map(|((a, b), v)| format!("{a:?}{b:?} {v}"))
                .collect();
            write!(f, "{} ({why})", per.join(", "))
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    alpha: f32,
    /// Values between consecutive instances' operands (0: one operand shared by all).
    stride_a: u32,
    stride_b: u32,
    stride_bias: u32,
    stride_c: u32,
    _pad: [u32; 3],
}

shader_params!(Params as "Params" { m, n, k, has_bias, alpha, stride_a, stride_b, stride_bias, stride_c, _pad });

pub(super) const MATMUL_REGISTER: EntryPoint = EntryPoint::new("matmul_register", "main", &[layout_of::<Params>], 5);

pub(super) const MATMUL_TEXTURE: EntryPoint = EntryPoint::new("matmul_texture", "main", &[layout_of::<Params>], 5);

pub(super) const MATMUL_TILED: EntryPoint = EntryPoint::new("matmul_tiled", "main", &[layout_of::<Params>], 5);

/// One specialisation of a variant's shader (the constants it is compiled with).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Specialisation {
    variant: MatmulVariant,
    a_t: bool,
    b_t: bool,
    a_vec: bool,
    b_vec: bool,
    /// K mod 4 ≠ 0 (the register variant then needs its scalar tail loop).
    k_tail: bool,
}

/// The matmul state of `Kernels`: sources, the choice, and the specialisations compiled so far
/// (each on first use: 16 per variant exist, a run needs a few).
pub(super) struct Matmul {
    sources: Sources,
    choice: MatmulChoice,
    programs: Mutex<HashMap<Specialisation, Kernel>>,
}

/// The matmul shaders' sources (perhaps edited, `Kernels::with_sources`).
pub(super) struct Sources {
    pub register: String,
    pub texture: String,
    pub tiled: String,
}

impl Matmul {
    pub(super) fn new(sources: Sources, choice: MatmulChoice) -> Matmul {
        Matmul {
            sources,
            choice,
            programs: Mutex::new(HashMap::new()),
        }
    }

    fn program(&self, gpu: &Gpu, s: Specialisation) -> Kernel {
        let mut programs = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        programs
            .entry(s)
            .or_insert_with(|| {
                let (spec, source) = specialise(&self.sources, s);
                Kernel::new(gpu, spec, &source)
            })
            .clone()
    }
}

/// The entry point and the source of specialisation `s`: the constants prepended, and for the
/// register variant its generated `main`.
fn specialise(sources: &Sources, s: Specialisation) -> (&'static EntryPoint, String) {
    let constants = format!(
        "const A_T: bool = {};\nconst B_T: bool = {};\nconst A_VEC: bool = {};\nconst B_VEC: bool = {};\n",
        s.a_t, s.b_t, s.a_vec, s.b_vec
    );
    match s.variant {
        MatmulVariant::Register => {
            let (r, c) = register_blocks(s);
            (
                &MATMUL_REGISTER,
                constants + &sources.register + &register_main(r, c, s.k_tail),
            )
        }
        MatmulVariant::Texture => (
            &MATMUL_TEXTURE,
            constants + &sources.texture + &register_main(TEXTURE_BLOCKS.0, TEXTURE_BLOCKS.1, false),
        ),
        MatmulVariant::Tiled => (&MATMUL_TILED, constants + &sources.tiled),
    }
}

/// One specialisation of each variant (odd shapes, so the register variant's tail loop too),
/// for `contract::compiled_sources`.
pub(super) fn example_sources() -> Vec<(&'static str, String)> {
    let sources = Sources {
        register: super::source::MATMUL_REGISTER.to_string(),
        texture: super::source::MATMUL_TEXTURE.to_string(),
        tiled: super::source::MATMUL_TILED.to_string(),
    };
    MatmulVariant::ALL
        .into_iter()
        .map(|variant| {
            // The texture variant exists only for aligned operands.
            let odd = variant != MatmulVariant::Texture;
            let s = Specialisation {
                variant,
                a_t: false,
                b_t: true,
                a_vec: !odd,
                b_vec: !odd,
                k_tail: odd && variant == MatmulVariant::Register,
            };
            let (spec, source) = specialise(&sources, s);
            (spec.shader, source)
        })
        .collect()
}

/// (rows, columns) of `op(t)` for one instance, and t's instances (1 for a matrix, N for a
/// stack [N, rows, cols]).
fn operand(t: &Tensor<f32>, op: Op) -> (usize, usize, usize) {
    let (n, r, c) = match *t.shape() {
        [n, r, c] => (n, r, c),
        _ => {
            let (r, c) = matrix_dims(t);
            (1, r, c)
        }
    };
    match op {
        Op::N => (r, c, n),
        Op::T => (c, r, n),
    }
}

/// Values between instances of an operand with `instances` slices of `len` values, in a product
/// of `n` instances: its slice length where it is stacked, 0 where one slice is shared. The
/// kernels read a and b as vec4s (`vec4`), so their stacked slices must start on one.
fn instance_stride(what: &str, vec4: bool, instances: usize, len: usize, n: usize) -> Result<u32> {
    match instances {
        1 => Ok(0),
        i if i == n && (len.is_multiple_of(4) || !vec4) => Ok(u32_of(len)),
        i if i == n => Err(Error::Shape(format!(
            "matmul: the stacked `{what}` has slices of {len} values, not a multiple of 4"
        ))),
        i => Err(Error::Shape(format!(
            "matmul: `{what}` has {i} instances but the product has {n}"
        ))),
    }
}

impl Kernels {
    /// `c [M, N] = alpha · op_a(a) [M, K] · op_b(b) [K, N] + bias [N]`, with the variant
    /// chosen for this transpose combination. Stacked: `c` [I, M, N] holds I products in one
    /// dispatch, each operand either stacked too ([I, …], bias [I, N]) or one matrix shared
    /// by all I.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        a: &Tensor<f32>,
        op_a: Op,
        b: &Tensor<f32>,
        op_b: Op,
        bias: Option<&Tensor<f32>>,
        alpha: f32,
        c: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let variant = self.matmul_variant(op_a, op_b);
        self.matmul_as(variant, gpu, a, op_a, b, op_b, bias, alpha, c)
    }

    /// The variant `matmul` uses for this transpose combination.
    pub fn matmul_variant(&self, op_a: Op, op_b: Op) -> MatmulVariant {
        self.matmul.choice.variants[class_index(op_a, op_b)]
    }

    /// The variants in use and why.
    pub fn matmul_choice(&self) -> &MatmulChoice {
        &self.matmul.choice
    }

    /// `matmul` computed by `variant`, whatever was chosen (for the autotune and the tests).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_as(
        &self,
        variant: MatmulVariant,
        gpu: &Gpu,
        a: &Tensor<f32>,
        op_a: Op,
        b: &Tensor<f32>,
        op_b: Op,
        bias: Option<&Tensor<f32>>,
        alpha: f32,
        c: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, k, a_inst) = operand(a, op_a);
        // op_b(b) is [K, N]: b itself is [K, N] (N) or [N, K] (T).
        let (kb, n, b_inst) = operand(b, op_b);
        if k != kb {
            return Err(Error::Shape(format!(
                "matmul: inner sizes differ: op(a) is [{m}, {k}] and op(b) is [{kb}, {n}]"
            )));
        }
        let (cm, cn, instances) = operand(c, Op::N);
        if (cm, cn) != (m, n) {
            return Err(Error::Shape(format!(
                "matmul: `c` has shape {:?}, expected [{m}, {n}] (or [instances, {m}, {n}])",
                c.shape()
            )));
        }
        let bias_inst = match bias {
            None => 1,
            Some(t) if t.len() == n => 1,
            Some(t) if t.shape() == [instances, n] => instances,
            Some(t) => {
                return Err(Error::Shape(format!(
                    "matmul: `bias` has shape {:?}, expected [{n}] or [{instances}, {n}]",
                    t.shape()
                )))
            }
        };
        // The contiguous size of each stored operand decides whether its runs are aligned vec4s.
        let (a_t, b_t) = (op_a == Op::T, op_b == Op::T);
        // Each operand as stored: (rows, contiguous size).
        let a_stored = if a_t { (k, m) } else { (m, k) };
        let b_stored = if b_t { (n, k) } else { (k, n) };
        let variant = match variant {
            MatmulVariant::Texture if !texture_fits(gpu, k, [a_stored, b_stored], [a_inst, b_inst]) => {
                MatmulVariant::fallback_for(&gpu.report, (op_a, op_b))
            }
            v => v,
        };
        let spec = Specialisation {
            variant,
            a_t,
            b_t,
            a_vec: a_stored.1 % 4 == 0,
            b_vec: b_stored.1 % 4 == 0,
            // Only the register variant distinguishes it; the tiled one stages zeros past K.
            k_tail: variant == MatmulVariant::Register && k % 4 != 0,
        };
        let params = Params {
            m: u32_of(m),
            n: u32_of(n),
            k: u32_of(k),
            has_bias: bias.is_some() as u32,
            alpha,
            stride_a: instance_stride("a", true, a_inst, m * k, instances)?,
            stride_b: instance_stride("b", true, b_inst, k * n, instances)?,
            stride_bias: instance_stride("bias", false, bias_inst, n, instances)?,
            stride_c: instance_stride("c", false, instances, m * n, instances)?,
            _pad: [0; 3],
        };
        let bias = bias.unwrap_or(&self.unused);
        let ([tm, tn], [wx, wy]) = spec.blocking();
        let grid = [
            u32_of(n.div_ceil(tn * wx)),
            u32_of(m.div_ceil(tm * wy)),
            u32_of(instances),
        ];
        let program = self.matmul.program(gpu, spec);
        if variant != MatmulVariant::Texture {
            return Ok(program.dispatch(gpu, &params, &[&a, &b, &bias, &c], grid));
        }
        let (upload_a, view_a) = self
            .textures
            .upload(gpu, Role::MatmulA, a, a_stored.0, a_stored.1, a_inst);
        let (upload_b, view_b) = self
            .textures
            .upload(gpu, Role::MatmulB, b, b_stored.0, b_stored.1, b_inst);
        let uniform = gpu.uniform(&params);
        let resources = [
            Resource::Buffer(&uniform as &dyn Bind),
            Resource::Texture(&view_a),
            Resource::Texture(&view_b),
            Resource::Buffer(bias),
            Resource::Buffer(c),
        ];
        Ok(program.bind_resources(gpu, &resources, vec![upload_a, upload_b], grid))
    }
}

/// Whether the texture variant can compute a product with inner size `k` of operands stored
/// as `stored` (rows, contiguous size) with `instances` slices each: K in steps of 4 (it has
/// no tail loop) and textures a copy can fill (`texture::fits`).
fn texture_fits(gpu: &Gpu, k: usize, stored: [(usize, usize); 2], instances: [usize; 2]) -> bool {
    k.is_multiple_of(4)
        && stored
            .iter()
            .zip(instances)
            .all(|(&(rows, cols), inst)| texture::fits(gpu, rows, cols, inst))
}

/// The product the autotune times, (M, K, N): the encoder's shape at a quarter of the
/// usual batch (256 rows of x, d 256, m 512), so that the timing of both variants on all
/// four shape classes stays within ~2 s on lavapipe. Compiling the register variant's
/// specialisations comes on top, once (~2–4 s of CPU each on lavapipe; Mesa's shader cache
/// keeps them for later runs, which compile the same ones).
pub const TUNE_SHAPE: (usize, usize, usize) = (256, 256, 512);

/// Times every variant on a product of `shape` (M, K, N; `TUNE_SHAPE` outside tests) in each
/// shape class and returns the fastest per class. `now` is a clock in seconds (the edges own
/// time: `Instant` natively, `performance.now()` in a browser). One warm-up run (which
/// compiles), then the best of two.
pub async fn autotune(
    gpu: &Gpu,
    kernels: &Kernels,
    shape: (usize, usize, usize),
    now: &dyn Fn() -> f64,
) -> Result<MatmulTune> {
    let (m, k, n) = shape;
    let flops = 2.0 * (m * k * n) as f64;
    let values = |len: usize| -> Vec<f32> { (0..len).map(|i| ((i % 7) as f32 - 3.0) * 0.125).collect() };
    let mut winners = [MatmulVariant::ALL[0]; 4];
    let mut gflops = Vec::new();
    for (class, (op_a, op_b)) in SHAPE_CLASSES.into_iter().enumerate() {
        let a_shape = if op_a == Op::N { [m, k] } else { [k, m] };
        let b_shape = if op_b == Op::N { [k, n] } else { [n, k] };
        let a = Tensor::from_slice(gpu, &a_shape, &values(m * k), "tune a")?;
        let b = Tensor::from_slice(gpu, &b_shape, &values(k * n), "tune b")?;
        let c = Tensor::<f32>::zeros(gpu, &[m, n], "tune c")?;
        let mut row = Vec::new();
        for variant in MatmulVariant::ALL {
            let d = kernels.matmul_as(variant, gpu, &a, op_a, &b, op_b, None, 1.0, &c)?;
            gpu.submit(&[&d]);
            gpu.finish().await?;
            let mut best = f64::INFINITY;
            for _ in 0..2 {
                let start = now();
                gpu.submit(&[&d]);
                gpu.finish().await?;
                best = best.min(now() - start);
            }
            row.push(flops / best.max(1e-9) / 1e9);
        }
        let fastest = (0..row.len()).fold(0, |w, v| if row[v] > row[w] { v } else { w });
        winners[class] = MatmulVariant::ALL[fastest];
        gflops.push(row);
    }
    Ok(MatmulTune { winners, gflops, shape })
}

/// Tune results kept between runs, one JSON file holding a map from adapter key to
/// `MatmulTune`: `$XDG_CACHE_HOME/mfr-sae/matmul-tune.json`, else `~/.cache/mfr-sae/…`.
/// Native only (a browser keeps its tune in memory).
#[cfg(not(target_arch = "wasm32"))]
pub mod cache {
    use super::{MatmulTune, MatmulVariant};
    use crate::error::{Error, Result};
    use crate::gpu::AdapterReport;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    pub const FILE: &str = "matmul-tune.json";

    /// The cache folder from the environment, if there is a home for one.
    pub fn dir() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
        let base = xdg
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("mfr-sae"))
    }

    /// What a tune is stored under: the adapter, its driver and its backend.
    pub fn key(report: &AdapterReport) -> String {
        format!(
            "{} | {} {} | {}",
            report.name, report.driver, report.driver_info, report.backend
        )
    }

    fn read_all(path: &Path) -> Result<BTreeMap<String, MatmulTune>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                path: path.display().to_string(),
                message: format!("not a matmul tune cache ({e}); delete it or rerun `mfr-sae info --tune`"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// The tune stored in `dir` for this adapter, if any and if it timed every variant this
    /// version has (a tune from before a variant existed would never choose it: it is
    /// ignored, and `info --tune` replaces it).
    pub fn load(dir: &Path, report: &AdapterReport) -> Result<Option<MatmulTune>> {
        let tune = read_all(&dir.join(FILE))?.remove(&key(report));
        Ok(tune.filter(|t| t.gflops.iter().all(|row| row.len() == MatmulVariant::ALL.len())))
    }

    /// Stores `tune` for this adapter in `dir` (other adapters' entries kept), atomically;
    /// returns the file's path.
    pub fn save(dir: &Path, report: &AdapterReport, tune: &MatmulTune) -> Result<PathBuf> {
        let path = dir.join(FILE);
        let mut all = read_all(&path)?;
        all.insert(key(report), tune.clone());
        crate::train::write_json(&path, &all)?;
        Ok(path)
    }
}
