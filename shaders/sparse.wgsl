// The k-sparse products of a TopK training step. A row's active latents are TopK's
// sparse form: idx [rows, k] (u32) and val [rows, k] (the kept values, possibly 0
// where a ReLU clipped them); entry e = r·k + t is the t-th active latent of row r.
// Every sum runs in a fixed order and nothing is accumulated atomically, so results
// are bit-reproducible.
//
// `decode`: out[r, c] = Σ_t val[r, t] · dict[idx[r, t], c] (+ bias[c]);
//   dict [m, cols], out [rows, cols]. Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 bias, 5 out.
//   Workgroup w (folded linear index) covers row w / ceil(cols / 64) and 64 of its
//   columns; one invocation per (r, c). Work rows·k·cols.
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
//   `fill`: entries[offsets[j] ..] = the entries e of latent j, in row order.
//     One invocation per latent. Bindings: 0 p, 1 pos_in, 2 offsets_in, 3 entries.
// `scatter`: per latent j, out[j, c] (+)= Σ_{e ∈ entries of j} s[e] · y[e / k, c];
//   s [rows, k], y [rows, cols]; out [m, cols], or [cols, m] when transposed = 1.
//   Bindings: 0 p, 1 offsets_in, 2 entries_in, 3 s, 4 y, 5 out.
//   Workgroup w (folded linear index) covers latent w / ceil(cols / 64) and 64
//   columns; one invocation per (j, c). Work rows·k·cols + m·cols.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params { rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, _p0: u32 }

const WG: u32 = 64u;

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

@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let chunks = (p.cols + WG - 1u) / WG;
    let group = wg.y * nwg.x + wg.x;
    let r = group / chunks;
    let c = (group % chunks) * WG + li;
    if (r >= p.rows || c >= p.cols) { return; }
    var acc = 0.0;
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        acc += val[e] * dict[idx[e] * p.cols + c];
    }
    if (p.has_bias != 0u) { acc += bias[c]; }
    out[r * p.cols + c] = acc;
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
            at++;
        }
    }
}

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let chunks = (p.cols + WG - 1u) / WG;
    let group = wg.y * nwg.x + wg.x;
    let j = group / chunks;
    let c = (group % chunks) * WG + li;
    if (j >= p.m || c >= p.cols) { return; }
    var acc = 0.0;
    for (var i = csc_offsets[j]; i < csc_offsets[j + 1u]; i++) {
        let e = csc_entries[i];
        acc += s[e] * y[(e / p.k) * p.cols + c];
    }
    var at = j * p.cols + c;
    if (p.transposed != 0u) { at = c * p.m + j; }
    if (p.accumulate != 0u) { acc += out[at]; }
    out[at] = acc;
}
