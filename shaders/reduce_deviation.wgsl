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
