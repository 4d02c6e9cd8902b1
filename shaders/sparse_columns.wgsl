// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// `columns`: per latent j, dst[j] (+)= Σ_{e ∈ entries of j} op(code_s[e]) in row order, op
//   0: s, 1: [s ≠ 0], 2: |s| (`ColumnOp`'s codes): the dense code's column sums, counts
//   and absolute sums (a bias gradient, the latents' firing counts, L1) bit for bit — a row where j is inactive adds exactly 0 —
//   at rows·k instead of rows·m. code_s [rows, k]. Bindings: 0 p, 1 csc_offsets,
//   2 csc_entries, 3 code_s, 4 dst. One invocation per latent.
// Prepended (`kernels::source`): shaders/common/sparse.wgsl — Params, WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> code_s: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    var acc = 0.0;
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let v = code_s[csc_entries[n]];
        if (p.op == 0u) {
            acc += v;
        } else if (p.op == 1u) {
            acc += select(0.0, 1.0, v != 0.0);
        } else {
            acc += abs(v);
        }
    }
    if (p.accumulate != 0u) { acc += dst[j]; }
    dst[j] = acc;
}
