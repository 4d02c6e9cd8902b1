// Activations (their backward pass: `activation_backward.wgsl`; AuxK's dead-latent mask:
// `activation_mask_dead.wgsl`, its firing clock: `metrics_latents.wgsl`), after
// shaders/common/topk.wgsl, topk_candidates.wgsl and topk_select.wgsl (prepended).
//
// `topk`: TopK (common/topk.wgsl says what it does and how), all three passes in one
//   dispatch, every operand in storage buffers. Bindings: 0 params, 1 a, 2 z, 3 idx,
//   4 val, 5 cand_v, 6 cand_j. a and cand_v are bound as vec4s (tensors are padded to 16
//   bytes); cand_v is written a whole vec4 at a time.
// `relu`: z = max(a, 0) over n = rows·m values. Bindings: 0 params, 1 a, 2 z.
// Grids of 1-D kernels may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> val: array<f32>;
@group(0) @binding(5) var<storage, read_write> cand_v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> cand_j: array<u32>;

fn a_at(e: u32) -> f32 {
    return a[e / 4u][e % 4u];
}

// The operands of common/topk_candidates.wgsl and topk_select.wgsl.
fn a4(row: u32, x: u32) -> vec4<f32> { return a[row * (p.m / 4u) + x]; }
fn a1(row: u32, j: u32) -> f32 { return a_at(row * p.m + j); }
fn put4(i: u32, v: vec4<f32>) { cand_v[i] = v; }
fn cand4(row: u32, c: u32) -> vec4<f32> { return cand_v[candidates_start(row) / 4u + c]; }

@compute @workgroup_size(64)
fn topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let row = linear(wg, nwg, li);
    if (row >= p.rows) { return; }
    select_top(row, candidates(row));
}

@compute @workgroup_size(64)
fn relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = linear(wg, nwg, li);
    if (i >= p.rows * p.m) { return; }
    z[i] = max(a_at(i), 0.0);
}
