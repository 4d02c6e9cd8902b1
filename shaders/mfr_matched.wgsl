// MMCS_match: sim[j] = ua[assign[j]]·ub[j] for a given matching, ua [ma, d], ub [mb, d]
// row-major, O(mb·d). (So MMCS = mean_j sim[j] in either form.)
// Bindings: 0 p, 1 ua, 2 ub, 3 assign, 4 sim. One invocation per j, 64 a group.

// One uniform layout for every mfr_*.wgsl file (lo, hi, chunk: `mfr_max_tiles.wgsl`'s).
struct Params { ma: u32, mb: u32, d: u32, scale: f32, lo: u32, hi: u32, chunk: u32, _p0: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read> assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> sim: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

@compute @workgroup_size(64)
fn matched(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    let i = assign[j];
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) { acc += ua[i * p.d + k] * ub[j * p.d + k]; }
    sim[j] = acc;
}
