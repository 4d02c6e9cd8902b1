// Decoder row normalisation and its gradient.
//
// `rows`: u[r] = w[r] / ‖w[r]‖ and norms[r] = ‖w[r]‖ for w [rows, cols]
//   (the tied decoder U = W / ‖W_j‖). Bindings: 0 p, 1 w, 2 u, 3 norms.
// `renormalise`: w[r] ← w[r] / ‖w[r]‖ in place (the standard decoder after each step).
//   Bindings: 0 p, 1 w.
// `project`: the gradient through the normalisation, or the projection that keeps
//   unit rows on the sphere:
//     dst[r] (+)= (src[r] − (src[r]·u[r]) u[r]) / n_r,  n_r = norms[r] if use_norms else 1.
//   Bindings: 0 proj, 1 src, 2 u, 3 norms, 4 dst.
// All: one invocation per row, 64 a group. A zero row stays zero (norm clamped at EPS).

struct Params { rows: u32, cols: u32, _p0: u32, _p1: u32 }
struct Proj { rows: u32, cols: u32, accumulate: u32, use_norms: u32 }

const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> norms_out: array<f32>;

@group(0) @binding(1) var<storage, read_write> w_inout: array<f32>;

@group(0) @binding(0) var<uniform> proj: Proj;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

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
    for (var c = 0u; c < p.cols; c++) { u_out[r * p.cols + c] = w[r * p.cols + c] * inv; }
    norms_out[r] = n;
}

@compute @workgroup_size(64)
fn renormalise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    var ss = 0.0;
    for (var c = 0u; c < p.cols; c++) { let v = w_inout[r * p.cols + c]; ss += v * v; }
    let inv = 1.0 / max(sqrt(ss), EPS);
    for (var c = 0u; c < p.cols; c++) { w_inout[r * p.cols + c] *= inv; }
}

@compute @workgroup_size(64)
fn project(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= proj.rows) { return; }
    let base = r * proj.cols;
    var along = 0.0;
    for (var c = 0u; c < proj.cols; c++) { along += src[base + c] * u[base + c]; }
    var inv = 1.0;
    if (proj.use_norms != 0u) { inv = 1.0 / max(norms[r], EPS); }
    for (var c = 0u; c < proj.cols; c++) {
        var g = (src[base + c] - along * u[base + c]) * inv;
        if (proj.accumulate != 0u) { g += dst[base + c]; }
        dst[base + c] = g;
    }
}
