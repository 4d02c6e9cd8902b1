// The gradient through the row normalisation of `normalise.wgsl`, or the projection that
// keeps unit rows on the sphere, for src, u, dst [rows, cols] row-major:
//   dst[r] (+)= (src[r] − (src[r]·u[r]) u[r]) / n_r,  n_r = norms[r] if use_norms else 1
//   (accumulate: add to dst instead of overwriting it).
// Bindings: 0 p, 1 src, 2 u, 3 norms, 4 dst (src and u bound as vec4s: tensors are
// padded to 16 bytes). One invocation per row, 64 a group; where cols is a multiple of 4
// src and u are read as whole vec4s (lavapipe loads storage lane by lane, one vec4 for
// about the price of one scalar), summing in the same order as the scalar path. dst is
// written value by value: no kernel stores into one component of a vec4 in storage
// (whether that is a scalar store or a read-modify-write of the vec4 is the backend's
// choice, and the latter races where invocations share a vec4).

struct Params { rows: u32, cols: u32, accumulate: u32, use_norms: u32 }

const WG: u32 = 64u;
const EPS: f32 = 1e-12;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> u: array<vec4<f32>>;
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
    var inv = 1.0;
    if (p.use_norms != 0u) { inv = 1.0 / max(norms[r], EPS); }
    var along = 0.0;
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        let base = r * q;
        for (var c = 0u; c < q; c++) {
            let a = src[base + c] * u[base + c];
            along += a.x;
            along += a.y;
            along += a.z;
            along += a.w;
        }
        for (var c = 0u; c < q; c++) {
            let g = (src[base + c] - along * u[base + c]) * inv;
            for (var t = 0u; t < 4u; t++) {
                let e = 4u * (base + c) + t;
                var v = g[t];
                if (p.accumulate != 0u) { v += dst[e]; }
                dst[e] = v;
            }
        }
    } else {
        let base = r * p.cols;
        for (var c = 0u; c < p.cols; c++) {
            let e = base + c;
            along += src[e / 4u][e % 4u] * u[e / 4u][e % 4u];
        }
        for (var c = 0u; c < p.cols; c++) {
            let e = base + c;
            var g = (src[e / 4u][e % 4u] - along * u[e / 4u][e % 4u]) * inv;
            if (p.accumulate != 0u) { g += dst[e]; }
            dst[e] = g;
        }
    }
}
