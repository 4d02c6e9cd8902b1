// `add_row_vector`: out[r, c] = x[r, c] + alpha · v[c] for x [rows, cols].
// (The standard SAE's encoder input x − b_dec.)
// Bindings: 0 params, 1 x, 2 v, 3 out. One invocation per value, 64 a group; the grid may be
// folded into 2-D (index = (wg.y·nwg.x + wg.x)·64 + local). axpby binds other buffers:
// `elementwise_axpby.wgsl`.

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
