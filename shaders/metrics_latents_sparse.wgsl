// `latents_sparse`: `metrics_latents.wgsl`'s `latents` for a TopK code in its sparse form:
//   the same c, a and writes, per latent j from its entries in the latent-major index
//   (`sparse.wgsl`), in row order, so bit for bit the dense pass's (a row where j is
//   inactive adds exactly 0), at rows·k instead of rows·m. val [rows, k].
//   Bindings: 0 p, 1 csc_offsets, 2 csc_entries, 3 val, 4 stats, 5 firing, 6 since.
//   One invocation per latent, 64 a group; the grid may be folded into 2-D:
//   index = (wg.y·nwg.x + wg.x)·64 + local.

struct Latents { rows: u32, m: u32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Latents;
@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> val: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> firing: array<f32>;
@group(0) @binding(6) var<storage, read_write> since: array<f32>;

@compute @workgroup_size(64)
fn latents_sparse(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let j = (wg.y * nwg.x + wg.x) * WG + li;
    if (j >= p.m) { return; }
    var c = 0.0;
    var a = 0.0;
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let v = val[csc_entries[n]];
        c += select(0.0, 1.0, v != 0.0);
        a += abs(v);
    }
    stats[j] = c;
    stats[p.m + j] = a;
    firing[j] += c;
    if (c > 0.0) { since[j] = 0.0; } else { since[j] += f32(p.rows); }
}
