// Column reductions for bias gradients and metrics (totals into the metrics accumulator:
// `reduce_total.wgsl`; the re-initialisation statistic: `reduce_deviation.wgsl`).
//
// `columns`: per column j of src [rows, cols], dst[j] (+)= reduce over rows of:
//   op 0: src            (sum: bias gradients)
//   op 1: src ≠ 0        (count: firing counts, L0)
//   op 2: |src|          (sum of magnitudes: L1)
//   op 3: (src − mean_j)² (centered sum of squares: the FVU denominator)
//   accumulate = 1 adds to dst instead of overwriting it (counts over a log window).
//   Bindings: 0 params, 1 src (bound as vec4s: tensors are padded to 16 bytes), 2 dst.
//   One invocation per column, or per 4 columns read as whole vec4s where cols is a
//   multiple of 4 (lavapipe loads storage lane by lane, one vec4 for about the price of
//   one scalar), 64 a group (the grid may be folded into 2-D: index = (wg.y·nwg.x +
//   wg.x)·64 + local); rows summed in order on both paths.

struct Params { rows: u32, cols: u32, op: u32, accumulate: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// op applied to v, added to s (componentwise for the vec4 path; mean for op 3).
fn term(op: u32, v: vec4<f32>, mean: vec4<f32>) -> vec4<f32> {
    switch op {
        case 0u: { return v; }
        case 1u: { return select(vec4<f32>(0.0), vec4<f32>(1.0), v != vec4<f32>(0.0)); }
        case 2u: { return abs(v); }
        default: { return (v - mean) * (v - mean); }
    }
}

// Columns 4·j4 .. 4·j4 + 3 as one vec4 per row, cols a multiple of 4.
fn columns_vec4(j4: u32) {
    let q = p.cols / 4u;
    if (j4 >= q) { return; }
    var mean = vec4<f32>(0.0);
    if (p.op == 3u) {
        for (var r = 0u; r < p.rows; r++) { mean += src[r * q + j4]; }
        mean = mean / f32(max(p.rows, 1u));
    }
    var s = vec4<f32>(0.0);
    for (var r = 0u; r < p.rows; r++) { s += term(p.op, src[r * q + j4], mean); }
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * j4 + c;
        var v = s[c];
        if (p.accumulate != 0u) { v += dst[j]; }
        dst[j] = v;
    }
}

// Column j for any cols, one scalar load per value.
fn columns_scalar(j: u32) {
    if (j >= p.cols) { return; }
    var mean = 0.0;
    if (p.op == 3u) {
        for (var r = 0u; r < p.rows; r++) {
            let e = r * p.cols + j;
            mean += src[e / 4u][e % 4u];
        }
        mean = mean / f32(max(p.rows, 1u));
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let e = r * p.cols + j;
        s += term(p.op, vec4<f32>(src[e / 4u][e % 4u]), vec4<f32>(mean)).x;
    }
    if (p.accumulate != 0u) { s += dst[j]; }
    dst[j] = s;
}

@compute @workgroup_size(64)
fn columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (p.cols % 4u == 0u) {
        columns_vec4(i);
    } else {
        columns_scalar(i);
    }
}
