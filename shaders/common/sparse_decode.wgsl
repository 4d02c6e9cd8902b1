// The k-sparse products of a TopK training step. A row's active latents are TopK's
// sparse form: idx [rows, k] (u32) and val [rows, k] (the kept values, possibly 0
// where a ReLU clipped them); entry e = r·k + t is the t-th active latent of row r.
// Every sum runs in a fixed order and nothing is accumulated atomically, so results
// are bit-reproducible.
//
// The other entry points of the step are one file per binding layout: `sparse_*.wgsl`.
//
// `decode`: out[r, c] = Σ_t val[r, t] · dict[idx[r, t], c] (+ bias[c]);
//   dict [m, cols] (bound as vec4s: tensors are padded to 16 bytes), out [rows, cols].
//   Bindings: 0 p, 1 idx, 2 val, 3 dict (in the file this is prepended to), 4 bias, 5 out.
//   One invocation per `width` (16 or 32, `SparseWidth`) columns of a row (index i → row
//   i / ceil(cols / width)): the index and value loads are shared by `width` products,
//   and where cols is a multiple of 4
//   the dictionary comes in whole vec4s. Work rows·k·cols.
// Prepended (`kernels::source`) to the two files that bind dict, shaders/sparse.wgsl (a
// storage buffer) and sparse_texture.wgsl (a texture), after shaders/common/sparse.wgsl —
// Params, WG, BLOCK, linear — and common/sparse_products.wgsl — the gather, cols4, store4.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// The gather's terms (common/sparse_products.wgsl): row r's active latents, in order.
fn term_row(n: u32) -> u32 { return idx[n]; }
fn term_weight(n: u32) -> f32 { return val[n]; }

@compute @workgroup_size(64)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + p.width - 1u) / p.width;
    let i = linear(wg, nwg, li);
    let r = i / blocks;
    let c0 = (i % blocks) * p.width;
    if (r >= p.rows) { return; }
    let acc = gathered(r * p.k, (r + 1u) * p.k, c0);
    let base = r * p.cols;
    store_biased(base, c0, acc.lo[0]);
    store_biased(base, c0 + 4u, acc.lo[1]);
    store_biased(base, c0 + 8u, acc.lo[2]);
    store_biased(base, c0 + 12u, acc.lo[3]);
    if (p.width == 32u) {
        store_biased(base, c0 + 16u, acc.hi[0]);
        store_biased(base, c0 + 20u, acc.hi[1]);
        store_biased(base, c0 + 24u, acc.hi[2]);
        store_biased(base, c0 + 28u, acc.hi[3]);
    }
}

// out[base + c0 .. c0 + 3] = v (+ bias[c0 .. c0 + 3]) for the columns that exist.
fn store_biased(base: u32, c0: u32, v: vec4<f32>) {
    var w = v;
    if (p.has_bias != 0u) {
        let a = cols4(0u, c0);
        w += vec4<f32>(bias[a.x], bias[a.y], bias[a.z], bias[a.w]);
    }
    store4(base, 1u, c0, w);
}
