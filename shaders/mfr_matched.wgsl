// MMCS_match: sim[j] = ua[assign[j]]·ub[j] for a given matching, ua [ma, d], ub [mb, d]
// row-major, O(mb·d). (So MMCS = mean_j sim[j] in either form.)
// Bindings: 0 p, 1 ua, 2 ub, 3 assign, 4 sim. One invocation per j, 64 a group.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read> assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> sim: array<f32>;

@compute @workgroup_size(64)
fn matched(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    let i = assign[j];
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) { acc += ua[i * p.d + k] * ub[j * p.d + k]; }
    sim[j] = acc;
}
