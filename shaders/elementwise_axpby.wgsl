// `axpby`: out[i] = a · x[i mod nx] + b · y[i] for i < n (AuxK's residual x − x̂ and gradient
// sums; nx < n repeats x, the one target of an ensemble's SAEs stacked).
// Bindings: 0 s, 1 xs, 2 ys, 3 sum. One invocation per value, 64 a group, the grid folded
// as in `elementwise.wgsl`.

struct Axpby { n: u32, a: f32, b: f32, nx: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> s: Axpby;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> ys: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum: array<f32>;

@compute @workgroup_size(64)
fn axpby(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= s.n) { return; }
    sum[i] = s.a * xs[i % s.nx] + s.b * ys[i];
}
