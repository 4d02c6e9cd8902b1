// Prepended to `sparse.wgsl` (decode) and the scatter's (`common/sparse_scatter.wgsl`), after
// common/sparse.wgsl: the gather both are made of. One invocation sums, over the terms
// n = first .. end − 1 in order, term_weight(n) · src[term_row(n), c0 .. c0 + width − 1]
// of a [.., cols] operand src bound as vec4s (tensors are padded to 16 bytes); each file
// defines the hooks `term_row`, `term_weight` (where its terms come from), `src4` (vec4 x
// of row `row` of its operand, for cols a multiple of 4) and `src4_flat` (vec4 i of the
// operand as one array), and binds `out` [.., cols] (read_write) for `store4`.
//
// Where cols is a multiple of 4 each term loads width / 4 whole vec4s (lavapipe loads
// storage lane by lane, so one vec4 costs about what one scalar does); otherwise one
// scalar a value. Both paths sum in the same order. The accumulators are named values, not
// a private array: lavapipe does not unroll loops over private arrays, and SwiftShader
// spills them (and pointers) to memory, so state passes by value.

// Indices of columns c0 .. c0 + 3 of the row starting at `base` of a [.., cols] matrix;
// columns past the end read the last one (their results are never stored).
fn cols4(base: u32, c0: u32) -> vec4<u32> {
    let last = p.cols - 1u;
    return vec4<u32>(base + min(c0, last), base + min(c0 + 1u, last), base + min(c0 + 2u, last), base + min(c0 + 3u, last));
}

// out[base + c·stride] (+)= v for the columns c = c0 .. c0 + 3 that exist.
fn store4(base: u32, stride: u32, c0: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if (c0 + q < p.cols) {
            var value = v[q];
            if (p.accumulate != 0u) { value += out[base + (c0 + q) * stride]; }
            out[base + (c0 + q) * stride] = value;
        }
    }
}

// src[e] of the operand viewed as scalars.
fn src_at(e: u32) -> f32 {
    return src4_flat(e / 4u)[e % 4u];
}

// The sums of one invocation: columns c0 .. c0 + 15 (lo) and c0 + 16 .. c0 + 31 (hi), a
// vec4 a column of each matrix.
struct Acc { lo: mat4x4<f32>, hi: mat4x4<f32> }

// Columns c0 .. c0 + 31 as eight vec4s, for cols a multiple of 4 (vec4s past the row's end
// repeat its last one; never stored).
fn gather_vec4(first: u32, end: u32, c0: u32) -> Acc {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let o = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    let o2 = vec4<u32>(min(v0 + 4u, last), min(v0 + 5u, last), min(v0 + 6u, last), min(v0 + 7u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var n = first; n < end; n++) {
        let row = term_row(n);
        let w = term_weight(n);
        acc0 += w * src4(row, o.x);
        acc1 += w * src4(row, o.y);
        acc2 += w * src4(row, o.z);
        acc3 += w * src4(row, o.w);
        acc4 += w * src4(row, o2.x);
        acc5 += w * src4(row, o2.y);
        acc6 += w * src4(row, o2.z);
        acc7 += w * src4(row, o2.w);
    }
    return Acc(mat4x4<f32>(acc0, acc1, acc2, acc3), mat4x4<f32>(acc4, acc5, acc6, acc7));
}

// The same sum over columns c0 .. c0 + 15 as four vec4s (width 16).
fn gather_vec4_16(first: u32, end: u32, c0: u32) -> mat4x4<f32> {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let o = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = first; n < end; n++) {
        let row = term_row(n);
        let w = term_weight(n);
        acc0 += w * src4(row, o.x);
        acc1 += w * src4(row, o.y);
        acc2 += w * src4(row, o.z);
        acc3 += w * src4(row, o.w);
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

// The same sum over columns c0 .. c0 + 15 for any cols, one scalar load per value.
fn gather_scalar(first: u32, end: u32, c0: u32) -> mat4x4<f32> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = first; n < end; n++) {
        let base = term_row(n) * p.cols;
        let w = term_weight(n);
        let a0 = cols4(base, c0);
        let a1 = cols4(base, c0 + 4u);
        let a2 = cols4(base, c0 + 8u);
        let a3 = cols4(base, c0 + 12u);
        acc0 += w * vec4<f32>(src_at(a0.x), src_at(a0.y), src_at(a0.z), src_at(a0.w));
        acc1 += w * vec4<f32>(src_at(a1.x), src_at(a1.y), src_at(a1.z), src_at(a1.w));
        acc2 += w * vec4<f32>(src_at(a2.x), src_at(a2.y), src_at(a2.z), src_at(a2.w));
        acc3 += w * vec4<f32>(src_at(a3.x), src_at(a3.y), src_at(a3.z), src_at(a3.w));
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

// The invocation's `width` (16 or 32) columns from c0: the path by a uniform branch outside
// the loops, so each loop stays free of branches.
fn gathered(first: u32, end: u32, c0: u32) -> Acc {
    var acc = Acc(mat4x4<f32>(), mat4x4<f32>());
    if (p.cols % 4u == 0u && p.width == 32u) {
        acc = gather_vec4(first, end, c0);
    } else if (p.cols % 4u == 0u) {
        acc.lo = gather_vec4_16(first, end, c0);
    } else {
        acc.lo = gather_scalar(first, end, c0);
        if (p.width == 32u) { acc.hi = gather_scalar(first, end, c0 + 16u); }
    }
    return acc;
}
