// TopK's pass (3) (common/topk.wgsl, prepended, says what it does): k selection passes
// over a row's n candidates, writing the sparse form and/or the kept values of the dense
// code (cleared by pass 2).

// Selection pass r's running best (value v, candidate c; c = `none` before the first).
struct Best { v: f32, c: u32 }

// The best after candidate c (value v): it replaces `b` if c comes after the last one
// taken in (value desc, position asc) order and beats `b`.
fn consider(b: Best, none: u32, v: f32, c: u32, first: bool, last_v: f32, last_c: u32) -> Best {
    let below_last = first || v < last_v || (v == last_v && c > last_c);
    if (below_last && (b.c == none || v > b.v)) { return Best(v, c); }
    return b;
}

fn select_top(row: u32, n: u32) {
    let cb = candidates_start(row);
    let padded = (n + 3u) / 4u * 4u;
    // k passes, each taking the best candidate below the last one taken. `padded` as
    // "none yet" can never be taken: at least k − r real candidates are left, all ahead.
    let cq = padded / 4u;
    let dense = p.dense != 0u;
    var shift = 0u;
    if (p.instance_rows != 0u) { shift = row / p.instance_rows * p.m; }
    var last_v = 0.0;
    var last_c = 0u;
    for (var r = 0u; r < p.k; r++) {
        var best = Best(0.0, padded);
        for (var c4 = 0u; c4 < cq; c4++) {
            let v = cand4(row, c4);
            let c = 4u * c4;
            best = consider(best, padded, v.x, c, r == 0u, last_v, last_c);
            best = consider(best, padded, v.y, c + 1u, r == 0u, last_v, last_c);
            best = consider(best, padded, v.z, c + 2u, r == 0u, last_v, last_c);
            best = consider(best, padded, v.w, c + 3u, r == 0u, last_v, last_c);
        }
        let best_v = best.v;
        let best_c = best.c;
        let j = cand_j[cb + best_c];
        var kept = best_v;
        if (p.relu != 0u) { kept = max(best_v, 0.0); }
        if (p.sparse != 0u) {
            idx[row * p.k + r] = j + shift;
            val[row * p.k + r] = kept;
        }
        if (dense) { z[row * p.m + j] = kept; }
        last_v = best_v;
        last_c = best_c;
    }
}
