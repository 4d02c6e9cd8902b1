// The k-sparse products of a TopK training step. A row's active latents are TopK's
// sparse form: idx [rows, k] (u32) and val [rows, k] (the kept values, possibly 0
// where a ReLU clipped them); entry e = r·k + t is the t-th active latent of row r.
// Every sum runs in a fixed order and nothing is accumulated atomically, so results
// are bit-reproducible.
//
// `decode`: out[r, c] = Σ_t val[r, t] · dict[idx[r, t], c] (+ bias[c]);
//   dict [m, cols], out [rows, cols]. Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 bias, 5 out.
//   Workgroup w (folded linear index) covers row w / ceil(cols / 256) and 256 of its
//   columns, 4 per invocation (the index and value loads shared by 4 products;
//   2–4× faster than 1 per invocation on lavapipe). Work rows·k·cols.
// `code_gradient`: the gradient at the pre-activation of each active latent,
//   dval[r, t] = g[r, :] · dict[idx[r, t], :] where val[r, t] ≠ 0, else 0 (the
//   activation's derivative: a latent whose kept value is 0 passes nothing, as in
//   `activation.wgsl`'s backward). g [rows, cols], dval [rows, k].
//   Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 g, 5 dval. One invocation per (r, t).
// The latent-major index (CSC) of the active set, built in four passes:
//   `mark`: pos [rows, m] = t + 1 where idx[r, t] = j, else 0. One invocation per row.
//     Bindings: 0 p, 1 idx, 2 pos.
//   `count`: offsets[j + 1] = #rows where j is active. One invocation per latent.
//     Bindings: 0 p, 1 pos_in, 2 offsets.
//   `scan`: offsets [m + 1] turned into an exclusive prefix sum (offsets[0] = 0).
//     One invocation. Bindings: 0 p, 1 offsets.
//   `fill`: entries[offsets[j] ..] = the entries e of latent j, in row order, and
//     entry_rows the row of each (so `scatter` divides nothing: integer division per
//     lane is slow on CPU drivers). One invocation per latent.
//     Bindings: 0 p, 1 pos_in, 2 offsets_in, 3 entries, 4 entry_rows.
// `scatter`: per latent j, out[j, c] (+)= Σ_{e ∈ entries of j} s[e] · y[row of e, c];
//   s [rows, k], y [rows, cols]; out [m, cols], or [cols, m] when transposed = 1.
//   Bindings: 0 p, 1 csc_offsets, 2 csc_entries, 3 csc_rows, 4 s, 5 out, 6 y.
//   Workgroup w (folded linear index) covers latent w / ceil(cols / 256) and 256
//   columns, 4 per invocation. Work rows·k·cols + m·cols.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params { rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, _p0: u32 }

const WG: u32 = 64u;
// Columns one workgroup of `decode` or `scatter` covers: 64 invocations × 4.
const SPAN: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<f32>;
@group(0) @binding(3) var<storage, read> dict: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> dval: array<f32>;

@group(0) @binding(2) var<storage, read_write> pos: array<u32>;

@group(0) @binding(1) var<storage, read> pos_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;

@group(0) @binding(1) var<storage, read_write> offsets_scan: array<u32>;

@group(0) @binding(2) var<storage, read> offsets_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> entries: array<u32>;
@group(0) @binding(4) var<storage, read_write> entry_rows: array<u32>;

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
    let chunks = (p.cols + SPAN - 1u) / SPAN;
    let group = wg.y * nwg.x + wg.x;
    let r = group / chunks;
    let c0 = (group % chunks) * SPAN + li * 4u;
    if (r >= p.rows || c0 >= p.cols) { return; }
    var acc = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        let at = cols4(idx[e] * p.cols, c0);
        acc += val[e] * vec4<f32>(dict[at.x], dict[at.y], dict[at.z], dict[at.w]);
    }
    if (p.has_bias != 0u) {
        let at = cols4(0u, c0);
        acc += vec4<f32>(bias[at.x], bias[at.y], bias[at.z], bias[at.w]);
    }
    store4(r * p.cols, 1u, c0, acc);
}

@compute @workgroup_size(64)
fn code_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    if (e >= p.rows * p.k) { return; }
    var acc = 0.0;
    if (val[e] != 0.0) {
        let r = e / p.k;
        let j = idx[e];
        for (var c = 0u; c < p.cols; c++) { acc += g[r * p.cols + c] * dict[j * p.cols + c]; }
    }
    dval[e] = acc;
}

@compute @workgroup_size(64)
fn mark(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= p.rows) { return; }
    for (var j = 0u; j < p.m; j++) { pos[r * p.m + j] = 0u; }
    for (var t = 0u; t < p.k; t++) { pos[r * p.m + idx[r * p.k + t]] = t + 1u; }
}

@compute @workgroup_size(64)
fn count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    var n = 0u;
    for (var r = 0u; r < p.rows; r++) { n += select(0u, 1u, pos_in[r * p.m + j] != 0u); }
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
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    var at = offsets_in[j];
    for (var r = 0u; r < p.rows; r++) {
        let t = pos_in[r * p.m + j];
        if (t != 0u) {
            entries[at] = r * p.k + t - 1u;
            entry_rows[at] = r;
            at++;
        }
    }
}

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let chunks = (p.cols + SPAN - 1u) / SPAN;
    let group = wg.y * nwg.x + wg.x;
    let j = group / chunks;
    let c0 = (group % chunks) * SPAN + li * 4u;
    if (j >= p.m || c0 >= p.cols) { return; }
    var acc = vec4<f32>(0.0);
    for (var i = csc_offsets[j]; i < csc_offsets[j + 1u]; i++) {
        let at = cols4(csc_rows[i] * p.cols, c0);
        acc += s[csc_entries[i]] * vec4<f32>(y[at.x], y[at.y], y[at.z], y[at.w]);
    }
    if (p.transposed != 0u) {
        store4(j, p.m, c0, acc);
    } else {
        store4(j * p.cols, 1u, c0, acc);
    }
}
