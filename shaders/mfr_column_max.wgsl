// MMCS_max from a stored S = ua · ubᵀ [ma, mb] (the matmul kernel's product): invocation j
// scans i in order: sim[j] = max_i S[i, j], assign[j] = its argmax, ties → lowest i.
// Bindings: 0 p, 1 s, 2 sim, 3 assign. One invocation per j, 64 a group.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> sim: array<f32>;
@group(0) @binding(3) var<storage, read_write> assign: array<u32>;

@compute @workgroup_size(64)
fn column_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    var best = s[j];
    var arg = 0u;
    for (var i = 1u; i < p.ma; i++) {
        let v = s[i * p.mb + j];
        if (v > best) { best = v; arg = i; }
    }
    sim[j] = best;
    assign[j] = arg;
}
