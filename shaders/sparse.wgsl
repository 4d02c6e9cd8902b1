// The k-sparse products of a TopK training step. A row's active latents are TopK's
// sparse form: idx [rows, k] (u32) and val [rows, k] (the kept values, possibly 0
// where a ReLU clipped them); entry e = r·k + t is the t-th active latent of row r.
// Every sum runs in a fixed order and nothing is accumulated atomically, so results
// are bit-reproducible.
//
// `decode`: out[r, c] = Σ_t val[r, t] · dict[idx[r, t], c] (+ bias[c]);
//   dict [m, cols], out [rows, cols]. Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 bias, 5 out.
//   One invocation per 4 columns of a row (index i → row i / ceil(cols / 4)): the
//   index and value loads are shared by 4 products, 2–4× faster than one column per
//   invocation on lavapipe, and no lane idles when cols is small. Work rows·k·cols.
// `code_gradient`: the gradient at the pre-activation of each active latent,
//   dval[r, t] = g[r, :] · dict[idx[r, t], :] where val[r, t] ≠ 0, else 0 (the
//   activation's derivative: a latent whose kept value is 0 passes nothing, as in
//   `activation_backward.wgsl`). g [rows, cols], dval [rows, k].
//   Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 g, 5 dval. One invocation per (r, t).
// The latent-major index (CSC) of the active set, built in four passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `count`: per block b, counts[b, j] = #entries of latent j in its rows. One invocation
//     per block, its rows in order. Bindings: 0 p, 1 idx, 2 counts.
//   `block_scan`: per latent j, counts[b, j] becomes the exclusive prefix over the blocks
//     (where block b's entries of j start among j's) and offsets[j + 1] the total.
//     One invocation per latent. Bindings: 0 p, 1 counts_scan, 2 offsets.
//   `scan`: offsets [m + 1] turned into an exclusive prefix sum (offsets[0] = 0).
//     One invocation. Bindings: 0 p, 1 offsets.
//   `fill`: per block b, its entries e = r·k + t in row order go to entries[offsets[j] +
//     counts[b, j]++], and entry_rows the row of each (so `scatter` needs no division per
//     entry: integer division per lane is slow on CPU drivers). Latent j's entries thus
//     come in row order. One invocation per block.
//     Bindings: 0 p, 1 idx, 2 cursor, 3 offsets_in, 4 entries, 5 entry_rows.
// `scatter`: per latent j, out[j, c] (+)= Σ_{e ∈ entries of j} s[e] · y[row of e, c];
//   s [rows, k], y [rows, cols]; out [m, cols], or [cols, m] when transposed = 1.
//   Bindings: 0 p, 1 csc_offsets, 2 csc_entries, 3 csc_rows, 4 s, 5 out, 6 y.
//   One invocation per 4 columns of a latent's output row (index i → latent
//   i / ceil(cols / 4)). Work rows·k·cols + m·cols.
// `columns`: per latent j, dst[j] (+)= Σ_{e ∈ entries of j} op(code_s[e]) in row order, op
//   1: [s ≠ 0], 2: |s| (`ColumnOp`'s codes): the dense code's column counts and sums (the
//   latents' firing counts, L1) bit for bit — a row where j is inactive adds exactly 0 —
//   at rows·k instead of rows·m. code_s [rows, k]. Bindings: 0 p, 1 csc_offsets,
//   2 csc_entries, 3 code_s, 4 dst. One invocation per latent.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params { rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, op: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<f32>;
@group(0) @binding(3) var<storage, read> dict: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> dval: array<f32>;

@group(0) @binding(2) var<storage, read_write> counts: array<u32>;

@group(0) @binding(1) var<storage, read_write> counts_scan: array<u32>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;

@group(0) @binding(1) var<storage, read_write> offsets_scan: array<u32>;

@group(0) @binding(2) var<storage, read_write> cursor: array<u32>;
@group(0) @binding(3) var<storage, read> offsets_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> entries: array<u32>;
@group(0) @binding(5) var<storage, read_write> entry_rows: array<u32>;

@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(4) var<storage, read> s: array<f32>;
@group(0) @binding(6) var<storage, read> y: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// Indices of columns c0 .. c0 + 3 of the row starting at `base` of a [.., cols] matrix;
// columns past the end read the last one (their results are never stored).
fn cols4(base: u32, c0: u32) -> vec4<u32> {
    let last = p.cols - 1u;
    return vec4<u32>(base + min(c0, last), base + min(c0 + 1u, last), base + min(c0 + 2u, last), base + min(c0 + 3u, last));
}

// out[base + c·stride] (+)= v for the columns c = c0 .. c0 + 3 that exist.
fn store4(base: u32, stride: u32, c0: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if (c0 + q < p.cols) {
            var value = v[q];
            if (p.accumulate != 0u) { value += out[base + (c0 + q) * stride]; }
            out[base + (c0 + q) * stride] = value;
        }
    }
}

@compute @workgroup_size(64)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + 15u) / 16u;
    let i = linear(wg, nwg, li);
    let r = i / blocks;
    let c0 = (i % blocks) * 16u;
    if (r >= p.rows) { return; }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        let base = idx[e] * p.cols;
        let v = val[e];
        let a0 = cols4(base, c0);
        let a1 = cols4(base, c0 + 4u);
        let a2 = cols4(base, c0 + 8u);
        let a3 = cols4(base, c0 + 12u);
        acc0 += v * vec4<f32>(dict[a0.x], dict[a0.y], dict[a0.z], dict[a0.w]);
        acc1 += v * vec4<f32>(dict[a1.x], dict[a1.y], dict[a1.z], dict[a1.w]);
        acc2 += v * vec4<f32>(dict[a2.x], dict[a2.y], dict[a2.z], dict[a2.w]);
        acc3 += v * vec4<f32>(dict[a3.x], dict[a3.y], dict[a3.z], dict[a3.w]);
    }
    if (p.has_bias != 0u) {
        let a0 = cols4(0u, c0);
        let a1 = cols4(0u, c0 + 4u);
        let a2 = cols4(0u, c0 + 8u);
        let a3 = cols4(0u, c0 + 12u);
        acc0 += vec4<f32>(bias[a0.x], bias[a0.y], bias[a0.z], bias[a0.w]);
        acc1 += vec4<f32>(bias[a1.x], bias[a1.y], bias[a1.z], bias[a1.w]);
        acc2 += vec4<f32>(bias[a2.x], bias[a2.y], bias[a2.z], bias[a2.w]);
        acc3 += vec4<f32>(bias[a3.x], bias[a3.y], bias[a3.z], bias[a3.w]);
    }
    let base = r * p.cols;
    store4(base, 1u, c0, acc0);
    store4(base, 1u, c0 + 4u, acc1);
    store4(base, 1u, c0 + 8u, acc2);
    store4(base, 1u, c0 + 12u, acc3);
}

@compute @workgroup_size(64)
fn code_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let groups = (p.k + 3u) / 4u;
    let i = linear(wg, nwg, li);
    let r = i / groups;
    let t0 = (i % groups) * 4u;
    if (r >= p.rows) { return; }
    // The row's entries t0 .. t0 + 3 (past k: the last one again, never stored).
    let last = r * p.k + p.k - 1u;
    let e = min(vec4<u32>(r * p.k + t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let rows = vec4<u32>(idx[e.x], idx[e.y], idx[e.z], idx[e.w]) * p.cols;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols; c++) {
        let gv = g[r * p.cols + c];
        acc += gv * vec4<f32>(dict[rows.x + c], dict[rows.y + c], dict[rows.z + c], dict[rows.w + c]);
    }
    for (var q = 0u; q < 4u; q++) {
        if (t0 + q < p.k) { dval[e[q]] = select(0.0, acc[q], val[e[q]] != 0.0); }
    }
}

// Rows per block of the CSC build (must match `CSC_BLOCK` in sparse.rs).
const BLOCK: u32 = 64u;

@compute @workgroup_size(64)
fn count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let b = linear(wg, nwg, li);
    if (b * BLOCK >= p.rows) { return; }
    for (var j = 0u; j < p.m; j++) { counts[b * p.m + j] = 0u; }
    for (var e = b * BLOCK * p.k; e < min((b + 1u) * BLOCK, p.rows) * p.k; e++) {
        counts[b * p.m + idx[e]] += 1u;
    }
}

@compute @workgroup_size(64)
fn block_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    var n = 0u;
    for (var b = 0u; b * BLOCK < p.rows; b++) {
        let c = counts_scan[b * p.m + j];
        counts_scan[b * p.m + j] = n;
        n += c;
    }
    offsets[j + 1u] = n;
}

@compute @workgroup_size(1)
fn scan() {
    offsets_scan[0] = 0u;
    for (var j = 0u; j < p.m; j++) { offsets_scan[j + 1u] += offsets_scan[j]; }
}

@compute @workgroup_size(64)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let b = linear(wg, nwg, li);
    if (b * BLOCK >= p.rows) { return; }
    for (var r = b * BLOCK; r < min((b + 1u) * BLOCK, p.rows); r++) {
        for (var t = 0u; t < p.k; t++) {
            let e = r * p.k + t;
            let j = idx[e];
            let at = offsets_in[j] + cursor[b * p.m + j];
            cursor[b * p.m + j] += 1u;
            entries[at] = e;
            entry_rows[at] = r;
        }
    }
}

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + 15u) / 16u;
    let i = linear(wg, nwg, li);
    let j = i / blocks;
    let c0 = (i % blocks) * 16u;
    if (j >= p.m) { return; }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let base = csc_rows[n] * p.cols;
        let sv = s[csc_entries[n]];
        let a0 = cols4(base, c0);
        let a1 = cols4(base, c0 + 4u);
        let a2 = cols4(base, c0 + 8u);
        let a3 = cols4(base, c0 + 12u);
        acc0 += sv * vec4<f32>(y[a0.x], y[a0.y], y[a0.z], y[a0.w]);
        acc1 += sv * vec4<f32>(y[a1.x], y[a1.y], y[a1.z], y[a1.w]);
        acc2 += sv * vec4<f32>(y[a2.x], y[a2.y], y[a2.z], y[a2.w]);
        acc3 += sv * vec4<f32>(y[a3.x], y[a3.y], y[a3.z], y[a3.w]);
    }
    var base = j * p.cols;
    var stride = 1u;
    if (p.transposed != 0u) {
        base = j;
        stride = p.m;
    }
    store4(base, stride, c0, acc0);
    store4(base, stride, c0 + 4u, acc1);
    store4(base, stride, c0 + 8u, acc2);
    store4(base, stride, c0 + 12u, acc3);
}

@group(0) @binding(3) var<storage, read> code_s: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    var acc = 0.0;
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let v = code_s[csc_entries[n]];
        if (p.op == 1u) { acc += select(0.0, 1.0, v != 0.0); } else { acc += abs(v); }
    }
    if (p.accumulate != 0u) { acc += dst[j]; }
    dst[j] = acc;
}
