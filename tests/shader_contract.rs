//! The host↔shader contract (`kernels::contract`) against naga's reflection of the WGSL:
//! every entry point of every shader is registered once; each binds @group(0) bindings
//! 0..n with n what its wrapper binds; each uniform's Rust struct has its WGSL struct's
//! size and named members (names, offsets, types, in order); and a binding slot of a file
//! means one thing for all its entry points.

use mfr_sae::kernels::contract::{compiled_sources, EntryPoint, UniformLayout, ENTRY_POINTS};
use mfr_sae::kernels::source;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, Scalar, ScalarKind, TypeInner};
use std::collections::{BTreeMap, BTreeSet};

struct Shader {
    module: Module,
    info: ModuleInfo,
}

fn shaders() -> BTreeMap<&'static str, Shader> {
    compiled_sources()
        .into_iter()
        .map(|(name, source)| {
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&source)));
            let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
            (name, Shader { module, info })
        })
        .collect()
}

fn scalar(s: Scalar) -> String {
    let kind = match s.kind {
        ScalarKind::Uint => "u",
        ScalarKind::Sint => "i",
        ScalarKind::Float => "f",
        other => panic!("no uniform member of kind {other:?} is expected"),
    };
    format!("{kind}{}", s.width as u32 * 8)
}

fn wgsl_type(module: &Module, ty: naga::Handle<naga::Type>) -> String {
    match module.types[ty].inner {
        TypeInner::Scalar(s) => scalar(s),
        TypeInner::Vector { size, scalar: s } => format!("vec{}<{}>", size as u8, scalar(s)),
        ref other => format!("{other:?}"),
    }
}

/// The layout naga gives the struct `ty`, in the form `UniformLayout` has (Rust name blank).
fn wgsl_layout(module: &Module, ty: naga::Handle<naga::Type>) -> (String, usize, Vec<(String, usize, String)>) {
    let t = &module.types[ty];
    let TypeInner::Struct { ref members, span } = t.inner else {
        panic!("a uniform that is not a struct: {:?}", t.name)
    };
    let members = members
        .iter()
        .map(|m| {
            let name = m.name.clone().unwrap_or_default();
            (name, m.offset as usize, wgsl_type(module, m.ty))
        })
        .collect();
    (t.name.clone().unwrap_or_default(), span as usize, members)
}

/// Named members only: padding (`_…`) is checked through the size and the others' offsets.
fn named<T: AsRef<str>>(members: impl IntoIterator<Item = (T, usize, String)>) -> Vec<(String, usize, String)> {
    members
        .into_iter()
        .filter(|(n, _, _)| !n.as_ref().starts_with('_'))
        .map(|(n, o, t)| (n.as_ref().to_string(), o, t))
        .collect()
}

/// What is wrong with `spec` against its shader, if anything.
fn check_entry_point(spec: &EntryPoint, shader: &Shader) -> Vec<String> {
    let mut errors = Vec::new();
    let at = format!("{}.wgsl `{}`", spec.shader, spec.entry);
    let Some(index) = shader.module.entry_points.iter().position(|e| e.name == spec.entry) else {
        return vec![format!("{at}: no such entry point")];
    };
    let uses = shader.info.get_entry_point(index);
    let mut bound: Vec<(u32, u32, &naga::GlobalVariable)> = shader
        .module
        .global_variables
        .iter()
        .filter(|(h, _)| !uses[*h].is_empty())
        .filter_map(|(_, g)| g.binding.as_ref().map(|b| (b.group, b.binding, g)))
        .collect();
    bound.sort_by_key(|&(group, binding, _)| (group, binding));
    let slots: Vec<(u32, u32)> = bound.iter().map(|&(g, b, _)| (g, b)).collect();
    let expected: Vec<(u32, u32)> = (0..spec.bindings as u32).map(|b| (0, b)).collect();
    if slots != expected {
        errors.push(format!(
            "{at}: binds (group, binding) {slots:?}; the wrapper binds @group(0) 0..{}",
            spec.bindings
        ));
    }
    let uniforms: Vec<_> = bound
        .iter()
        .filter(|(_, _, g)| g.space == AddressSpace::Uniform)
        .collect();
    if uniforms.iter().map(|&&(_, b, _)| b).ne(0..spec.uniforms.len() as u32) {
        errors.push(format!(
            "{at}: uniforms at bindings {:?}; the registry declares {} at 0..",
            uniforms.iter().map(|&&(_, b, _)| b).collect::<Vec<_>>(),
            spec.uniforms.len()
        ));
    }
    for (&&(_, binding, global), rust) in uniforms.iter().zip(spec.uniforms) {
        let rust: UniformLayout = rust();
        let (wgsl_name, span, members) = wgsl_layout(&shader.module, global.ty);
        let what = format!("{at} binding {binding}: {} against `{wgsl_name}`", rust.rust);
        if rust.wgsl_struct != wgsl_name {
            errors.push(format!("{what}: declared to mirror `{}`", rust.wgsl_struct));
        }
        if rust.size != span {
            errors.push(format!("{what}: {} bytes against {span}", rust.size));
        }
        let rust_members = named(rust.members.iter().map(|m| (m.name, m.offset, m.ty.clone())));
        let wgsl_members = named(members);
        if rust_members != wgsl_members {
            errors.push(format!(
                "{what}: members differ\n  Rust: {rust_members:?}\n  WGSL: {wgsl_members:?}"
            ));
        }
    }
    errors
}

#[test]
fn every_entry_point_binds_what_its_wrapper_binds_and_every_uniform_mirrors_its_wgsl_struct() {
    let shaders = shaders();
    let mut errors = Vec::new();
    for spec in ENTRY_POINTS {
        match shaders.get(spec.shader) {
            Some(shader) => errors.extend(check_entry_point(spec, shader)),
            None => errors.push(format!("{}: no shader of that name in compiled_sources", spec.shader)),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_entry_point_of_every_shader_is_registered_once() {
    let registered: Vec<(&str, &str)> = ENTRY_POINTS.iter().map(|e| (e.shader, e.entry)).collect();
    let unique: BTreeSet<_> = registered.iter().copied().collect();
    assert_eq!(unique.len(), registered.len(), "an entry point is registered twice");
    let shaders = shaders();
    let declared: BTreeSet<(&str, &str)> = shaders
        .iter()
        .flat_map(|(name, shader)| shader.module.entry_points.iter().map(|e| (*name, e.name.as_str())))
        .collect();
    assert_eq!(
        unique, declared,
        "ENTRY_POINTS must list exactly the entry points of the shaders"
    );
}

#[test]
fn every_shader_in_the_folder_is_compiled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let compiled: BTreeSet<String> = compiled_sources().into_iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, compiled, "shaders/ against kernels::contract::compiled_sources");
    // shaders/common/ holds the preludes, each prepended to at least one shader.
    let common: BTreeSet<String> = std::fs::read_dir(dir.join("common"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let preludes: BTreeSet<String> = source::PRELUDES.iter().map(|s| s.to_string()).collect();
    assert_eq!(common, preludes, "shaders/common/ against kernels::source::PRELUDES");
    for name in source::PRELUDES {
        let text = std::fs::read_to_string(dir.join("common").join(format!("{name}.wgsl"))).unwrap();
        assert!(
            compiled_sources().iter().any(|(_, s)| s.contains(&text)),
            "the prelude {name} is prepended to no shader"
        );
    }
}

#[test]
fn a_binding_slot_means_one_variable_per_shader() {
    let mut reused = Vec::new();
    for (name, shader) in &shaders() {
        let mut slots: BTreeMap<(u32, u32), Vec<String>> = BTreeMap::new();
        for (_, g) in shader.module.global_variables.iter() {
            if let Some(b) = &g.binding {
                slots
                    .entry((b.group, b.binding))
                    .or_default()
                    .push(g.name.clone().unwrap_or_default());
            }
        }
        let shared: Vec<_> = slots.into_iter().filter(|(_, names)| names.len() > 1).collect();
        if !shared.is_empty() {
            println!("{name}.wgsl reuses slots: {shared:?}");
            reused.push(*name);
        }
    }
    assert!(
        reused.is_empty(),
        "shaders whose slots mean several variables (one declaration per slot, or split the file): {reused:?}"
    );
}
