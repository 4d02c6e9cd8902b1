// `code_gradient` (shaders/common/sparse_code_gradient.wgsl, prepended) with dict [m, cols]
// and g [rows, cols] read from rgba32float textures (one layer each), texel (x, r) =
// row r's values 4x .. 4x + 3, that the dispatch fills by copies first: for llvmpipe,
// which loads storage buffers lane by lane but fetches a texel for all lanes at once
// (shaders/matmul_texture.wgsl says more). Only for cols a multiple of 64
// (`Kernels::sparse_code_gradient` checks): the vec4 path then always runs, and every vec4
// lies inside one row.

@group(0) @binding(3) var dict: texture_2d_array<f32>;
@group(0) @binding(4) var g: texture_2d_array<f32>;

fn dict4(row: u32, x: u32) -> vec4<f32> { return textureLoad(dict, vec2<u32>(x, row), 0, 0); }
fn g4(row: u32, x: u32) -> vec4<f32> { return textureLoad(g, vec2<u32>(x, row), 0, 0); }
fn dict_at(e: u32) -> f32 { return dict4(e / p.cols, (e % p.cols) / 4u)[e % 4u]; }
fn g_at(e: u32) -> f32 { return g4(e / p.cols, (e % p.cols) / 4u)[e % 4u]; }
