// `window`: one step's totals into the metrics accumulator acc (summed over a log window),
//   from the step's per-row and per-latent metrics:
//   acc[slot_sq]     += Σ_r row_sq[r]        (r < rows: the squared error)
//   acc[slot_aux]    += Σ_r aux_sq[r]        (r < aux_rows; AuxK's; aux_rows 0 without it)
//   acc[slot_var]    += Σ_i col_sq[i]        (i < d: the target's centred squares, FVU's denominator)
//   acc[slot_active] += Σ_j stats[j]         (j < m: firing counts, so L0 · rows)
//   acc[slot_abs]    += Σ_j stats[m + j]     (absolute sums, so L1 · rows)
//   with `deviation` ≠ 0 also the reference code's re-initialisation statistic,
//   stat = mean_j (|stats[j] / batch − rate| / rate)³:
//   acc[slot_reinit] = max(acc[slot_reinit], stat); acc[slot_reinit + 1] += 1 if stat > threshold.
//   Bindings: 0 p, 1 row_sq, 2 aux_sq (both bound as vec4s), 3 col_sq, 4 stats, 5 acc.
//   One workgroup of 64:
//   invocation i sums the indices ≡ i (mod 64) in order, then a fixed pairwise tree, so the
//   totals are deterministic.
//   Stacked (an ensemble's N SAEs, workgroup z = s): row_sq and aux_sq are [N·rows], stats
//   [2, N·m] (`stats_row` = N·m; instance s's latents at s·m …), acc [N·acc_stride]; col_sq
//   is shared (one target). One SAE: stats_row = m, s = 0.

struct Window {
    rows: u32, aux_rows: u32, d: u32, m: u32,
    batch: f32, rate: f32, threshold: f32, deviation: u32,
    slot_sq: u32, slot_aux: u32, slot_var: u32, slot_active: u32,
    slot_abs: u32, slot_reinit: u32, stats_row: u32, acc_stride: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Window;
@group(0) @binding(1) var<storage, read> row_sq: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> aux_sq: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> col_sq: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> acc: array<f32>;

// (squared error, AuxK squared error, target variance, firing count) and (|code|, deviation³).
var<workgroup> part_a: array<vec4<f32>, 64>;
var<workgroup> part_b: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn window(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let s = wg.z;
    var a = vec4<f32>(0.0);
    var b = vec2<f32>(0.0);
    // The rows' errors a vec4 at a time where the rows are a multiple of 4: lavapipe ran
    // this loop's scalar loads ~15× slower (1.5 ms at the quick shape, whatever the rows).
    if (p.rows % 4u == 0u) {
        let q = p.rows / 4u;
        for (var r = li; r < q; r += WG) { a.x += dot(row_sq[s * q + r], vec4<f32>(1.0)); }
        let qa = p.aux_rows / 4u;
        for (var r = li; r < qa; r += WG) { a.y += dot(aux_sq[s * qa + r], vec4<f32>(1.0)); }
    } else {
        for (var r = li; r < p.rows; r += WG) { let e = s * p.rows + r; a.x += row_sq[e / 4u][e % 4u]; }
        for (var r = li; r < p.aux_rows; r += WG) { let e = s * p.aux_rows + r; a.y += aux_sq[e / 4u][e % 4u]; }
    }
    for (var i = li; i < p.d; i += WG) { a.z += col_sq[i]; }
    for (var j = li; j < p.m; j += WG) {
        let c = stats[s * p.m + j];
        a.w += c;
        b.x += stats[p.stats_row + s * p.m + j];
        if (p.deviation != 0u) {
            let e = abs(c / p.batch - p.rate) / p.rate;
            b.y += e * e * e;
        }
    }
    part_a[li] = a;
    part_b[li] = b;
    for (var h = WG / 2u; h > 0u; h = h / 2u) {
        workgroupBarrier();
        if (li < h) {
            part_a[li] = part_a[li] + part_a[li + h];
            part_b[li] = part_b[li] + part_b[li + h];
        }
    }
    if (li != 0u) { return; }
    let ta = part_a[0];
    let tb = part_b[0];
    let o = s * p.acc_stride;
    acc[o + p.slot_sq] += ta.x;
    if (p.aux_rows > 0u) { acc[o + p.slot_aux] += ta.y; }
    acc[o + p.slot_var] += ta.z;
    acc[o + p.slot_active] += ta.w;
    acc[o + p.slot_abs] += tb.x;
    if (p.deviation != 0u) {
        let stat = tb.y / f32(p.m);
        acc[o + p.slot_reinit] = max(acc[o + p.slot_reinit], stat);
        if (stat > p.threshold) { acc[o + p.slot_reinit + 1u] += 1.0; }
    }
}
