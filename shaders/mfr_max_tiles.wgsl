// MMCS_max, first pass: S = ua · ubᵀ for the unit-row dictionaries ua [ma, d] and ub [mb, d]
// of two SAEs (row-major; in training ma = mb = m), tiled over (i, j) and never stored: one
// dispatch per chunk of rows [p.lo, p.hi) of ua, invocation j = 64·wx + lane owning latent j
// of b, writes the chunk's best value and its argmax (ties → lowest i) to
// part_val / part_arg [chunks, mb] at row p.chunk (`mfr_max_reduce.wgsl` then reduces them).
// Chunks hold at most 64 rows and 32 768 multiply-adds per invocation: on lavapipe,
// invocations of ~100 000 and more silently stopped short (wrong maxima, measured at m 1024,
// d 768). Each lane reads its own row of ub (it stays in cache); the chunk's rows of ua come
// from the uniform, so their loads are the same for every invocation (lavapipe loads them once
// for all lanes; an offset from workgroup_id measured 5× slower there). The sum for (i, j) runs
// over k in order and does not depend on the tiling, so duplicate rows give equal values.
// (The full S, for refreshing matchings and the logs, is the matmul kernel's product; where it
// fits one binding, MMCS_max is that product and `mfr_column_max.wgsl`.)
// Bindings: 0 p, 1 ua, 2 ub, 3 part_val, 4 part_arg.
// Dispatch (ceil(mb / 64), 1, 1) workgroups of 64, once per chunk.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

// lo, hi: the rows of ua of one `max_tiles` dispatch, chunk: its index (for `max_reduce`: the
// number of chunks).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read_write> part_val: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_arg: array<u32>;

fn dot_rows(i: u32, j: u32) -> f32 {
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) { acc += ua[i * p.d + k] * ub[j * p.d + k]; }
    return acc;
}
@compute @workgroup_size(64)
fn max_tiles(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let j = wg.x * WG + lane;
    if (j >= p.mb) { return; }
    var best = dot_rows(p.lo, j);
    var arg = p.lo;
    for (var i = p.lo + 1u; i < p.hi; i++) {
        let v = dot_rows(i, j);
        if (v > best) { best = v; arg = i; }
    }
    part_val[p.chunk * p.mb + j] = best;
    part_arg[p.chunk * p.mb + j] = arg;
}
