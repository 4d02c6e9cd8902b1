// The MFR gradient of c · Σ_j S[assign[j], j], c = p.scale · step.weight, for dictionaries
// [m, d] row-major (m = p.ma = p.mb). (MFR: scale = −1 / (pairs · m) and weight = λ·w(t), the
// per-step uniform, so that this is the gradient of λ·w(t)·mean_pairs(1 − MMCS).)
// gb[j, k] (+)= c · ua[assign[j], k] (p.fresh = 1 overwrites: the SAE's first pair of the step).
// Bindings: 0 p, 1 step, 2 ua, 3 assign, 4 gb. One invocation per (j, k), 64 a group; each
// writes one element. (`mfr_grad_a.wgsl` is the other dictionary's.)
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> ua: array<f32>;
@group(0) @binding(3) var<storage, read> assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> gb: array<f32>;

@compute @workgroup_size(64)
fn grad_b(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    if (e >= p.mb * p.d) { return; }
    let j = e / p.d;
    let k = e % p.d;
    let g = p.scale * step.weight * ua[assign[j] * p.d + k];
    if (p.fresh != 0u) { gb[e] = g; } else { gb[e] += g; }
}
