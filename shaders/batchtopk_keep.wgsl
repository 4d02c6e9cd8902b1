// BatchTopK's radix select (the method, the keys and the state words: `batchtopk.wgsl`):
// `keep`: z = relu(a) where key ≥ T, else 0, and the smallest positive kept value's bits
//   by u32 atomicMin. Bindings: 0 p, 1 a [n], 2 z [n], 3 st_a [8] (atomic). One 256-wide
//   workgroup per TILE = 256·PER values, grid folded into 2-D (group = wg.y·nwg.x + wg.x).
// Prepended (`kernels::source`): shaders/common/batchtopk.wgsl — Params, WGS, PER, NONE, the S_* state words.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_a: array<atomic<u32>, 8>;

var<workgroup> local_min: atomic<u32>;

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
fn keep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    if (li == 0u) { atomicStore(&local_min, NONE); }
    workgroupBarrier();
    let t = vec2<u32>(atomicLoad(&st_a[S_PREFIX_HI]), atomicLoad(&st_a[S_PREFIX_LO]));
    let base = tile_start(wg, nwg);
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WGS + li;
        if (i < p.n) {
            let key = key_of(i);
            let kept = key.x > t.x || (key.x == t.x && key.y >= t.y);
            var out = 0.0;
            if (kept) {
                out = bitcast<f32>(key.x);
                if (key.x != 0u) { atomicMin(&local_min, key.x); }
            }
            z[i] = out;
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        let v = atomicLoad(&local_min);
        if (v != NONE) { atomicMin(&st_a[S_MIN], v); }
    }
}
