// The gradient through the row normalisation of `normalise.wgsl`, or the projection that
// keeps unit rows on the sphere, for src, u, dst [rows, cols] row-major:
//   dst[r] (+)= (src[r] − (src[r]·u[r]) u[r]) / n_r,  n_r = norms[r] if use_norms else 1
//   (accumulate: add to dst instead of overwriting it).
// Bindings: 0 p, 1 src, 2 u, 3 norms, 4 dst. One invocation per row, 64 a group.

struct Params { rows: u32, cols: u32, accumulate: u32, use_norms: u32 }

const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn project(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    var along = 0.0;
    for (var c = 0u; c < p.cols; c++) { along += src[base + c] * u[base + c]; }
    var inv = 1.0;
    if (p.use_norms != 0u) { inv = 1.0 / max(norms[r], EPS); }
    for (var c = 0u; c < p.cols; c++) {
        var g = (src[base + c] - along * u[base + c]) * inv;
        if (p.accumulate != 0u) { g += dst[base + c]; }
        dst[base + c] = g;
    }
}
