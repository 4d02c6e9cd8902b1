// TopK's passes (1) and (2) (shaders/common/topk.wgsl and topk_candidates.wgsl, prepended)
// with a [rows, m] read from an rgba32float texture array, texel (x, r % layer_rows) of
// layer r / layer_rows = a[r, 4x .. 4x + 3], that the dispatch fills by a copy first (for
// llvmpipe: texture.rs says why). Only for m a multiple of 64 (`Kernels::topk` checks).
// Writes each row's candidates (cand_v, cand_j) and their number (cand_n [rows]) for
// `topk_select_texture.wgsl`, and clears the row's dense code if it is written. (cand_v
// stays a storage buffer, copied into a texture for the next pass: writing it to a storage
// texture instead made the step 15–20 % slower on lavapipe.)
// Bindings: 0 params, 1 a (texture), 2 z, 3 cand_v, 4 cand_j, 5 cand_n.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var a: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> cand_v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> cand_j: array<u32>;
@group(0) @binding(5) var<storage, read_write> cand_n: array<u32>;

fn a4(row: u32, x: u32) -> vec4<f32> {
    return textureLoad(a, vec2<u32>(x, row % p.layer_rows), row / p.layer_rows, 0);
}
fn a1(row: u32, j: u32) -> f32 { return a4(row, j / 4u)[j % 4u]; }
fn put4(i: u32, v: vec4<f32>) { cand_v[i] = v; }

@compute @workgroup_size(64)
fn candidates_pass(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let row = linear(wg, nwg, li);
    if (row >= p.rows) { return; }
    cand_n[row] = candidates(row);
}
