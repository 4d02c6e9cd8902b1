// BatchTopK's radix select (the method, the keys and the state words: `batchtopk.wgsl`):
// `histogram` counts the next digit among the keys under the prefix so far (per workgroup in
//   workgroup memory, then into the 256 global bins by u32 atomics).
//   Bindings: 0 p, 1 a [n], 2 hist [256] (atomic), 3 st [8]. One 256-wide workgroup per
//   TILE = 256·PER values, grid folded into 2-D (group = wg.y·nwg.x + wg.x). Workgroup
//   memory: 1 KiB.
// Prepended (`kernels::source`): shaders/common/batchtopk.wgsl — Params, WGS, PER, NONE, the S_* state words.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>, 256>;
@group(0) @binding(3) var<storage, read> st: array<u32, 8>;

var<workgroup> local_hist: array<atomic<u32>, 256>;
var<workgroup> skip: u32;

// The key of value i: (bits of relu(a[i]), 0xFFFFFFFF − i).
fn key_of(i: u32) -> vec2<u32> {
    let v = a[i];
    var bits = 0u;
    if (v > 0.0) { bits = bitcast<u32>(v); }
    return vec2<u32>(bits, NONE - i);
}

fn tile_start(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WGS * PER;
}

@compute @workgroup_size(256)
fn histogram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    atomicStore(&local_hist[li], 0u);
    if (li == 0u) { skip = st[S_DONE]; }
    if (workgroupUniformLoad(&skip) != 0u) { return; }
    let pass_ = st[S_PASS];
    let prefix = vec2<u32>(st[S_PREFIX_HI], st[S_PREFIX_LO]);
    let mask = vec2<u32>(st[S_MASK_HI], st[S_MASK_LO]);
    let shift = 24u - 8u * (pass_ % 4u);
    let base = tile_start(wg, nwg);
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WGS + li;
        if (i < p.n) {
            let key = key_of(i);
            if (all((key & mask) == prefix)) {
                let word = select(key.y, key.x, pass_ < 4u);
                atomicAdd(&local_hist[(word >> shift) & 255u], 1u);
            }
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_hist[li]);
    if (c != 0u) { atomicAdd(&hist[li], c); }
}
