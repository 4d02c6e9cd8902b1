// TopK's pass (3) (shaders/common/topk.wgsl and topk_select.wgsl, prepended) after
// `topk_candidates_texture.wgsl`, with the candidate values read from an rgba32float
// texture array, texel (c, r % layer_rows) of layer r / layer_rows = row r's candidate
// values 4c .. 4c + 3 (cand_v [rows, m], m a multiple of 64), that the dispatch fills by a
// copy of cand_v first; the candidates' latents (cand_j, k loads a row) and number
// (cand_n) stay in storage.
// Bindings: 0 params, 1 cand_v (texture), 2 cand_j, 3 cand_n, 4 z, 5 idx, 6 val.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var cand_v: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read> cand_j: array<u32>;
@group(0) @binding(3) var<storage, read> cand_n: array<u32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> idx: array<u32>;
@group(0) @binding(6) var<storage, read_write> val: array<f32>;

fn cand4(row: u32, c: u32) -> vec4<f32> {
    return textureLoad(cand_v, vec2<u32>(c, row % p.layer_rows), row / p.layer_rows, 0);
}

@compute @workgroup_size(64)
fn select_pass(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let row = linear(wg, nwg, li);
    if (row >= p.rows) { return; }
    select_top(row, cand_n[row]);
}
