// The offsets of `mfr_groups.wgsl`'s groups: offsets[i] = Σ_{i' < i} count[i'] for i ≤ m
// (m = p.ma), from the counts group_count left in cursor [m], and cursor[i] ← offsets[i] for
// group_fill. Bindings: 0 p, 1 cursor, 2 offsets. One workgroup of 256: each invocation sums a
// run of ceil(m / 256) counts, one invocation scans the 256 sums, each then writes its run.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> cursor: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;

const SCAN: u32 = 256u;
var<workgroup> chunk_base: array<u32, SCAN>;

@compute @workgroup_size(256)
fn group_scan(@builtin(local_invocation_index) li: u32) {
    let per = (p.ma + SCAN - 1u) / SCAN;
    let lo = min(li * per, p.ma);
    let hi = min(lo + per, p.ma);
    var sum = 0u;
    for (var i = lo; i < hi; i++) { sum += atomicLoad(&cursor[i]); }
    chunk_base[li] = sum;
    workgroupBarrier();
    if (li == 0u) {
        var run = 0u;
        for (var t = 0u; t < SCAN; t++) {
            let v = chunk_base[t];
            chunk_base[t] = run;
            run += v;
        }
        offsets[p.ma] = run;
    }
    workgroupBarrier();
    var at = chunk_base[li];
    for (var i = lo; i < hi; i++) {
        let count = atomicLoad(&cursor[i]);
        offsets[i] = at;
        atomicStore(&cursor[i], at);
        at += count;
    }
}
