// MMCS_match of every pair of a stacked ensemble in one dispatch: the n SAEs' dictionaries
// stacked u [n·m, d] row-major (SAE s's latent i is row s·m + i), the pairs p = (a, b) in
// `pair_index` order, each with its matching in assign [P·m] (assign[p·m + j] the latent of a
// matched to latent j of b):
//   sim[p·m + j] = u[a·m + assign[p·m + j]] · u[b·m + j],
// summed over the row in the order `mfr_matched.wgsl` sums one pair (so either gives the same
// bits). Where d is a multiple of 4 the rows are read as whole vec4s (lavapipe loads storage
// lane by lane, one vec4 for about the price of one scalar), else value by value.
// Bindings: 0 q, 1 u (as vec4s: tensors are padded to 16 bytes), 2 assign, 3 sim. One
// invocation per (p, j), 64 a group.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Pairs, WG, linear, pair_of.

@group(0) @binding(0) var<uniform> q: Pairs;
@group(0) @binding(1) var<storage, read> u: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> assign: array<u32>;
@group(0) @binding(3) var<storage, read_write> sim: array<f32>;

@compute @workgroup_size(64)
fn matched_pairs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    let pairs = q.n * (q.n - 1u) / 2u;
    if (e >= pairs * q.m) { return; }
    let ab = pair_of(e / q.m, q.n);
    let ra = ab.x * q.m + assign[e];
    let rb = ab.y * q.m + e % q.m;
    var acc = 0.0;
    if (q.d % 4u == 0u) {
        let w = q.d / 4u;
        for (var c = 0u; c < w; c++) {
            let x = u[ra * w + c];
            let y = u[rb * w + c];
            acc += x.x * y.x;
            acc += x.y * y.y;
            acc += x.z * y.z;
            acc += x.w * y.w;
        }
    } else {
        for (var k = 0u; k < q.d; k++) {
            let ia = ra * q.d + k;
            let ib = rb * q.d + k;
            acc += u[ia / 4u][ia % 4u] * u[ib / 4u][ib % 4u];
        }
    }
    sim[e] = acc;
}
