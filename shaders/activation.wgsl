// Activations (their backward pass: `activation_backward.wgsl`; AuxK's dead-latent mask and
// firing clock: `activation_mask_dead.wgsl`, `activation_since_fired.wgsl`).
//
// `topk`: per row of a [rows, m], keeps the k largest pre-activations. Order is
//   (value descending, index ascending), so ties go to the lower index and the
//   result is deterministic. Writes the dense code z [rows, m] (zeros elsewhere)
//   and, when sparse = 1, the sparse form idx [rows, k] (u32), val [rows, k], both in
//   that order (sparse = 0: the dense path, which reads only z; 3 and 4 are then
//   one-element placeholders, never written).
//   relu = 1 clamps the kept values at 0 (the default); relu = 0 keeps negatives
//   (the reference code's `paper_exact` behaviour).
//   Bindings: 0 params, 1 a, 2 z, 3 idx, 4 val, 5 cand_v, 6 cand_j (scratch [rows, m] each).
//   One invocation per row, 64 a group, no workgroup memory. Three passes: (1) split the
//   row into k contiguous groups; τ = the least of the group maxima — at least k values
//   are ≥ τ (one per group), so the kept ones all are; (2) copy the candidates v ≥ τ, in
//   index order, to cand_v (v) and cand_j (j); (3) k selection passes over the C
//   candidates (position order is index order, so ties still go to the lower index).
//   Cost 2·m + k·C loads instead of k·m (lavapipe pays per loaded value): C ≈ 3k on
//   Gaussian rows at m 512, k 32; C = m only when k = m or the row is all ties.
// `relu`: z = max(a, 0) over n = rows·m values. Bindings: 0 params, 1 a, 2 z.
// Grids of 1-D kernels may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params { rows: u32, m: u32, k: u32, relu: u32, sparse: u32, _p0: u32, _p1: u32, _p2: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> val: array<f32>;
@group(0) @binding(5) var<storage, read_write> cand_v: array<f32>;
@group(0) @binding(6) var<storage, read_write> cand_j: array<u32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = linear(wg, nwg, li);
    if (row >= p.rows) { return; }
    let base = row * p.m;
    // (1) τ = min over the k groups [g·m/k, (g+1)·m/k) of the group's max (k ≤ m: none is empty).
    var tau = 0.0;
    for (var g = 0u; g < p.k; g++) {
        let lo = g * p.m / p.k;
        var top = a[base + lo];
        for (var j = lo + 1u; j < (g + 1u) * p.m / p.k; j++) { top = max(top, a[base + j]); }
        if (g == 0u || top < tau) { tau = top; }
    }
    // (2) The candidates v ≥ τ in index order; the row's code cleared on the way.
    var n = 0u;
    for (var j = 0u; j < p.m; j++) {
        let v = a[base + j];
        z[base + j] = 0.0;
        if (v >= tau) {
            cand_v[base + n] = v;
            cand_j[base + n] = j;
            n++;
        }
    }
    // (3) k passes, each taking the best candidate below the last one taken.
    var last_v = 0.0;
    var last_c = 0u;
    for (var r = 0u; r < p.k; r++) {
        var best_v = 0.0;
        var best_c = n;
        for (var c = 0u; c < n; c++) {
            let v = cand_v[base + c];
            let below_last = r == 0u || v < last_v || (v == last_v && c > last_c);
            if (below_last && (best_c == n || v > best_v)) {
                best_v = v;
                best_c = c;
            }
        }
        let j = cand_j[base + best_c];
        var kept = best_v;
        if (p.relu != 0u) { kept = max(best_v, 0.0); }
        if (p.sparse != 0u) {
            idx[row * p.k + r] = j;
            val[row * p.k + r] = kept;
        }
        z[base + j] = kept;
        last_v = best_v;
        last_c = best_c;
    }
}

@compute @workgroup_size(64)
fn relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = linear(wg, nwg, li);
    if (i >= p.rows * p.m) { return; }
    z[i] = max(a[i], 0.0);
}
