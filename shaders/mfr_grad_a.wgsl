// The MFR gradient of c · Σ_j S[assign[j], j], c = p.scale · step.weight, for dictionaries
// [m, d] row-major (m = p.ma = p.mb). (MFR: scale = −1 / (pairs · m) and weight = λ·w(t), the
// per-step uniform, so that this is the gradient of λ·w(t)·mean_pairs(1 − MMCS).)
// ga[i, k] (+)= c · Σ_{j in group i} ub[j, k], group i = members[offsets[i] .. offsets[i + 1]]
// (p.fresh = 1 overwrites: the SAE's first pair of the step),
// the j with assign[j] = i, in increasing j (so sums are deterministic; `mfr_groups.wgsl`).
// Bindings: 0 p, 1 step, 2 ub, 3 offsets, 4 members, 5 ga. One invocation per (i, k), 64 a
// group; each writes one element. (`mfr_grad_b.wgsl` is the other dictionary's.)
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read> members: array<u32>;
@group(0) @binding(5) var<storage, read_write> ga: array<f32>;

@compute @workgroup_size(64)
fn grad_a(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    if (e >= p.ma * p.d) { return; }
    let i = e / p.d;
    let k = e % p.d;
    let c = p.scale * step.weight;
    var acc = 0.0;
    if (p.fresh == 0u) { acc = ga[e]; }
    for (var t = offsets[i]; t < offsets[i + 1u]; t++) { acc += c * ub[members[t] * p.d + k]; }
    ga[e] = acc;
}
