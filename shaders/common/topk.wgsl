// TopK (`topk` in shaders/activation.wgsl; its texture flavour, two dispatches:
// topk_candidates_texture.wgsl then topk_select_texture.wgsl): per row of a [rows, m],
//   keeps the k largest pre-activations. Order is (value descending, index ascending), so
//   ties go to the lower index and the result is deterministic. Writes, when dense = 1,
//   the dense code z [rows, m] (zeros elsewhere) and, when sparse = 1, the sparse form
//   idx [rows, k] (u32), val [rows, k], both in that order (the dense path reads only z,
//   the sparse path only idx and val; what is not written is bound to a one-element
//   placeholder). relu = 1 clamps the kept values at 0 (the default); relu = 0 keeps
//   negatives (the reference code's `paper_exact` behaviour). With instance_rows ≠ 0, a is
//   an ensemble's stacked [N·rows, m] (instance s's rows are s·instance_rows …) and idx
//   names latents of the stacked dictionary [N·m, d]: j + s·m for instance s's latent j.
//   One invocation per row, 64 a group, no workgroup memory. Three passes: (1) split the
//   row into k contiguous groups; τ = the least of the group maxima — at least k values
//   are ≥ τ (one per group), so the kept ones all are; (2) copy the candidates v ≥ τ, in
//   index order, to cand_v (v) and cand_j (j), scratch [rows, m4] each (m4 = m rounded up
//   to a multiple of 4, so each row's candidates start on a vec4), padded to a multiple of
//   4 with −f32::MAX (a pad sits after every real candidate, so ties with it go to the real
//   one, and at least k real ones are always left to take); (3) k selection passes over
//   the C candidates, a vec4 at a time (position order is index order, so ties still go to
//   the lower index).
//   Cost 2·m + k·C values loaded instead of k·m, C ≈ 3k on Gaussian rows at m 512, k 32;
//   C = m only when k = m or the row is all ties. lavapipe loads storage lane by lane,
//   one vec4 for about the price of one scalar, so where m is a multiple of 4 and at
//   least 4k, passes (1) and (2) read whole vec4s (groups of whole vec4s) too; and the
//   texture flavour reads a in (1)–(2), and the candidates in (3), from textures (one
//   fetch for all lanes), (3) in a dispatch of its own after a copy of cand_v.
// This file (Params, WG, PAD, linear) is prepended to every TopK file, then
// common/topk_candidates.wgsl (passes 1–2) and/or common/topk_select.wgsl (pass 3), which
// use the names the including file declares: `a4(row, x)` (vec4 x of a's row; m a multiple
// of 4), `a1(row, j)`, `put4(i, v)` (stores vec4 i of the candidate values),
// `cand4(row, c)` (loads vec4 c of the row's candidate values) and the bindings z, idx, val,
// cand_j.
// layer_rows: the texture flavour's rows per texture layer (row r is texel row r % layer_rows
// of layer r / layer_rows); unused by the buffer flavour.

struct Params { rows: u32, m: u32, k: u32, relu: u32, sparse: u32, dense: u32, instance_rows: u32, layer_rows: u32 }

const WG: u32 = 64u;
// The candidates' padding: −f32::MAX, the least finite value (written exactly: a decimal
// literal above f32::MAX is a shader-creation error in Chromium).
const PAD: f32 = -0x1.fffffep+127f;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// Where row `row`'s candidates start in cand_v and cand_j.
fn candidates_start(row: u32) -> u32 {
    return row * ((p.m + 3u) / 4u * 4u);
}
