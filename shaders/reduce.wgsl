// Column reductions for bias gradients and metrics (a total into an accumulator:
// `reduce_total.wgsl`; a step's metrics: `metrics_*.wgsl`).
//
// `columns`: per column j of src [rows, cols], dst[j] (+)= reduce over rows of:
//   op 0: src            (sum: bias gradients)
//   op 1: (src − mean_j)² (centered sum of squares: the FVU denominator)
//   accumulate = 1 adds to dst instead of overwriting it.
//   (A code's per-latent counts and sums: `metrics_latents.wgsl`.)
//   Bindings: 0 params, 1 src, 2 dst. One invocation per column, 64 a group (the grid may be
//   folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local); rows summed in order.

struct Params { rows: u32, cols: u32, op: u32, accumulate: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = (wg.y * nwg.x + wg.x) * WG + li;
    if (j >= p.cols) { return; }
    var mean = 0.0;
    if (p.op == 1u) {
        for (var r = 0u; r < p.rows; r++) { mean += src[r * p.cols + j]; }
        mean = mean / f32(max(p.rows, 1u));
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let v = src[r * p.cols + j];
        if (p.op == 0u) { s += v; } else { s += (v - mean) * (v - mean); }
    }
    if (p.accumulate != 0u) { s += dst[j]; }
    dst[j] = s;
}
