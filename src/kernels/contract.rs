//! The host↔shader contract, written once per interface: every uniform a wrapper writes is a
//! `#[repr(C)]` Pod struct that names its WGSL struct (`shader_params!`, next to the struct),
//! and every entry point a `Kernel` compiles is an `EntryPoint` in `ENTRY_POINTS`: its shader,
//! the uniforms it binds first and how many buffers it binds in all. `tests/shader_contract.rs`
//! checks the registry against naga's reflection of the shaders (struct sizes, member names,
//! offsets and types; bindings in group 0, numbered 0..n); a `Kernel` checks, in debug builds,
//! that a wrapper binds what its entry point declares. Owns no kernel.

use super::{activation, adam, batchtopk, elementwise, loss, matmul, metrics, mfr, normalise, reduce, sparse};
use crate::gpu::{Bind, Dispatch, Gpu, Program, Resource, Upload};
use bytemuck::Pod;

/// A Rust type and the WGSL type a uniform member of it mirrors.
pub trait WgslType {
    fn wgsl() -> String;
}

impl WgslType for u32 {
    fn wgsl() -> String {
        "u32".into()
    }
}

impl WgslType for i32 {
    fn wgsl() -> String {
        "i32".into()
    }
}

impl WgslType for f32 {
    fn wgsl() -> String {
        "f32".into()
    }
}

/// `[T; N]` is WGSL's `vecN<T>` (as a uniform member: padding members are not compared).
impl<T: WgslType, const N: usize> WgslType for [T; N] {
    fn wgsl() -> String {
        format!("vec{N}<{}>", T::wgsl())
    }
}

/// One member of a uniform struct: its name, byte offset and WGSL type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: &'static str,
    pub offset: usize,
    pub ty: String,
}

/// A uniform parameter block: a Pod struct laid out as the WGSL struct `WGSL_STRUCT` of the
/// shaders that bind it. Implemented by `shader_params!`, which lists every field (a field the
/// list lacks does not compile).
pub trait ShaderParams: Pod {
    const WGSL_STRUCT: &'static str;
    /// Every field in declaration order (members named `_…` are padding).
    fn members() -> Vec<Member>;
}

/// The type of the field `field` returns, in WGSL (used by `shader_params!`).
#[doc(hidden)]
pub fn field_type<S, T: WgslType>(_field: fn(&S) -> &T) -> String {
    T::wgsl()
}

/// `shader_params!(Rust as "Wgsl" { field, … })`: `Rust` mirrors the WGSL struct `Wgsl`.
/// Every field of `Rust` must be listed, in order.
macro_rules! shader_params {
    ($rust:ident as $wgsl:literal { $($field:ident),+ $(,)? }) => {
        impl $crate::kernels::contract::ShaderParams for $rust {
            const WGSL_STRUCT: &'static str = $wgsl;
            fn members() -> Vec<$crate::kernels::contract::Member> {
                // "missing field" when the list lacks one of the struct's fields.
                let _every_field_listed = $rust { $($field: bytemuck::Zeroable::zeroed()),+ };
                vec![$($crate::kernels::contract::Member {
                    name: stringify!($field),
                    offset: core::mem::offset_of!($rust, $field),
                    ty: $crate::kernels::contract::field_type(|s: &$rust| &s.$field),
                }),+]
            }
        }
    };
}
pub(super) use shader_params;

/// What a uniform's Rust struct says about its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniformLayout {
    /// The Rust type (`std::any::type_name`).
    pub rust: &'static str,
    pub wgsl_struct: &'static str,
    pub size: usize,
    pub members: Vec<Member>,
}

pub fn layout_of<P: ShaderParams>() -> UniformLayout {
    UniformLayout {
        rust: std::any::type_name::<P>(),
        wgsl_struct: P::WGSL_STRUCT,
        size: std::mem::size_of::<P>(),
        members: P::members(),
    }
}

/// One entry point of one shader as its wrapper binds it.
pub struct EntryPoint {
    /// The shader's name in `source::ALL`.
    pub shader: &'static str,
    pub entry: &'static str,
    /// The uniforms it binds, at bindings 0, 1, … (the wrapper writes the first; any others
    /// are per-step buffers its caller writes).
    pub uniforms: &'static [fn() -> UniformLayout],
    /// Bindings in all, uniforms included: @group(0) @binding(0 .. bindings).
    pub bindings: usize,
}

impl EntryPoint {
    /// `entry` of `shader`, binding `uniforms` first and `bindings` buffers in all.
    pub const fn new(
        shader: &'static str,
        entry: &'static str,
        uniforms: &'static [fn() -> UniformLayout],
        bindings: usize,
    ) -> EntryPoint {
        EntryPoint {
            shader,
            entry,
            uniforms,
            bindings,
        }
    }
}

/// Every entry point `Kernels` compiles.
pub const ENTRY_POINTS: &[&EntryPoint] = &[
    &matmul::MATMUL_REGISTER,
    &matmul::MATMUL_TEXTURE,
    &matmul::MATMUL_TILED,
    &activation::TOPK,
    &activation::TOPK_CANDIDATES_TEXTURE,
    &activation::TOPK_SELECT_TEXTURE,
    &activation::RELU,
    &activation::BACKWARD,
    &activation::MASK_DEAD,
    &loss::MSE,
    &reduce::COLUMNS,
    &reduce::TOTAL,
    &metrics::LATENTS,
    &metrics::LATENTS_SPARSE,
    &metrics::WINDOW,
    &normalise::ROWS,
    &normalise::RENORMALISE,
    &normalise::PROJECT,
    &adam::ADAM,
    &elementwise::ADD_ROW_VECTOR,
    &elementwise::AXPBY,
    &mfr::MAX_TILES,
    &mfr::MAX_REDUCE,
    &mfr::COLUMN_MAX,
    &mfr::MATCHED,
    &mfr::GRAD_A,
    &mfr::GRAD_B,
    &mfr::MATCHED_PAIRS,
    &mfr::GRAD_PAIRS,
    &mfr::GROUP_COUNT,
    &mfr::GROUP_SCAN,
    &mfr::GROUP_FILL,
    &mfr::GROUP_SORT,
    &batchtopk::START,
    &batchtopk::HISTOGRAM,
    &batchtopk::PICK,
    &batchtopk::KEEP,
    &batchtopk::THRESHOLD,
    &sparse::DECODE,
    &sparse::DECODE_TEXTURE,
    &sparse::CODE_GRADIENT,
    &sparse::CODE_GRADIENT_TEXTURE,
    &sparse::COUNT,
    &sparse::OFFSETS,
    &sparse::FILL,
    &sparse::SCATTER,
    &sparse::SCATTER_TEXTURE,
];

/// Every shader module as `Kernels` compiles it, by name: the matmul variants in one
/// specialisation each (their bindings do not depend on it).
pub fn compiled_sources() -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, String)> = super::source::ALL
        .iter()
        .map(|&(name, source)| (name, source.to_string()))
        .collect();
    all.extend(matmul::example_sources());
    all
}

/// A compiled entry point and what it binds.
#[derive(Clone)]
pub(super) struct Kernel {
    program: Program,
    spec: &'static EntryPoint,
}

impl Kernel {
    /// Compiles `spec`'s entry point of `source` (`spec.shader`'s source, perhaps edited).
    pub(super) fn new(gpu: &Gpu, spec: &'static EntryPoint, source: &str) -> Kernel {
        Kernel {
            program: Program::new(gpu, spec.shader, source, spec.entry),
            spec,
        }
    }

    /// Binds `buffers` to bindings 0, 1, 2, … in order.
    pub(super) fn bind(&self, gpu: &Gpu, buffers: &[&dyn Bind], workgroups: [u32; 3]) -> Dispatch {
        debug_assert_eq!(
            buffers.len(),
            self.spec.bindings,
            "{}::{} binds {} buffers",
            self.spec.shader,
            self.spec.entry,
            self.spec.bindings
        );
        self.program.bind(gpu, buffers, workgroups)
    }

    /// Binds `resources` (buffers and texture views) to bindings 0, 1, 2, … in order, with
    /// the copies that fill the textures before each run.
    pub(super) fn bind_resources(
        &self,
        gpu: &Gpu,
        resources: &[Resource<'_>],
        uploads: Vec<Upload>,
        workgroups: [u32; 3],
    ) -> Dispatch {
        debug_assert_eq!(
            resources.len(),
            self.spec.bindings,
            "{}::{} binds {} resources",
            self.spec.shader,
            self.spec.entry,
            self.spec.bindings
        );
        self.program.bind_resources(gpu, resources, uploads, workgroups)
    }

    /// A uniform holding `params` at binding 0, then `buffers`: the wrappers' one way to bind.
    pub(super) fn dispatch<P: ShaderParams>(
        &self,
        gpu: &Gpu,
        params: &P,
        buffers: &[&dyn Bind],
        workgroups: [u32; 3],
    ) -> Dispatch {
        debug_assert!(
            self.spec.uniforms.first().map(|u| u().rust) == Some(std::any::type_name::<P>()),
            "{}::{} does not take {} at binding 0",
            self.spec.shader,
            self.spec.entry,
            std::any::type_name::<P>()
        );
        let uniform = gpu.uniform(params);
        let all: Vec<&dyn Bind> = std::iter::once(&uniform as &dyn Bind)
            .chain(buffers.iter().copied())
            .collect();
        self.bind(gpu, &all, workgroups)
    }
}
