// Strided, batched matrix product with optional bias:
//   C[z][i, j] = alpha · Σ_k A[z](i, k) · B[z](k, j) + (has_bias ? bias[z][j] : 0)
// A(i, k) lives at a[z·batch_a + i·sa_i + k·sa_k] and B(k, j) at b[z·batch_b + k·sb_k + j·sb_j],
// so a transposed operand is just a different pair of strides. C is row-major [M, N].
// The sum runs over k in order, so results are deterministic.
//
// Bindings: 0 params (uniform), 1 a, 2 b, 3 bias, 4 c (read_write).
// Dispatch: (ceil(N / 32), ceil(M / 32), batches) workgroups of 8×8 invocations;
// each invocation computes a 4×4 block of C. No workgroup memory or barriers:
// CPU drivers (lavapipe, SwiftShader) pay heavily for barriers.

struct Params {
    m: u32, n: u32, k: u32, has_bias: u32,
    sa_i: u32, sa_k: u32, sb_k: u32, sb_j: u32,
    batch_a: u32, batch_b: u32, batch_c: u32, batch_bias: u32,
    alpha: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn load_a(base: u32, i: u32, k: u32) -> f32 {
    if (i < p.m) { return a[base + i * p.sa_i + k * p.sa_k]; }
    return 0.0;
}

fn load_b(base: u32, k: u32, j: u32) -> f32 {
    if (j < p.n) { return b[base + k * p.sb_k + j * p.sb_j]; }
    return 0.0;
}

fn store_row(base: u32, bias_base: u32, i: u32, j0: u32, acc: vec4<f32>) {
    if (i >= p.m) { return; }
    for (var t = 0u; t < 4u; t++) {
        let j = j0 + t;
        if (j < p.n) {
            var v = p.alpha * acc[t];
            if (p.has_bias != 0u) { v += bias[bias_base + j]; }
            c[base + i * p.n + j] = v;
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) { return; }
    let za = gid.z * p.batch_a;
    let zb = gid.z * p.batch_b;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let bv = vec4<f32>(load_b(zb, k, j0), load_b(zb, k, j0 + 1u), load_b(zb, k, j0 + 2u), load_b(zb, k, j0 + 3u));
        acc0 += load_a(za, i0, k) * bv;
        acc1 += load_a(za, i0 + 1u, k) * bv;
        acc2 += load_a(za, i0 + 2u, k) * bv;
        acc3 += load_a(za, i0 + 3u, k) * bv;
    }
    let zc = gid.z * p.batch_c;
    let zbias = gid.z * p.batch_bias;
    store_row(zc, zbias, i0, j0, acc0);
    store_row(zc, zbias, i0 + 1u, j0, acc1);
    store_row(zc, zbias, i0 + 2u, j0, acc2);
    store_row(zc, zbias, i0 + 3u, j0, acc3);
}
