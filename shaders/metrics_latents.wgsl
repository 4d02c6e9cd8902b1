// The per-latent metrics of one step, in one pass over the code (the sparse code's version:
// `metrics_latents_sparse.wgsl`; the window totals: `metrics_window.wgsl`).
// `latents`: per latent j of the code z [rows, m], over the rows in order,
//   c = Σ_r [z[r, j] ≠ 0] (firing count) and a = Σ_r |z[r, j]| (absolute sum), written
//   as common/metrics_latents.wgsl says. Bindings: 0 p, 1 stats, 2 firing, 3 since, 4 z.
// Prepended (`kernels::source`): shaders/common/metrics_latents.wgsl — Latents, WG,
// bindings 0–3, latent, tally, finish.

@group(0) @binding(4) var<storage, read> z: array<f32>;

@compute @workgroup_size(64)
fn latents(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = latent(wg, nwg, li);
    if (j >= p.m) { return; }
    var ca = vec2<f32>(0.0);
    for (var r = 0u; r < p.rows; r++) { ca = tally(ca, z[r * p.m + j]); }
    finish(j, ca);
}
