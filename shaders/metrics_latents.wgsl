// The per-latent metrics of one step, in one pass over the code (the sparse code's version:
// `metrics_latents_sparse.wgsl`; the window totals: `metrics_window.wgsl`).
// `latents`: per latent j of the code z [rows, m], over the rows in order:
//   c = Σ_r [z[r, j] ≠ 0] (firing count), a = Σ_r |z[r, j]| (absolute sum);
//   stats[j] = c, stats[m + j] = a       (stats [2, m], read by `window`)
//   firing[j] += c                        (the log window's firing counts)
//   since[j] = 0 if c > 0, else since[j] + rows   (AuxK's tokens since j fired)
//   Bindings: 0 p, 1 z, 2 stats, 3 firing, 4 since. One invocation per latent, 64 a
//   group; the grid may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Latents { rows: u32, m: u32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Latents;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> firing: array<f32>;
@group(0) @binding(4) var<storage, read_write> since: array<f32>;

@compute @workgroup_size(64)
fn latents(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = (wg.y * nwg.x + wg.x) * WG + li;
    if (j >= p.m) { return; }
    var c = 0.0;
    var a = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let v = z[r * p.m + j];
        c += select(0.0, 1.0, v != 0.0);
        a += abs(v);
    }
    stats[j] = c;
    stats[p.m + j] = a;
    firing[j] += c;
    if (c > 0.0) { since[j] = 0.0; } else { since[j] += f32(p.rows); }
}
