// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// `scatter`: per latent j, out[j, c] (+)= Σ_{e ∈ entries of j} s[e] · y[row of e, c];
//   s [rows, k], y [rows, cols]; out [m, cols], or [cols, m] when transposed = 1.
//   Stacked (an index from `Csc::stacked`) with shared_y = 1, y holds one instance's rows,
//   shared by all (an ensemble's one batch): an entry of instance s's row r reads y's row
//   r − s·instance_rows.
//   With has_bias = 1 also sums[j] (+)= Σ_{e ∈ entries of j} s[e] in row order (a bias
//   gradient, in the pass that forms its weight gradient), by the invocation of columns 0.
//   Bindings: 0 p, 1 csc_offsets, 2 csc_entries, 3 csc_rows, 4 s, 5 out, 6 y (in the file
//   this is prepended to), 7 sums.
//   One invocation per `width` (16 or 32, `SparseWidth`) columns of a latent's output row
//   (index i → latent i / ceil(cols / width)); y is bound as vec4s (tensors are padded to
//   16 bytes), and where cols is a multiple of 4 each entry loads width / 4 whole vec4s (lavapipe loads
//   storage lane by lane, so one vec4 costs about what one scalar does).
//   Work rows·k·cols + m·cols.
// Prepended (`kernels::source`) to the two files that bind y, shaders/sparse_scatter.wgsl
// (a storage buffer) and sparse_scatter_texture.wgsl (a texture), after
// shaders/common/sparse.wgsl — Params, WG, BLOCK, linear — and
// common/sparse_products.wgsl — the gather, cols4, store4.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(4) var<storage, read> s: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

// The first row of this invocation's instance where y is shared (else 0).
var<private> row_shift: u32;

// The gather's terms (common/sparse_products.wgsl): latent j's entries, in row order.
fn term_row(n: u32) -> u32 { return csc_rows[n] - row_shift; }
fn term_weight(n: u32) -> f32 { return s[csc_entries[n]]; }

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + p.width - 1u) / p.width;
    let i = linear(wg, nwg, li);
    let j = i / blocks;
    let c0 = (i % blocks) * p.width;
    if (j >= p.m) { return; }
    row_shift = 0u;
    if (p.shared_y != 0u) { row_shift = j / (p.m / p.instances) * p.instance_rows; }
    let first = csc_offsets[j];
    let end = csc_offsets[j + 1u];
    let acc = gathered(first, end, c0);
    if (p.has_bias != 0u && c0 == 0u) {
        var t = 0.0;
        for (var n = first; n < end; n++) { t += term_weight(n); }
        if (p.accumulate != 0u) { t += sums[j]; }
        sums[j] = t;
    }
    var base = j * p.cols;
    var stride = 1u;
    if (p.transposed != 0u) {
        base = j;
        stride = p.m;
    }
    store4(base, stride, c0, acc.lo[0]);
    store4(base, stride, c0 + 4u, acc.lo[1]);
    store4(base, stride, c0 + 8u, acc.lo[2]);
    store4(base, stride, c0 + 12u, acc.lo[3]);
    if (p.width == 32u) {
        store4(base, stride, c0 + 16u, acc.hi[0]);
        store4(base, stride, c0 + 20u, acc.hi[1]);
        store4(base, stride, c0 + 24u, acc.hi[2]);
        store4(base, stride, c0 + 28u, acc.hi[3]);
    }
}
