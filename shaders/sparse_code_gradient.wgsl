// `code_gradient` (shaders/common/sparse_code_gradient.wgsl, prepended) with dict [m, cols]
// and g [rows, cols] read from storage buffers as vec4s (tensors are padded to 16 bytes):
// any cols.

@group(0) @binding(3) var<storage, read> dict: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;

fn dict4(row: u32, x: u32) -> vec4<f32> { return dict[row * (p.cols / 4u) + x]; }
fn g4(row: u32, x: u32) -> vec4<f32> { return g[row * (p.cols / 4u) + x]; }
fn dict_at(e: u32) -> f32 { return dict[e / 4u][e % 4u]; }
fn g_at(e: u32) -> f32 { return g[e / 4u][e % 4u]; }
