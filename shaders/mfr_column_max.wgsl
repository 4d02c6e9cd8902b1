// MMCS_max from a stored S = ua · ubᵀ [ma, mb] (the matmul kernel's product): invocation j
// scans i in order: sim[j] = max_i S[i, j], assign[j] = its argmax, ties → lowest i.
// Bindings: 0 p, 1 s, 2 sim, 3 assign. One invocation per j, 64 a group.

// One uniform layout for every mfr_*.wgsl file (lo, hi, chunk: `mfr_max_tiles.wgsl`'s).
struct Params { ma: u32, mb: u32, d: u32, scale: f32, lo: u32, hi: u32, chunk: u32, _p0: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> sim: array<f32>;
@group(0) @binding(3) var<storage, read_write> assign: array<u32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn column_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    var best = s[j];
    var arg = 0u;
    for (var i = 1u; i < p.ma; i++) {
        let v = s[i * p.mb + j];
        if (v > best) { best = v; arg = i; }
    }
    sim[j] = best;
    assign[j] = arg;
}
