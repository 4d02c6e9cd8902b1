// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in four passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `count`: per block b, counts[b, j] = #entries of latent j in its rows. One invocation
//     per block, its rows in order. Bindings: 0 p, 1 idx, 2 counts.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params {
    rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, op: u32,
    width: u32, _p0: u32, _p1: u32, _p2: u32,
}

const WG: u32 = 64u;

// Rows per block of the CSC build (must match `CSC_BLOCK` in sparse.rs).
const BLOCK: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

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
