// `fill`: out[i] = value for i < n (zeroing accumulators inside a recorded step).
// Bindings: 0 f, 1 dst. One invocation per value, 64 a group, the grid folded as in
// `elementwise.wgsl`.

struct Fill { n: u32, value: f32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> f: Fill;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= f.n) { return; }
    dst[i] = f.value;
}
