// `decode` (shaders/common/sparse_decode.wgsl, prepended) with dict [m, cols] read from an
// rgba32float texture (one layer), texel (x, j) = dict[j, 4x .. 4x + 3], that the dispatch
// fills by a copy first: for llvmpipe, which loads storage buffers lane by lane but fetches
// a texel for all lanes at once (shaders/matmul_texture.wgsl says more). Only for cols a
// multiple of 64 (`Kernels::sparse_decode` checks), so every vec4 lies inside one row.

@group(0) @binding(3) var dict: texture_2d_array<f32>;

// The gather's operand (common/sparse_products.wgsl).
fn src4(row: u32, x: u32) -> vec4<f32> { return textureLoad(dict, vec2<u32>(x, row), 0, 0); }
fn src4_flat(i: u32) -> vec4<f32> {
    let q = p.cols / 4u;
    return src4(i / q, i % q);
}
