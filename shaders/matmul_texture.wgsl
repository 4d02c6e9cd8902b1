// Register-blocked matrix product reading its operands from textures, for CPU drivers
// (lavapipe) whose storage-buffer loads are slow:
//   C[i, j] = alpha · Σ_k A(i, k) · B(k, j) + (has_bias ? bias[j] : 0)
// with the layouts of matmul_register.wgsl (A_T, B_T), every operand's contiguous size a
// multiple of 4 and K a multiple of 4 (the wrapper, src/kernels/matmul.rs, uses the register
// variant for any other product). Before each run the dispatch copies a and b (as stored:
// rows of 4-value texels) into rgba32float 2-D texture arrays, one layer per instance:
// texel (x, y) of layer s holds values 4x..4x+3 of row y of operand s.
//
// The wrapper prepends A_T, B_T (A_VEC and B_VEC, always true here, are unused) and appends
// the entry point `main` that it generates for matmul_register.wgsl, here for 2×2 4×4
// sub-blocks per invocation: this file offers the same `set_instance`, `a_block` and
// `b_block`; `kernels::source` prepends shaders/common/matmul_blocks.wgsl (Params, the
// bindings of params, bias and c, `inst`, `store`), which the register variant shares.
//
// Bindings: 0 params (uniform), 1 a, 2 b (texture_2d_array<f32>), 3 bias, 4 c (read_write).
// Dispatch: (ceil(N / 64), ceil(M / 64), instances) workgroups of 8×8 invocations.
//
// Why textures: Mesa 22's llvmpipe loads from a storage buffer lane by lane, each lane in a
// branch of its own with a bounds check, so the register variant spends most of its time
// loading; a texel fetch is one gather per vec4 for all 8 lanes. On a 2-core Zen 3 the
// encoder product (1024 × 256 × 512) ran at ~9–10 GFLOP/s this way against ~3 from storage
// buffers, copies included. The sum over k runs in a fixed order: deterministic.

@group(0) @binding(1) var a: texture_2d_array<f32>;
@group(0) @binding(2) var b: texture_2d_array<f32>;

// `inst` (common/matmul_blocks.wgsl) for product s = workgroup z: its layers of a and b (0
// where a stride of 0 shares the operand) and where its bias and c start.
fn set_instance(s: u32) {
    inst = vec4<u32>(select(0u, s, p.stride_a != 0u), select(0u, s, p.stride_b != 0u), s * p.stride_bias, s * p.stride_c);
}

fn a_texel(x: u32, y: u32) -> vec4<f32> { return textureLoad(a, vec2<u32>(x, y), inst.x, 0); }
fn b_texel(x: u32, y: u32) -> vec4<f32> { return textureLoad(b, vec2<u32>(x, y), inst.y, 0); }

// The 4×4 block of A at rows i0.., columns k..k+3, transposed: column r holds A(i0 + r, k..k+3).
// Rows past M repeat the last row.
fn a_block(i0: u32, k: u32) -> mat4x4<f32> {
    let last = p.m - 1u;
    if (A_T) {
        // a is [K, M]: texel (i0 / 4, k') holds A(i0..i0+3, k').
        let x = min(i0, last) / 4u;
        return transpose(mat4x4<f32>(a_texel(x, k), a_texel(x, k + 1u), a_texel(x, k + 2u), a_texel(x, k + 3u)));
    }
    // a is [M, K]: texel (k / 4, i) holds A(i, k..k+3).
    let x = k / 4u;
    return mat4x4<f32>(a_texel(x, min(i0, last)), a_texel(x, min(i0 + 1u, last)), a_texel(x, min(i0 + 2u, last)), a_texel(x, min(i0 + 3u, last)));
}

// The 4×4 block of B at rows k..k+3, columns j0..: column c holds B(k..k+3, j0 + c).
// Columns past N repeat the last column.
fn b_block(j0: u32, k: u32) -> mat4x4<f32> {
    let last = p.n - 1u;
    if (!B_T) {
        // b is [K, N]: texel (j0 / 4, k') holds B(k', j0..j0+3).
        let x = min(j0, last) / 4u;
        return transpose(mat4x4<f32>(b_texel(x, k), b_texel(x, k + 1u), b_texel(x, k + 2u), b_texel(x, k + 3u)));
    }
    // b is [N, K]: texel (k / 4, j) holds B(k..k+3, j).
    let x = k / 4u;
    return mat4x4<f32>(b_texel(x, min(j0, last)), b_texel(x, min(j0 + 1u, last)), b_texel(x, min(j0 + 2u, last)), b_texel(x, min(j0 + 3u, last)));
}
