// Mean squared error and its gradient.
//   grad[r, c] = scale · (xhat[r, c] − tgt[r, c]), scale = coef · 2 / (rows · cols)
//   row_sq[r]  = Σ_c (xhat[r, c] − tgt[r, c])²   (summed on the GPU into metrics)
// so that MSE = Σ_r row_sq[r] / (rows · cols).
// Bindings: 0 params, 1 xhat, 2 tgt, 3 grad (bound as vec4s: tensors are padded to 16
// bytes), 4 row_sq. One invocation per row; where cols is a multiple of 4 it reads and
// writes whole vec4s (lavapipe loads storage lane by lane, one vec4 for about the price
// of one scalar), summing in the same order as the scalar path.

struct Params { rows: u32, cols: u32, scale: f32, _p0: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xhat: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> tgt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grad: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> row_sq: array<f32>;

@compute @workgroup_size(64)
fn mse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let r = (wg.y * nwg.x + wg.x) * WG + li;
    if (r >= p.rows) { return; }
    var sq = 0.0;
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        for (var c = 0u; c < q; c++) {
            let i = r * q + c;
            let e = xhat[i] - tgt[i];
            grad[i] = p.scale * e;
            sq += e.x * e.x;
            sq += e.y * e.y;
            sq += e.z * e.z;
            sq += e.w * e.w;
        }
    } else {
        for (var c = 0u; c < p.cols; c++) {
            let i = r * p.cols + c;
            let e = xhat[i / 4u][i % 4u] - tgt[i / 4u][i % 4u];
            grad[i / 4u][i % 4u] = p.scale * e;
            sq += e * e;
        }
    }
    row_sq[r] = sq;
}
