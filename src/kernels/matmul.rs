//! `shaders/matmul_register.wgsl` and `shaders/matmul_tiled.wgsl`:
//! C = alpha · op(A) · op(B) (+ bias row vector), in variants that suit different adapters,
//! which one chosen per transpose combination ("shape class") when the kernels are built.
//! Owns the variants, their lazily compiled specialisations, the choice and the autotune
//! that informs it; persisting a tune result is the native edge's business (`cache`).

use super::{expect_shape, matrix_dims, u32_of, Kernels};
use crate::error::{Error, Result};
use crate::gpu::{AdapterReport, Dispatch, Gpu, Program, Tensor};
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
    /// vec4-aligned), vec4 loads, no workgroup memory or
    /// barriers: for CPU drivers (lavapipe, SwiftShader), which run a workgroup as SIMD lanes
    /// and pay for every load and barrier.
    Register,
    /// 64×64 tiles of C per workgroup, staged through workgroup memory (8 KiB), each
    /// invocation a 4×4 block: the classic SGEMM shape, for real GPUs.
    Tiled,
}

impl MatmulVariant {
    pub const ALL: [MatmulVariant; 2] = [MatmulVariant::Register, MatmulVariant::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            MatmulVariant::Register => "register",
            MatmulVariant::Tiled => "tiled",
        }
    }

    /// The variant a device type gets without a tune result: register blocks on CPU
    /// adapters, workgroup tiles on GPUs.
    pub fn default_for(report: &AdapterReport) -> MatmulVariant {
        if report.is_software {
            MatmulVariant::Register
        } else {
            MatmulVariant::Tiled
        }
    }
}

/// The register variant's block of C per invocation, in 4×4 sub-blocks (rows, columns).
/// Measured on lavapipe (1024×256×512): 2×2 blocks ~16, 4×4 ~24, 4×8 or 8×4 ~25 GFLOP/s
/// per two cores of CPU time; beyond 4×4 the accumulators spill for little gain. Where an
/// operand is not vec4-aligned (odd shapes: tests, toy sizes), 2×2 blocks: the shader
/// then loads element by element anyway, and compiles 4× faster (lavapipe takes ~0.4 s of
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
            MatmulVariant::Tiled => ([4, 4], [16, 16]),
        }
    }
}

/// The entry point of `matmul_register.wgsl` for `rows`×`cols` 4×4 sub-blocks per
/// invocation, with every accumulator a named mat4x4 (see the shader's header).
fn register_main(rows: usize, cols: usize) -> String {
    let each = |f: &dyn Fn(usize, usize) -> String| -> String {
        (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| f(r, c))
            .collect()
    };
    let a = |f: &dyn Fn(usize) -> String| -> String { (0..rows).map(f).collect() };
    let b = |f: &dyn Fn(usize) -> String| -> String { (0..cols).map(f).collect() };
    format!(
        "@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
    let i0 = gid.y * {tm}u;
    let j0 = gid.x * {tn}u;
    if (i0 >= p.m || j0 >= p.n) {{ return; }}
{init}    let k4 = p.k - p.k % 4u;
    for (var k = 0u; k < k4; k += 4u) {{
{load_a}{load_b}{mul}    }}
    for (var k = k4; k < p.k; k++) {{
{tail_a}{tail_b}{outer}    }}
{store}}}
",
        tm = 4 * rows,
        tn = 4 * cols,
        init = each(&|r, c| format!("    var c{r}_{c} = mat4x4<f32>();\n")),
        load_a = a(&|r| format!("        let a{r} = transpose(a_block(i0 + {}u, k));\n", 4 * r)),
        load_b = b(&|c| format!("        let b{c} = b_block(j0 + {}u, k);\n", 4 * c)),
        mul = each(&|r, c| format!("        c{r}_{c} += a{r} * b{c};\n")),
        tail_a = a(&|r| format!("        let a{r} = a_column(i0 + {}u, k);\n", 4 * r)),
        tail_b = b(&|c| format!("        let b{c} = b_row(k, j0 + {}u);\n", 4 * c)),
        outer = each(&|r, c| format!("        c{r}_{c} += outer(a{r}, b{c});\n")),
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
                variants: [MatmulVariant::default_for(report); 4],
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
    _pad: [u32; 3],
}

/// One specialisation of a variant's shader (the constants it is compiled with).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Specialisation {
    variant: MatmulVariant,
    a_t: bool,
    b_t: bool,
    a_vec: bool,
    b_vec: bool,
}

/// The matmul state of `Kernels`: sources, the choice, and the specialisations compiled so far
/// (each on first use: 16 per variant exist, a run needs a few).
pub(super) struct Matmul {
    register_source: String,
    tiled_source: String,
    choice: MatmulChoice,
    programs: Mutex<HashMap<Specialisation, Program>>,
}

impl Matmul {
    pub(super) fn new(register_source: String, tiled_source: String, choice: MatmulChoice) -> Matmul {
        Matmul {
            register_source,
            tiled_source,
            choice,
            programs: Mutex::new(HashMap::new()),
        }
    }

    fn program(&self, gpu: &Gpu, s: Specialisation) -> Program {
        let mut programs = self.programs.lock().unwrap_or_else(|e| e.into_inner());
        programs
            .entry(s)
            .or_insert_with(|| {
                let constants = format!(
                    "const A_T: bool = {};\nconst B_T: bool = {};\nconst A_VEC: bool = {};\nconst B_VEC: bool = {};\n",
                    s.a_t, s.b_t, s.a_vec, s.b_vec
                );
                let (name, source) = match s.variant {
                    MatmulVariant::Register => ("matmul_register", {
                        let (r, c) = register_blocks(s);
                        constants + &self.register_source + &register_main(r, c)
                    }),
                    MatmulVariant::Tiled => ("matmul_tiled", constants + &self.tiled_source),
                };
                Program::new(gpu, name, &source, "main")
            })
            .clone()
    }
}

/// Rows, inner size and whether the stored layout is transposed, of `t` used under `op`.
fn operand(t: &Tensor<f32>, op: Op) -> (usize, usize) {
    let (r, c) = matrix_dims(t);
    match op {
        Op::N => (r, c),
        Op::T => (c, r),
    }
}

impl Kernels {
    /// `c [M, N] = alpha · op_a(a) [M, K] · op_b(b) [K, N] + bias [N]`, with the variant
    /// chosen for this transpose combination.
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
        let (m, k) = operand(a, op_a);
        // op_b(b) is [K, N]: b itself is [K, N] (N) or [N, K] (T).
        let (kb, n) = operand(b, op_b);
        if k != kb {
            return Err(Error::Shape(format!(
                "matmul: inner sizes differ: op(a) is [{m}, {k}] and op(b) is [{kb}, {n}]"
            )));
        }
        expect_shape("matmul", "c", c, &[m, n])?;
        if let Some(bias) = bias {
            expect_shape("matmul", "bias", bias, &[n])?;
        }
        // The contiguous size of each stored operand decides whether its runs are aligned vec4s.
        let (a_t, b_t) = (op_a == Op::T, op_b == Op::T);
        let spec = Specialisation {
            variant,
            a_t,
            b_t,
            a_vec: (if a_t { m } else { k }) % 4 == 0,
            b_vec: (if b_t { k } else { n }) % 4 == 0,
        };
        let params = Params {
            m: u32_of(m),
            n: u32_of(n),
            k: u32_of(k),
            has_bias: bias.is_some() as u32,
            alpha,
            _pad: [0; 3],
        };
        let uniform = gpu.uniform(&params);
        let bias = bias.unwrap_or(&self.unused);
        let ([tm, tn], [wx, wy]) = spec.blocking();
        let grid = [u32_of(n.div_ceil(tn * wx)), u32_of(m.div_ceil(tm * wy)), 1];
        Ok(self
            .matmul
            .program(gpu, spec)
            .bind(gpu, &[&uniform, &a.buffer, &b.buffer, &bias.buffer, &c.buffer], grid))
    }
}
