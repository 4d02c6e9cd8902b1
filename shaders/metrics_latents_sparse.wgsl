// `latents_sparse`: `metrics_latents.wgsl`'s `latents` for a TopK code in its sparse form:
//   the same c and a per latent j from its entries in the latent-major index
//   (`sparse.wgsl`), in row order, so bit for bit the dense pass's (a row where j is
//   inactive adds exactly 0), at rows·k instead of rows·m. val [rows, k].
//   Bindings: 0 p, 1 stats, 2 firing, 3 since, 4 csc_offsets, 5 csc_entries, 6 val.
// Prepended (`kernels::source`): shaders/common/metrics_latents.wgsl — Latents, WG,
// bindings 0–3, latent, tally, finish.

@group(0) @binding(4) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(5) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(6) var<storage, read> val: array<f32>;

@compute @workgroup_size(64)
fn latents_sparse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let j = latent(wg, nwg, li);
    if (j >= p.m) { return; }
    var ca = vec2<f32>(0.0);
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) { ca = tally(ca, val[csc_entries[n]]); }
    finish(j, ca);
}
