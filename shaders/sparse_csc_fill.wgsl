// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in three passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `fill`: per block b, its entries e = r·k + t in row order go to entries[offsets[j] +
//     counts[b, j]++], and entry_rows the row of each (so `scatter` needs no division per
//     entry: integer division per lane is slow on CPU drivers). Latent j's entries thus
//     come in row order. One invocation per block (stacked: as `count`).
//     Bindings: 0 p, 1 idx, 2 cursor, 3 offsets_in, 4 entries, 5 entry_rows.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> cursor: array<u32>;
@group(0) @binding(3) var<storage, read> offsets_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> entries: array<u32>;
@group(0) @binding(5) var<storage, read_write> entry_rows: array<u32>;

@compute @workgroup_size(64)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let b = linear(wg, nwg, li);
    let blk = block_of(b);
    if (blk.s >= p.instances) { return; }
    let shift = blk.s * blk.m;
    for (var r = blk.first; r < blk.end; r++) {
        for (var t = 0u; t < p.k; t++) {
            let e = r * p.k + t;
            let j = idx[e];
            let at = offsets_in[j] + cursor[b * blk.m + j - shift];
            cursor[b * blk.m + j - shift] += 1u;
            entries[at] = e;
            entry_rows[at] = r;
        }
    }
}
