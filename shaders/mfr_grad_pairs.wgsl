// The MFR gradient of every pair of a stacked ensemble in one dispatch, for the matched form:
// with c = q.scale · step.weight (MFR: scale = −1 / (P · m), weight = λ·w(t)), the gradient of
// c · Σ_pairs Σ_j u[a·m + assign[p·m + j]] · u[b·m + j] with respect to the stacked
// dictionaries u [n·m, d], written (not added) into g [n·m, d]:
//   g[s·m + i] = Σ over the pairs of s, in pair order, of
//     c · u[a·m + assign[p·m + i]]   for p = (a, s), a < s   (`mfr_grad_b.wgsl`'s term),
//     c · u[b·m + inverse[p·m + i]]  for p = (s, b), b > s   (`mfr_grad_a.wgsl`'s, whose group
//                                                             of i is the one j = inverse),
// inverse[p·m + ·] the inverse permutation of pair p's matching. The sum is formed in the
// order, and with the operations, that the per-pair kernels use when they run pair by pair
// (the first pair overwrites, the others add), so both give the same bits.
// Bindings: 0 q, 1 step, 2 u, 3 assign, 4 inverse, 5 g (u and g as vec4s: tensors are padded
// to 16 bytes). One invocation per vec4 of g, 64 a group: where d is a multiple of 4 its four
// values share one row and the partner rows are read as whole vec4s, else value by value; g
// is written as whole vec4s (zero past n·m·d).
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Pairs, Step, WG, linear,
// pair_index.

@group(0) @binding(0) var<uniform> q: Pairs;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> u: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> assign: array<u32>;
@group(0) @binding(4) var<storage, read> inverse: array<u32>;
@group(0) @binding(5) var<storage, read_write> g: array<vec4<f32>>;

// One value of g: row i of SAE s, column k (`values` as in the header).
fn value_at(s: u32, i: u32, k: u32, c: f32) -> f32 {
    var acc = 0.0;
    for (var a = 0u; a < s; a++) {
        let e = (a * q.m + assign[pair_index(a, s, q.n) * q.m + i]) * q.d + k;
        let v = c * u[e / 4u][e % 4u];
        if (a == 0u) { acc = v; } else { acc += v; }
    }
    for (var b = s + 1u; b < q.n; b++) {
        let e = (b * q.m + inverse[pair_index(s, b, q.n) * q.m + i]) * q.d + k;
        var base = 0.0;
        if (s > 0u || b > 1u) { base = acc; }
        acc = base + c * u[e / 4u][e % 4u];
    }
    return acc;
}

@compute @workgroup_size(64)
fn grad_pairs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let v = linear(wg, nwg, li);
    let md = q.m * q.d;
    let total = q.n * md;
    if (4u * v >= total) { return; }
    let c = q.scale * step.weight;
    if (q.d % 4u == 0u) {
        // The four values of row s·m + i, columns 4·kv … 4·kv + 3.
        let w = q.d / 4u;
        let s = (4u * v) / md;
        let i = ((4u * v) % md) / q.d;
        let kv = v % w;
        var acc = vec4<f32>(0.0);
        for (var a = 0u; a < s; a++) {
            let x = c * u[(a * q.m + assign[pair_index(a, s, q.n) * q.m + i]) * w + kv];
            if (a == 0u) { acc = x; } else { acc += x; }
        }
        for (var b = s + 1u; b < q.n; b++) {
            let y = u[(b * q.m + inverse[pair_index(s, b, q.n) * q.m + i]) * w + kv];
            var base = vec4<f32>(0.0);
            if (s > 0u || b > 1u) { base = acc; }
            acc = base + c * y;
        }
        g[v] = acc;
    } else {
        var out = vec4<f32>(0.0);
        for (var t = 0u; t < 4u; t++) {
            let e = 4u * v + t;
            if (e < total) { out[t] = value_at(e / md, (e % md) / q.d, e % q.d, c); }
        }
        g[v] = out;
    }
}
