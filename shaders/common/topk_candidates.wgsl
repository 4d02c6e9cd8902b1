// TopK's passes (1) and (2) (common/topk.wgsl, prepended, says what they do): the row's
// threshold τ and its candidates v ≥ τ, the row's dense code (if written) cleared on the way.

// The candidates of the row whose candidates start at `cb` (a multiple of 4), their values
// written a whole vec4 at a time (`put4(i, v)`: vec4 i of cand_v, counted from its start): values gather in `pending` (its unused components already PAD)
// and go out when 4 are there, or at the end. (No kernel stores into one component of a
// vec4 in storage: a backend may make that a read-modify-write of the vec4, which races
// where invocations share one, as `relu`'s neighbours would.) Passed and returned by
// value, with no pointers or variable indices: SwiftShader keeps such values in
// registers and spills the others to memory.
struct Candidates { cb: u32, n: u32, pending: vec4<f32> }

fn push_candidate(c: Candidates, v: f32, j: u32) -> Candidates {
    let q = c.n % 4u;
    let pending = select(c.pending, vec4<f32>(v), vec4<u32>(q) == vec4<u32>(0u, 1u, 2u, 3u));
    cand_j[c.cb + c.n] = j;
    let n = c.n + 1u;
    if (q == 3u) {
        put4((c.cb + n) / 4u - 1u, pending);
        return Candidates(c.cb, n, vec4<f32>(PAD));
    }
    return Candidates(c.cb, n, pending);
}

// Writes the last partial vec4 (padded) and returns the number of candidates.
fn flush(c: Candidates) -> u32 {
    if (c.n % 4u != 0u) { put4((c.cb + c.n) / 4u, c.pending); }
    return c.n;
}

// The four largest of `t` (sorted descending) and `v`, sorted descending.
fn insert4(t: vec4<f32>, v: f32) -> vec4<f32> {
    let r1 = min(t.x, v);
    let r2 = min(t.y, r1);
    let r3 = min(t.z, r2);
    return vec4<f32>(max(t.x, v), max(t.y, r1), max(t.z, r2), max(t.w, r3));
}

// `v` sorted descending (a five-exchange network).
fn sort4(v: vec4<f32>) -> vec4<f32> {
    let a = vec2<f32>(max(v.x, v.y), min(v.x, v.y));
    let b = vec2<f32>(max(v.z, v.w), min(v.z, v.w));
    let hi = max(a.x, b.x);
    let lo = min(a.y, b.y);
    let m1 = min(a.x, b.x);
    let m2 = max(a.y, b.y);
    return vec4<f32>(hi, max(m1, m2), min(m1, m2), lo);
}

// (1) and (2) where m is a multiple of 4 and m ≥ 4k: ceil(k / 4) groups of whole vec4s
// (at least one each, as m / 4 ≥ k), τ the least of the groups' fourth-largest values —
// still at least k values ≥ τ (four per group), and a tighter τ than k groups' maxima give:
// C ≈ 1.7k instead of 3.5k on Gaussian rows at m 512, k 32. Returns the number of
// candidates.
fn candidates_vec4(row: u32, cb: u32) -> u32 {
    let q = p.m / 4u;
    let groups = (p.k + 3u) / 4u;
    var tau = 0.0;
    for (var g = 0u; g < groups; g++) {
        let lo = g * q / groups;
        var top = sort4(a4(row, lo));
        for (var j = lo + 1u; j < (g + 1u) * q / groups; j++) {
            let v = a4(row, j);
            top = insert4(insert4(insert4(insert4(top, v.x), v.y), v.z), v.w);
        }
        if (g == 0u || top.w < tau) { tau = top.w; }
    }
    var c = Candidates(cb, 0u, vec4<f32>(PAD));
    // Read once: a uniform re-read inside the loop is not hoisted past its storage writes.
    let dense = p.dense != 0u;
    for (var j = 0u; j < q; j++) {
        let v = a4(row, j);
        if (dense) {
            let e = row * p.m + 4u * j;
            z[e] = 0.0;
            z[e + 1u] = 0.0;
            z[e + 2u] = 0.0;
            z[e + 3u] = 0.0;
        }
        if (v.x >= tau) { c = push_candidate(c, v.x, 4u * j); }
        if (v.y >= tau) { c = push_candidate(c, v.y, 4u * j + 1u); }
        if (v.z >= tau) { c = push_candidate(c, v.z, 4u * j + 2u); }
        if (v.w >= tau) { c = push_candidate(c, v.w, 4u * j + 3u); }
    }
    return flush(c);
}

// (1) and (2) for any m and k ≤ m, a value at a time.
fn candidates_scalar(row: u32, cb: u32) -> u32 {
    var tau = 0.0;
    for (var g = 0u; g < p.k; g++) {
        let lo = g * p.m / p.k;
        var top = a1(row, lo);
        for (var j = lo + 1u; j < (g + 1u) * p.m / p.k; j++) { top = max(top, a1(row, j)); }
        if (g == 0u || top < tau) { tau = top; }
    }
    var c = Candidates(cb, 0u, vec4<f32>(PAD));
    let dense = p.dense != 0u;
    for (var j = 0u; j < p.m; j++) {
        let v = a1(row, j);
        if (dense) { z[row * p.m + j] = 0.0; }
        if (v >= tau) { c = push_candidate(c, v, j); }
    }
    return flush(c);
}

// (1) and (2) for row `row`: its candidates, from candidates_start(row) on, and their
// number. A uniform branch, outside the loops.
fn candidates(row: u32) -> u32 {
    let cb = candidates_start(row);
    if (p.m % 4u == 0u && p.m >= 4u * p.k) {
        return candidates_vec4(row, cb);
    }
    return candidates_scalar(row, cb);
}
