// `backward`: da = dz + l1·sign(z) where z ≠ 0, else 0: the derivative of TopK,
//   ReLU and ReLU + L1 alike (`activation.wgsl`), because a latent passes gradient exactly
//   when its code is non-zero. Bindings: 0 back, 1 z_in, 2 dz, 3 da. One invocation per
//   value, 64 a group; the grid may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Back { n: u32, l1: f32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> back: Back;
@group(0) @binding(1) var<storage, read> z_in: array<f32>;
@group(0) @binding(2) var<storage, read> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> da: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = linear(wg, nwg, li);
    if (i >= back.n) { return; }
    let zi = z_in[i];
    var g = 0.0;
    if (zi != 0.0) { g = dz[i] + back.l1 * sign(zi); }
    da[i] = g;
}
