// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in four passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `block_scan`: per latent j, counts[b, j] becomes the exclusive prefix over the blocks
//     (where block b's entries of j start among j's) and offsets[j + 1] the total.
//     One invocation per latent. Bindings: 0 p, 1 counts_scan, 2 offsets.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> counts_scan: array<u32>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;

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
