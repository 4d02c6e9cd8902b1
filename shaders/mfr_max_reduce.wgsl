// MMCS_max, second pass over `mfr_max_tiles.wgsl`'s partials part_val / part_arg [chunks, mb]
// (chunks = p.chunk; buffers may be padded past their tensors, so no arrayLength): invocation j
// scans the chunks in order of i: sim[j] = max_i S[i, j], assign[j] = its argmax; a later chunk
// wins only if strictly larger, so ties → lowest i.
// Bindings: 0 p, 1 part_val, 2 part_arg, 3 sim, 4 assign. One invocation per j, 64 a group.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part_val: array<f32>;
@group(0) @binding(2) var<storage, read> part_arg: array<u32>;
@group(0) @binding(3) var<storage, read_write> sim: array<f32>;
@group(0) @binding(4) var<storage, read_write> assign: array<u32>;

@compute @workgroup_size(64)
fn max_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    let blocks = p.chunk;
    var best = part_val[j];
    var arg = part_arg[j];
    for (var b = 1u; b < blocks; b++) {
        let v = part_val[b * p.mb + j];
        if (v > best) { best = v; arg = part_arg[b * p.mb + j]; }
    }
    sim[j] = best;
    assign[j] = arg;
}
