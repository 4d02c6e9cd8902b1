// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in four passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `scan`: offsets [m + 1] turned into an exclusive prefix sum (offsets[0] = 0).
//     One invocation. Bindings: 0 p, 1 offsets.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params {
    rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, op: u32,
    width: u32, _p0: u32, _p1: u32, _p2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> offsets_scan: array<u32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(1)
fn scan() {
    offsets_scan[0] = 0u;
    for (var j = 0u; j < p.m; j++) { offsets_scan[j + 1u] += offsets_scan[j]; }
}
