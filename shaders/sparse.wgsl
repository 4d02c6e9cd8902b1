// `decode` (shaders/common/sparse_decode.wgsl, prepended) with dict [m, cols] read from a
// storage buffer as vec4s (tensors are padded to 16 bytes): any cols.

@group(0) @binding(3) var<storage, read> dict: array<vec4<f32>>;

// The gather's operand (common/sparse_products.wgsl).
fn src4(row: u32, x: u32) -> vec4<f32> { return dict[row * (p.cols / 4u) + x]; }
fn src4_flat(i: u32) -> vec4<f32> { return dict[i]; }
