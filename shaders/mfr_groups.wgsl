// The latents j of b grouped by their partner assign[j] in a (the Max form's argmax changes
// every step; the Match form's permutation is uploaded with the matching instead), m = p.ma =
// p.mb. u32 atomics only count and hand out slots; the order within a group is then fixed by
// rank, so the result is deterministic. Between these passes `mfr_group_scan.wgsl` turns the
// counts into offsets.
//   `group_count`: cursor[assign[j]] += 1. Bindings 0 p, 1 assign, 2 cursor. One per j.
//   `group_fill`: slots[cursor[assign[j]]++] = j. Bindings 0 p, 1 assign, 2 cursor, 3 slots.
//     One per j.
//   `group_sort`: for slot s holding j in group i: members[offsets[i] + (number of entries of
//     group i below j)] = j, and cursor[s] ← 0 for the next step's count. Bindings 0 p,
//     1 assign, 2 cursor, 3 slots (only read here), 4 offsets, 5 members. One per slot.
// All: 64 invocations a group.
// Prepended (`kernels::source`): shaders/common/mfr.wgsl — Params, Step, WG, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> assign: array<u32>;
@group(0) @binding(2) var<storage, read_write> cursor: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> slots: array<u32>;
@group(0) @binding(4) var<storage, read> offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> members: array<u32>;

@compute @workgroup_size(64)
fn group_count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    atomicAdd(&cursor[assign[j]], 1u);
}

@compute @workgroup_size(64)
fn group_fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.mb) { return; }
    slots[atomicAdd(&cursor[assign[j]], 1u)] = j;
}

@compute @workgroup_size(64)
fn group_sort(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let slot = linear(wg, nwg, li);
    if (slot >= p.mb) { return; }
    let j = slots[slot];
    let i = assign[j];
    let lo = offsets[i];
    var rank = 0u;
    for (var t = lo; t < offsets[i + 1u]; t++) { rank += u32(slots[t] < j); }
    members[lo + rank] = j;
    atomicStore(&cursor[slot], 0u);
}
