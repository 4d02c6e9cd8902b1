// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in four passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `scan`: offsets [m + 1] turned into an exclusive prefix sum (offsets[0] = 0).
//     One invocation. Bindings: 0 p, 1 offsets.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> offsets_scan: array<u32>;

@compute @workgroup_size(1)
fn scan() {
    offsets_scan[0] = 0u;
    for (var j = 0u; j < p.m; j++) { offsets_scan[j + 1u] += offsets_scan[j]; }
}
