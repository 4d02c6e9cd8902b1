// Activations (their backward pass: `activation_backward.wgsl`; AuxK's dead-latent mask:
// `activation_mask_dead.wgsl`, its firing clock: `metrics_latents.wgsl`).
//
// `topk`: per row of a [rows, m], keeps the k largest pre-activations. Order is
//   (value descending, index ascending), so ties go to the lower index and the
//   result is deterministic. Writes, when dense = 1, the dense code z [rows, m] (zeros
//   elsewhere) and, when sparse = 1, the sparse form idx [rows, k] (u32), val [rows, k],
//   both in that order (the dense path reads only z, the sparse path only idx and val;
//   what is not written is bound to a one-element placeholder).
//   relu = 1 clamps the kept values at 0 (the default); relu = 0 keeps negatives
//   (the reference code's `paper_exact` behaviour). With instance_rows ≠ 0, a is an
//   ensemble's stacked [N·rows, m] (instance s's rows are s·instance_rows …) and idx
//   names latents of the stacked dictionary [N·m, d]: j + s·m for instance s's latent j.
//   Bindings: 0 params, 1 a, 2 z, 3 idx, 4 val, 5 cand_v, 6 cand_j (scratch [rows, m4]
//   each, m4 = m rounded up to a multiple of 4). a and cand_v are bound as vec4s
//   (tensors are padded to 16 bytes); cand_v is written a whole vec4 at a time.
//   One invocation per row, 64 a group, no workgroup memory. Three passes: (1) split the
//   row into k contiguous groups; τ = the least of the group maxima — at least k values
//   are ≥ τ (one per group), so the kept ones all are; (2) copy the candidates v ≥ τ, in
//   index order, to cand_v (v) and cand_j (j), padded to a multiple of 4 with −f32::MAX
//   (a pad sits after every real candidate, so ties with it go to the real one, and at
//   least k real ones are always left to take); (3) k selection passes over the C
//   candidates, a vec4 at a time (position order is index order, so ties still go to
//   the lower index).
//   Cost 2·m + k·C values loaded instead of k·m, C ≈ 3k on Gaussian rows at m 512, k 32;
//   C = m only when k = m or the row is all ties. lavapipe loads storage lane by lane,
//   one vec4 for about the price of one scalar, so where m is a multiple of 4 and at
//   least 4k, passes (1) and (2) read whole vec4s (groups of whole vec4s) too.
// `relu`: z = max(a, 0) over n = rows·m values. Bindings: 0 params, 1 a, 2 z.
// Grids of 1-D kernels may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params { rows: u32, m: u32, k: u32, relu: u32, sparse: u32, dense: u32, instance_rows: u32, _p1: u32 }

const WG: u32 = 64u;
// The candidates' padding: −f32::MAX, the least finite value (written exactly: a decimal
// literal above f32::MAX is a shader-creation error in Chromium).
const PAD: f32 = -0x1.fffffep+127f;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> val: array<f32>;
@group(0) @binding(5) var<storage, read_write> cand_v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> cand_j: array<u32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

fn a_at(e: u32) -> f32 {
    return a[e / 4u][e % 4u];
}

// The candidates of the row whose candidates start at `cb` (a multiple of 4), written a
// whole vec4 at a time: values gather in `pending` (its unused components already PAD)
// and go out when 4 are there, or at the end. (No kernel stores into one component of a
// vec4 in storage: a backend may make that a read-modify-write of the vec4, which races
// where invocations share one, as `relu`'s neighbours would.) Passed and returned by
// value, with no pointers or variable indices: SwiftShader keeps such values in
// registers and spills the others to memory.
struct Candidates { cb: u32, n: u32, pending: vec4<f32> }

fn push_candidate(c: Candidates, v: f32, j: u32) -> Candidates {
    let q = c.n % 4u;
    let pending = select(c.pending, vec4<f32>(v), vec4<u32>(q) == vec4<u32>(0u, 1u, 2u, 3u));
    cand_j[c.cb + c.n] = j;
    let n = c.n + 1u;
    if (q == 3u) {
        cand_v[(c.cb + n) / 4u - 1u] = pending;
        return Candidates(c.cb, n, vec4<f32>(PAD));
    }
    return Candidates(c.cb, n, pending);
}

// Writes the last partial vec4 (padded) and returns the number of candidates.
fn flush(c: Candidates) -> u32 {
    if (c.n % 4u != 0u) { cand_v[(c.cb + c.n) / 4u] = c.pending; }
    return c.n;
}

// (1) and (2) where m is a multiple of 4 and m ≥ 4k: groups of whole vec4s. Returns the
// number of candidates.
fn candidates_vec4(row: u32, cb: u32) -> u32 {
    let q = p.m / 4u;
    let base = row * q;
    var tau = 0.0;
    for (var g = 0u; g < p.k; g++) {
        let lo = g * q / p.k;
        var top4 = a[base + lo];
        for (var j = lo + 1u; j < (g + 1u) * q / p.k; j++) { top4 = max(top4, a[base + j]); }
        let top = max(max(top4.x, top4.y), max(top4.z, top4.w));
        if (g == 0u || top < tau) { tau = top; }
    }
    var c = Candidates(cb, 0u, vec4<f32>(PAD));
    // Read once: a uniform re-read inside the loop is not hoisted past its storage writes.
    let dense = p.dense != 0u;
    for (var j = 0u; j < q; j++) {
        let v = a[base + j];
        if (dense) {
            let e = 4u * (base + j);
            z[e] = 0.0;
            z[e + 1u] = 0.0;
            z[e + 2u] = 0.0;
            z[e + 3u] = 0.0;
        }
        if (v.x >= tau) { c = push_candidate(c, v.x, 4u * j); }
        if (v.y >= tau) { c = push_candidate(c, v.y, 4u * j + 1u); }
        if (v.z >= tau) { c = push_candidate(c, v.z, 4u * j + 2u); }
        if (v.w >= tau) { c = push_candidate(c, v.w, 4u * j + 3u); }
    }
    return flush(c);
}

// (1) and (2) for any m and k ≤ m, a value at a time.
fn candidates_scalar(row: u32, cb: u32) -> u32 {
    let base = row * p.m;
    var tau = 0.0;
    for (var g = 0u; g < p.k; g++) {
        let lo = g * p.m / p.k;
        var top = a_at(base + lo);
        for (var j = lo + 1u; j < (g + 1u) * p.m / p.k; j++) { top = max(top, a_at(base + j)); }
        if (g == 0u || top < tau) { tau = top; }
    }
    var c = Candidates(cb, 0u, vec4<f32>(PAD));
    let dense = p.dense != 0u;
    for (var j = 0u; j < p.m; j++) {
        let v = a_at(base + j);
        if (dense) { z[base + j] = 0.0; }
        if (v >= tau) { c = push_candidate(c, v, j); }
    }
    return flush(c);
}

// Selection pass r's running best (value v, candidate c; c = `none` before the first).
struct Best { v: f32, c: u32 }

// The best after candidate c (value v): it replaces `b` if c comes after the last one
// taken in (value desc, position asc) order and beats `b`.
fn consider(b: Best, none: u32, v: f32, c: u32, first: bool, last_v: f32, last_c: u32) -> Best {
    let below_last = first || v < last_v || (v == last_v && c > last_c);
    if (below_last && (b.c == none || v > b.v)) { return Best(v, c); }
    return b;
}

@compute @workgroup_size(64)
fn topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = linear(wg, nwg, li);
    if (row >= p.rows) { return; }
    let base = row * p.m;
    let cb = row * ((p.m + 3u) / 4u * 4u);
    // (1) and (2), the row's dense code (if written) cleared on the way; a uniform branch,
    // outside the loops.
    var n: u32;
    if (p.m % 4u == 0u && p.m >= 4u * p.k) {
        n = candidates_vec4(row, cb);
    } else {
        n = candidates_scalar(row, cb);
    }
    let padded = (n + 3u) / 4u * 4u;
    // (3) k passes, each taking the best candidate below the last one taken. `padded` as
    // "none yet" can never be taken: at least k − r real candidates are left, all ahead.
    let cq = padded / 4u;
    let dense = p.dense != 0u;
    var shift = 0u;
    if (p.instance_rows != 0u) { shift = row / p.instance_rows * p.m; }
    var last_v = 0.0;
    var last_c = 0u;
    for (var r = 0u; r < p.k; r++) {
        var best = Best(0.0, padded);
        for (var c4 = 0u; c4 < cq; c4++) {
            let v = cand_v[cb / 4u + c4];
            let c = 4u * c4;
            best = consider(best, padded, v.x, c, r == 0u, last_v, last_c);
            best = consider(best, padded, v.y, c + 1u, r == 0u, last_v, last_c);
            best = consider(best, padded, v.z, c + 2u, r == 0u, last_v, last_c);
            best = consider(best, padded, v.w, c + 3u, r == 0u, last_v, last_c);
        }
        let best_v = best.v;
        let best_c = best.c;
        let j = cand_j[cb + best_c];
        var kept = best_v;
        if (p.relu != 0u) { kept = max(best_v, 0.0); }
        if (p.sparse != 0u) {
            idx[row * p.k + r] = j + shift;
            val[row * p.k + r] = kept;
        }
        if (dense) { z[base + j] = kept; }
        last_v = best_v;
        last_c = best_c;
    }
}

@compute @workgroup_size(64)
fn relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = linear(wg, nwg, li);
    if (i >= p.rows * p.m) { return; }
    z[i] = max(a_at(i), 0.0);
}
