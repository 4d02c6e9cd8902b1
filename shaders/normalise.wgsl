// Decoder row normalisation, w [rows, cols] row-major (the gradient through it is
// `normalise_project.wgsl`).
//
// `rows`: u[r] = w[r] / ‖w[r]‖ and norms[r] = ‖w[r]‖ (the tied decoder U = W / ‖W_j‖).
//   Bindings: 0 p, 1 w (only read here), 2 u, 3 norms.
// `renormalise`: w[r] ← w[r] / ‖w[r]‖ in place (the standard decoder after each step).
//   Bindings: 0 p, 1 w.
// Both: one invocation per row, 64 a group. A zero row stays zero (norm clamped at EPS).

// accumulate and use_norms are `normalise_project.wgsl`'s (one uniform layout for both files).
struct Params { rows: u32, cols: u32, accumulate: u32, use_norms: u32 }

const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    var ss = 0.0;
    for (var c = 0u; c < p.cols; c++) { let v = w[r * p.cols + c]; ss += v * v; }
    let n = sqrt(ss);
    let inv = 1.0 / max(n, EPS);
    for (var c = 0u; c < p.cols; c++) { u[r * p.cols + c] = w[r * p.cols + c] * inv; }
    norms[r] = n;
}

@compute @workgroup_size(64)
fn renormalise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    var ss = 0.0;
    for (var c = 0u; c < p.cols; c++) { let v = w[r * p.cols + c]; ss += v * v; }
    let inv = 1.0 / max(sqrt(ss), EPS);
    for (var c = 0u; c < p.cols; c++) { w[r * p.cols + c] *= inv; }
}
