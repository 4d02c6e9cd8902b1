// `total`: acc[slot + g] += Σ_i values[g·n + i], i < n, for workgroup g (a metric's sum into an
//   accumulator; one workgroup sums one slot, several sum consecutive slices into consecutive
//   slots: every MFR pair's similarity sum in one dispatch).
//   One workgroup of 64 a slice: invocation i sums the indices ≡ i (mod 64) in order, then a
//   fixed pairwise tree, so the total is deterministic and each slice's sum is the one a
//   dispatch of its own gives. Bindings: 0 tot, 1 values, 2 acc.

struct Total { n: u32, slot: u32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> tot: Total;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn total(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let base = wg.x * tot.n;
    var s = 0.0;
    for (var i = li; i < tot.n; i += WG) { s += values[base + i]; }
    part[li] = s;
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        workgroupBarrier();
        if (li < h) { part[li] = part[li] + part[li + h]; }
    }
    if (li == 0u) { acc[tot.slot + wg.x] += part[0]; }
}
