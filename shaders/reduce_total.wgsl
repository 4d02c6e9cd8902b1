// `total`: acc[slot] += Σ_i values[i], i < n (a metric's sum into the metrics accumulator).
//   One invocation: n is at most m or d and the order is fixed, so the metric is
//   deterministic. Bindings: 0 tot, 1 values, 2 acc.

struct Total { n: u32, slot: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<uniform> tot: Total;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(1)
fn total() {
    var s = 0.0;
    for (var i = 0u; i < tot.n; i++) { s += values[i]; }
    acc[tot.slot] += s;
}
