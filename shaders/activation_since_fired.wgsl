// AuxK's firing clock (`activation_mask_dead.wgsl` reads it).
// `since_fired`: since_upd[j] = 0 if counts[j] > 0, else since_upd[j] + batch (tokens since
//   latent j last fired). Bindings: 0 sf, 1 counts, 2 since_upd. One invocation per latent,
//   64 a group; the grid may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Since { m: u32, batch: f32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> sf: Since;
@group(0) @binding(1) var<storage, read> counts: array<f32>;
@group(0) @binding(2) var<storage, read_write> since_upd: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn since_fired(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= sf.m) { return; }
    if (counts[j] > 0.0) { since_upd[j] = 0.0; } else { since_upd[j] += sf.batch; }
}
