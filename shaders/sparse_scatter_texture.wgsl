// `scatter` (shaders/common/sparse_scatter.wgsl, prepended) with y [rows, cols] read from an
// rgba32float texture (one layer), texel (x, r) = y[r, 4x .. 4x + 3], that the dispatch fills by a copy
// first: for llvmpipe, which loads storage buffers lane by lane but fetches a texel for all
// lanes at once (the texture matmul's reason, shaders/matmul_texture.wgsl). Only for cols a
// multiple of 64 (`Kernels::sparse_scatter` checks), so every vec4 lies inside one row.

@group(0) @binding(6) var y: texture_2d_array<f32>;

// The gather's operand (common/sparse_products.wgsl).
fn src4(row: u32, x: u32) -> vec4<f32> { return textureLoad(y, vec2<u32>(x, row), 0, 0); }
fn src4_flat(i: u32) -> vec4<f32> {
    let q = p.cols / 4u;
    return src4(i / q, i % q);
}
