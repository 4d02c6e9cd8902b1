// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in three passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `count`: per block b, counts[b, j] = #entries of latent j in its rows. One invocation
//     per block, its rows in order. Stacked (`block_of`): j is the latent within the
//     block's instance, counts [N·blocks, m / N]. Bindings: 0 p, 1 idx, 2 counts.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;

@compute @workgroup_size(64)
fn count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let b = linear(wg, nwg, li);
    let blk = block_of(b);
    if (blk.s >= p.instances) { return; }
    let shift = blk.s * blk.m;
    for (var j = 0u; j < blk.m; j++) { counts[b * blk.m + j] = 0u; }
    for (var e = blk.first * p.k; e < blk.end * p.k; e++) {
        counts[b * blk.m + idx[e] - shift] += 1u;
    }
}
