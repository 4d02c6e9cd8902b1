// AuxK (Gao et al. 2024): only latents that have not fired for `threshold` tokens compete.
// `mask_dead`: masked[r, j] = a_in[r, j] if since[s·m + j] ≥ threshold, else −BIG (never kept
//   by a TopK with ReLU), s = r / per the SAE of row r: an ensemble's SAEs stacked, each with
//   `per` rows and its own m clocks (one SAE: per = rows, s = 0). Bindings: 0 mk, 1 a_in,
//   2 since, 3 masked. One invocation per value, 64 a group; the grid may be folded into 2-D:
//   index = (wg.y·nwg.x + wg.x)·64 + local.

struct Mask { rows: u32, m: u32, threshold: f32, per: u32 }

const WG: u32 = 64u;
const BIG: f32 = 3.0e38;

@group(0) @binding(0) var<uniform> mk: Mask;
@group(0) @binding(1) var<storage, read> a_in: array<f32>;
@group(0) @binding(2) var<storage, read> since: array<f32>;
@group(0) @binding(3) var<storage, read_write> masked: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn mask_dead(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = linear(wg, nwg, li);
    if (i >= mk.rows * mk.m) { return; }
    var v = -BIG;
    if (since[(i / mk.m / mk.per) * mk.m + i % mk.m] >= mk.threshold) { v = a_in[i]; }
    masked[i] = v;
}
