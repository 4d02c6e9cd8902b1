// Reductions for bias gradients and metrics.
//
// `columns`: per column j of src [rows, cols], dst[j] (+)= reduce over rows of:
//   op 0: src            (sum: bias gradients)
//   op 1: src ≠ 0        (count: firing counts, L0)
//   op 2: |src|          (sum of magnitudes: L1)
//   op 3: (src − mean_j)² (centered sum of squares: the FVU denominator)
//   accumulate = 1 adds to dst instead of overwriting it (counts over a log window).
//   Bindings: 0 params, 1 src, 2 dst. One invocation per column; rows summed in order.
// `total`: acc[slot] += Σ_i src[i], i < n. One invocation: n is at most m or d and
//   the order is fixed, so the metric is deterministic. Bindings: 0 tot, 1 src, 2 acc.

struct Params { rows: u32, cols: u32, op: u32, accumulate: u32 }
struct Total { n: u32, slot: u32, _p0: u32, _p1: u32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@group(0) @binding(0) var<uniform> tot: Total;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(64)
fn columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = (wg.y * nwg.x + wg.x) * WG + li;
    if (j >= p.cols) { return; }
    var mean = 0.0;
    if (p.op == 3u) {
        for (var r = 0u; r < p.rows; r++) { mean += src[r * p.cols + j]; }
        mean = mean / f32(max(p.rows, 1u));
    }
    var s = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let v = src[r * p.cols + j];
        switch p.op {
            case 0u: { s += v; }
            case 1u: { s += select(0.0, 1.0, v != 0.0); }
            case 2u: { s += abs(v); }
            default: { s += (v - mean) * (v - mean); }
        }
    }
    if (p.accumulate != 0u) { s += dst[j]; }
    dst[j] = s;
}

@compute @workgroup_size(1)
fn total() {
    var s = 0.0;
    for (var i = 0u; i < tot.n; i++) { s += values[i]; }
    acc[tot.slot] += s;
}

// `deviation`: the reference code's re-initialisation statistic for one step:
//   p_j = counts[j] / batch (the fraction of the batch where latent j fired),
//   stat = mean_j (|p_j − rate| / rate)³,  rate = k / m (the target firing rate)
//   acc[slot] = max(acc[slot], stat); acc[slot + 1] += 1 if stat > threshold.
//   Bindings: 0 dev, 1 counts, 2 acc. One invocation.

struct Deviation { m: u32, slot: u32, batch: f32, rate: f32, threshold: f32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<uniform> dev: Deviation;
@group(0) @binding(1) var<storage, read> counts: array<f32>;
@group(0) @binding(2) var<storage, read_write> dev_acc: array<f32>;

@compute @workgroup_size(1)
fn deviation() {
    var s = 0.0;
    for (var j = 0u; j < dev.m; j++) {
        let r = abs(counts[j] / dev.batch - dev.rate) / dev.rate;
        s += r * r * r;
    }
    let stat = s / f32(dev.m);
    dev_acc[dev.slot] = max(dev_acc[dev.slot], stat);
    if (stat > dev.threshold) { dev_acc[dev.slot + 1u] += 1.0; }
}
