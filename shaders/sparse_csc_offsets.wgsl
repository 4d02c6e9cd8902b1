// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// The latent-major index (CSC) of the active set, built in three passes over blocks of
// BLOCK rows, O(rows·k + blocks·m) (no pass over a [rows, m] array, no atomics):
//   `offsets`: per latent j, counts[b, j] becomes the exclusive prefix over the blocks
//     (where block b's entries of j start among j's), and offsets [m + 1] the exclusive
//     prefix over the latents of their totals (offsets[0] = 0, offsets[m] = rows·k).
//     One workgroup of 256: invocation i takes the i-th run of ceil(m / 256) latents, the
//     runs' totals are scanned in workgroup memory, then each invocation adds its run's
//     start. Integer sums, so exact in any order. Stacked: workgroup s scans instance s's
//     blocks and latents, whose entries start at s·instance_rows·k (every instance has
//     exactly that many). Bindings: 0 p, 1 counts_scan, 2 offsets.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

const RUNS: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> counts_scan: array<u32>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;

var<workgroup> run_start: array<u32, 256>;

@compute @workgroup_size(256)
fn offsets_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let s = wg.x;
    let ml = p.m / p.instances;
    let blocks = (p.instance_rows + BLOCK - 1u) / BLOCK;
    // Instance s's counts and latents.
    let cb = s * blocks * ml;
    let lb = s * ml;
    let per = (ml + RUNS - 1u) / RUNS;
    let j0 = min(li * per, ml);
    let j1 = min(j0 + per, ml);
    var run = 0u;
    for (var j = j0; j < j1; j++) {
        var n = 0u;
        for (var b = 0u; b < blocks; b++) {
            let c = counts_scan[cb + b * ml + j];
            counts_scan[cb + b * ml + j] = n;
            n += c;
        }
        run += n;
        // Inclusive within the run; the run's start is added below.
        offsets[lb + j + 1u] = run;
    }
    run_start[li] = run;
    workgroupBarrier();
    if (li == 0u) {
        var total = s * p.instance_rows * p.k;
        for (var i = 0u; i < RUNS; i++) {
            let t = run_start[i];
            run_start[i] = total;
            total += t;
        }
        if (s == 0u) { offsets[0] = 0u; }
    }
    workgroupBarrier();
    let start = run_start[li];
    for (var j = j0; j < j1; j++) { offsets[lb + j + 1u] += start; }
}
