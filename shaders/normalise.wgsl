// Decoder row normalisation, w [rows, cols] row-major (the gradient through it is
// `normalise_project.wgsl`).
//
// `rows`: u[r] = w[r] / ‖w[r]‖ and norms[r] = ‖w[r]‖ (the tied decoder U = W / ‖W_j‖).
//   Bindings: 0 p, 1 w (only read here), 2 u, 3 norms.
// `renormalise`: w[r] ← w[r] / ‖w[r]‖ in place (the standard decoder after each step).
//   Bindings: 0 p, 1 w.
// Both: one invocation per row, 64 a group. A zero row stays zero (norm clamped at EPS).
// w and u are bound as vec4s (tensors are padded to 16 bytes); where cols is a multiple of
// 4 rows are read and written as whole vec4s (lavapipe loads storage lane by lane, one
// vec4 for about the price of one scalar), summing in the same order as the scalar path.

// accumulate and use_norms are `normalise_project.wgsl`'s (one uniform layout for both files).
struct Params { rows: u32, cols: u32, accumulate: u32, use_norms: u32 }

const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> u: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> norms: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// Σ w[r, c]² in column order.
fn squares(r: u32) -> f32 {
    var ss = 0.0;
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        for (var c = 0u; c < q; c++) {
            let v = w[r * q + c];
            ss += v.x * v.x;
            ss += v.y * v.y;
            ss += v.z * v.z;
            ss += v.w * v.w;
        }
    } else {
        for (var c = 0u; c < p.cols; c++) {
            let e = r * p.cols + c;
            let v = w[e / 4u][e % 4u];
            ss += v * v;
        }
    }
    return ss;
}

@compute @workgroup_size(64)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    let n = sqrt(squares(r));
    let inv = 1.0 / max(n, EPS);
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        for (var c = 0u; c < q; c++) { u[r * q + c] = w[r * q + c] * inv; }
    } else {
        for (var c = 0u; c < p.cols; c++) {
            let e = r * p.cols + c;
            u[e / 4u][e % 4u] = w[e / 4u][e % 4u] * inv;
        }
    }
    norms[r] = n;
}

@compute @workgroup_size(64)
fn renormalise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    let inv = 1.0 / max(sqrt(squares(r)), EPS);
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        for (var c = 0u; c < q; c++) { w[r * q + c] *= inv; }
    } else {
        for (var c = 0u; c < p.cols; c++) {
            let e = r * p.cols + c;
            w[e / 4u][e % 4u] *= inv;
        }
    }
}
