// Prepended to `metrics_latents.wgsl` (dense code) and `metrics_latents_sparse.wgsl` (its
// sparse form) by `kernels::source`: what both write, per latent j once its firing count c
// and absolute sum a over the rows are known:
//   stats[j] = c, stats[m + j] = a       (stats [2, m], read by `metrics_window.wgsl`)
//   firing[j] += c                        (the log window's firing counts)
//   since[j] = 0 if c > 0, else since[j] + rows   (AuxK's tokens since j fired)
// Each file walks its latent's values through `tally` and ends with `finish`.
// Bindings 0 p, 1 stats, 2 firing, 3 since; each file binds its code from 4 on. One
// invocation per latent, 64 a group; the grid may be folded into 2-D:
// index = (wg.y·nwg.x + wg.x)·64 + local.

struct Latents { rows: u32, m: u32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Latents;
@group(0) @binding(1) var<storage, read_write> stats: array<f32>;
@group(0) @binding(2) var<storage, read_write> firing: array<f32>;
@group(0) @binding(3) var<storage, read_write> since: array<f32>;

fn latent(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// (count, absolute sum) after one more value v of the latent, in the order both files walk.
fn tally(ca: vec2<f32>, v: f32) -> vec2<f32> {
    return ca + vec2<f32>(select(0.0, 1.0, v != 0.0), abs(v));
}

fn finish(j: u32, ca: vec2<f32>) {
    stats[j] = ca.x;
    stats[p.m + j] = ca.y;
    firing[j] += ca.x;
    if (ca.x > 0.0) { since[j] = 0.0; } else { since[j] += f32(p.rows); }
}
