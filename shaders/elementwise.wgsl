// `add_row_vector`: out[r, c] = x[r, c] + alpha · v[c] for x [rows, cols].
// (The standard SAE's encoder input x − b_dec.)
// Bindings: 0 params, 1 x, 2 v, 3 out. One invocation per value.

struct Params { rows: u32, cols: u32, alpha: f32, _p0: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn add_row_vector(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= p.rows * p.cols) { return; }
    out[i] = x[i] + p.alpha * v[i % p.cols];
}

// `fill`: out[i] = value for i < n (zeroing accumulators inside a recorded step).
// Bindings: 0 f, 1 dst.

struct Fill { n: u32, value: f32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> f: Fill;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= f.n) { return; }
    dst[i] = f.value;
}

// `axpby`: out[i] = a · x[i] + b · y[i] for i < n (AuxK's residual x − x̂ and gradient sums).
// Bindings: 0 s, 1 xs, 2 ys, 3 sum.

struct Axpby { n: u32, a: f32, b: f32, _p0: u32 }

@group(0) @binding(0) var<uniform> s: Axpby;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> ys: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum: array<f32>;

@compute @workgroup_size(64)
fn axpby(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= s.n) { return; }
    sum[i] = s.a * xs[i] + s.b * ys[i];
}
