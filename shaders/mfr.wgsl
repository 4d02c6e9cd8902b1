// Mutual Feature Regularization between the unit-row dictionaries ua [ma, d] and ub [mb, d]
// of two SAEs (row-major; in training ma = mb = m).
//
// Similarities. S = ua · ubᵀ [ma, mb], tiled over (i, j): one dispatch per chunk of rows
// [p.lo, p.hi) of ua, invocation j = 64·wx + lane owning latent j of b. Chunks hold at most
// 64 rows and 32 768 multiply-adds per invocation: on lavapipe, invocations of ~100 000 and more
// silently stopped short (wrong maxima, measured at m 1024, d 768). Each lane reads
// its own row of ub (it stays in cache); the chunk's rows of ua come from the uniform, so their
// loads are the same for every invocation (lavapipe loads them once for all lanes; an offset
// from workgroup_id measured 5× slower there). The sum for (i, j) runs over k in order and does
// not depend on the tiling, so duplicate rows give equal values.
//   `max_tiles` (MMCS_max, S never stored): invocation j writes the chunk's best value and its
//     argmax (ties → lowest i) to part_val / part_arg [chunks, mb] at row p.chunk.
//     Bindings: 0 p, 1 ua, 2 ub, 3 part_val, 4 part_arg.
//     Dispatch (ceil(mb / 64), 1, 1) workgroups of 64, once per chunk.
//   (The full S, for refreshing matchings and the logs, is the matmul kernel's product.)
//   `max_reduce`: invocation j scans the blocks in order of i: sim[j] = max_i S[i, j],
//     assign[j] = its argmax; a later block wins only if strictly larger, so ties → lowest i.
//     Bindings: 0 p, 1 part_val, 2 part_arg, 3 sim, 4 assign. One invocation per j, 64 a group.
//   `column_max` (MMCS_max from a stored S [ma, mb], the matmul kernel's product): invocation j
//     scans i in order: sim[j] = max_i S[i, j], assign[j] = its argmax, ties → lowest i.
//     Bindings: 0 p, 1 s, 2 sim, 3 assign. One invocation per j, 64 a group.
//   `matched` (MMCS_match): sim[j] = ua[assign[j]]·ub[j] for a given matching, O(mb·d).
//     Bindings: 0 p, 1 ua, 2 ub, 3 assign, 4 sim. One invocation per j, 64 a group.
//   So MMCS = mean_j sim[j] in either form.
//
// Gradient of c · Σ_j S[assign[j], j], c = p.scale · step.weight, added to ga, gb [m, d]:
//   `grad_b`: gb[j, k] += c · ua[assign[j], k]. Bindings: 0 p, 1 step, 2 ua, 3 assign, 4 gb.
//   `grad_a`: ga[i, k] += c · Σ_{j in group i} ub[j, k], group i = members[offsets[i] ..
//     offsets[i + 1]]: the j with assign[j] = i, in increasing j (so sums are deterministic).
//     Bindings: 0 p, 1 step, 2 ub, 3 offsets, 4 members, 5 ga.
//   Both: one invocation per (row, k), 64 a group; each writes one element.
//   (MFR: scale = −1 / (pairs · m) and weight = λ·w(t), the per-step uniform, so that this is
//   the gradient of λ·w(t)·mean_pairs(1 − MMCS).)
//
// Groups of j by assign[j] (the Max form's argmax changes every step; the Match form's
// permutation is uploaded with the matching instead). u32 atomics only count and hand out
// slots; the order within a group is then fixed by rank, so the result is deterministic.
//   `group_count`: cursor[assign[j]] += 1. Bindings: 0 p, 1 assign, 2 cursor. One per j.
//   `group_scan`: offsets[i] = Σ_{i' < i} count[i'] for i ≤ m, cursor[i] ← offsets[i].
//     Bindings: 0 p, 1 cursor, 2 offsets. One workgroup of 256.
//   `group_fill`: slots[cursor[assign[j]]++] = j. Bindings: 0 p, 1 assign, 2 cursor, 3 slots.
//   `group_sort`: for slot s holding j in group i: members[offsets[i] + (number of entries of
//     group i below j)] = j, and cursor[s] ← 0 for the next step's count.
//     Bindings: 0 p, 1 assign, 2 offsets, 3 slots, 4 members, 5 cursor. One per slot.
//   Here m = p.ma = p.mb.

// lo, hi: the rows of ua of one `max_tiles` dispatch, chunk: its index (for `max_reduce`: the
// number of chunks; buffers may be padded past their tensors, so no arrayLength).
struct Params { ma: u32, mb: u32, d: u32, scale: f32, lo: u32, hi: u32, chunk: u32, _p0: u32 }
struct Step { weight: f32, _p0: f32, _p1: f32, _p2: f32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read_write> part_val: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_arg: array<u32>;

@group(0) @binding(1) var<storage, read> r_val: array<f32>;
@group(0) @binding(2) var<storage, read> r_arg: array<u32>;
@group(0) @binding(3) var<storage, read_write> r_sim: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_assign: array<u32>;

@group(0) @binding(1) var<storage, read> x_s: array<f32>;
@group(0) @binding(2) var<storage, read_write> x_sim: array<f32>;
@group(0) @binding(3) var<storage, read_write> x_assign: array<u32>;

@group(0) @binding(3) var<storage, read> m_assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> m_sim: array<f32>;

@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> g_u: array<f32>;
@group(0) @binding(3) var<storage, read> g_assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> gb: array<f32>;
@group(0) @binding(3) var<storage, read> g_offsets: array<u32>;
@group(0) @binding(4) var<storage, read> g_members: array<u32>;
@group(0) @binding(5) var<storage, read_write> ga: array<f32>;

@group(0) @binding(1) var<storage, read> c_assign: array<u32>;
@group(0) @binding(2) var<storage, read_write> c_cursor: array<atomic<u32>>;
@group(0) @binding(1) var<storage, read_write> s_cursor: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> s_offsets: array<u32>;
@group(0) @binding(3) var<storage, read_write> f_slots: array<u32>;
@group(0) @binding(2) var<storage, read> o_offsets: array<u32>;
@group(0) @binding(3) var<storage, read> o_slots: array<u32>;
@group(0) @binding(4) var<storage, read_write> o_members: array<u32>;
@group(0) @binding(5) var<storage, read_write> o_cursor: array<atomic<u32>>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

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

@compute @workgroup_size(64)
fn column_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    var best = x_s[j];
    var arg = 0u;
    for (var i = 1u; i < p.ma; i++) {
        let v = x_s[i * p.mb + j];
        if (v > best) { best = v; arg = i; }
    }
    x_sim[j] = best;
    x_assign[j] = arg;
}

@compute @workgroup_size(64)
fn max_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    let blocks = p.chunk;
    var best = r_val[j];
    var arg = r_arg[j];
    for (var b = 1u; b < blocks; b++) {
        let v = r_val[b * p.mb + j];
        if (v > best) { best = v; arg = r_arg[b * p.mb + j]; }
    }
    r_sim[j] = best;
    r_assign[j] = arg;
}

@compute @workgroup_size(64)
fn matched(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    let i = m_assign[j];
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) { acc += ua[i * p.d + k] * ub[j * p.d + k]; }
    m_sim[j] = acc;
}

@compute @workgroup_size(64)
fn grad_b(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    if (e >= p.mb * p.d) { return; }
    let j = e / p.d;
    let k = e % p.d;
    gb[e] += p.scale * step.weight * g_u[g_assign[j] * p.d + k];
}

@compute @workgroup_size(64)
fn grad_a(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let e = linear(wg, nwg, li);
    if (e >= p.ma * p.d) { return; }
    let i = e / p.d;
    let k = e % p.d;
    let c = p.scale * step.weight;
    var acc = ga[e];
    for (var t = g_offsets[i]; t < g_offsets[i + 1u]; t++) { acc += c * g_u[g_members[t] * p.d + k]; }
    ga[e] = acc;
}

@compute @workgroup_size(64)
fn group_count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    atomicAdd(&c_cursor[c_assign[j]], 1u);
}

const SCAN: u32 = 256u;
var<workgroup> chunk_base: array<u32, SCAN>;

@compute @workgroup_size(256)
fn group_scan(@builtin(local_invocation_index) li: u32) {
    let per = (p.ma + SCAN - 1u) / SCAN;
    let lo = min(li * per, p.ma);
    let hi = min(lo + per, p.ma);
    var sum = 0u;
    for (var i = lo; i < hi; i++) { sum += atomicLoad(&s_cursor[i]); }
    chunk_base[li] = sum;
    workgroupBarrier();
    if (li == 0u) {
        var run = 0u;
        for (var t = 0u; t < SCAN; t++) {
            let v = chunk_base[t];
            chunk_base[t] = run;
            run += v;
        }
        s_offsets[p.ma] = run;
    }
    workgroupBarrier();
    var at = chunk_base[li];
    for (var i = lo; i < hi; i++) {
        let count = atomicLoad(&s_cursor[i]);
        s_offsets[i] = at;
        atomicStore(&s_cursor[i], at);
        at += count;
    }
}

@compute @workgroup_size(64)
fn group_fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    f_slots[atomicAdd(&c_cursor[c_assign[j]], 1u)] = j;
}

@compute @workgroup_size(64)
fn group_sort(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let slot = linear(wg, nwg, li);
    if (slot >= p.mb) { return; }
    let j = o_slots[slot];
    let i = c_assign[j];
    let lo = o_offsets[i];
    var rank = 0u;
    for (var t = lo; t < o_offsets[i + 1u]; t++) { rank += u32(o_slots[t] < j); }
    o_members[lo + rank] = j;
    atomicStore(&o_cursor[slot], 0u);
}
