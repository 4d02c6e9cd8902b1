// Mean squared error and its gradient.
//   grad[r, c] = scale · (xhat[r, c] − tgt[r, c]), scale = coef · 2 / (rows · cols)
//   row_sq[r]  = Σ_c (xhat[r, c] − tgt[r, c])²   (summed on the GPU into metrics)
// so that MSE = Σ_r row_sq[r] / (rows · cols).
// With target_rows ≠ 0, tgt holds target_rows rows shared by every block of that many rows of
// xhat (an ensemble's stacked reconstructions of one target): row r's target is row
// r mod target_rows.
// Bindings: 0 params, 1 xhat, 2 tgt (both bound as vec4s: tensors are padded to 16
// bytes), 3 grad, 4 row_sq. One invocation per row; where cols is a multiple of 4 it reads
// whole vec4s (lavapipe loads storage lane by lane, one vec4 for about the price of one
// scalar), summing in the same order as the scalar path. grad is written value by value
// (no kernel stores into one component of a vec4 in storage: a backend may make that a
// read-modify-write of the vec4, which races where rows share one).

struct Params { rows: u32, cols: u32, scale: f32, target_rows: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xhat: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> tgt: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_sq: array<f32>;

@compute @workgroup_size(64)
fn mse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let r = (wg.y * nwg.x + wg.x) * WG + li;
    if (r >= p.rows) { return; }
    var rt = r;
    if (p.target_rows != 0u) { rt = r % p.target_rows; }
    var sq = 0.0;
    if (p.cols % 4u == 0u) {
        let q = p.cols / 4u;
        for (var c = 0u; c < q; c++) {
            let i = r * q + c;
            let e = xhat[i] - tgt[rt * q + c];
            let g = p.scale * e;
            grad[4u * i] = g.x;
            grad[4u * i + 1u] = g.y;
            grad[4u * i + 2u] = g.z;
            grad[4u * i + 3u] = g.w;
            sq += e.x * e.x;
            sq += e.y * e.y;
            sq += e.z * e.z;
            sq += e.w * e.w;
        }
    } else {
        for (var c = 0u; c < p.cols; c++) {
            let i = r * p.cols + c;
            let it = rt * p.cols + c;
            let e = xhat[i / 4u][i % 4u] - tgt[it / 4u][it % 4u];
            grad[i] = p.scale * e;
            sq += e * e;
        }
    }
    row_sq[r] = sq;
}
