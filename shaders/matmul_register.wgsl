// Register-blocked matrix product for CPU drivers (lavapipe, SwiftShader):
//   C[i, j] = alpha · Σ_k A(i, k) · B(k, j) + (has_bias ? bias[j] : 0)
// with A(i, k) = a[i·K + k] (a: [M, K] row-major) or, when A_T, a[k·M + i] (a: [K, M]);
// B(k, j) = b[k·N + j] (b: [K, N]) or, when B_T, b[j·K + k] (b: [N, K]). c: [M, N] row-major.
//
// The wrapper (src/kernels/matmul.rs) prepends the constants that specialise it — A_T, B_T
// (the layouts above), A_VEC, B_VEC (the operand's contiguous size, K, M, N or K, is a
// multiple of 4, so 4-runs along it are aligned vec4 loads) — and appends the entry point
// `main`, generated for a block of R×C 4×4 sub-blocks of C per invocation (4×4, or 2×2 where
// an operand is not vec4-aligned):
// per step of 4 along k it loads R blocks of A and C blocks of B with `a_block`/`b_block`
// and accumulates `transpose(a_r) * b_c` into mat4x4 accumulators; a tail loop takes the
// last K mod 4 steps with `a_column`/`b_row`/`outer`; `store` writes each block.
// `kernels::source` prepends shaders/common/matmul_blocks.wgsl — Params, the bindings of
// params, bias and c, `inst`, `store` — which matmul_texture.wgsl shares.
// The entry point is generated because lavapipe does not unroll loops over private arrays
// (indexed accumulators ran 4× slower than named ones).
//
// Bindings: 0 params (uniform), 1 a, 2 b (both viewed as vec4s; tensors are padded to 16
// bytes), 3 bias, 4 c (read_write).
// Dispatch: (ceil(N / (4C·8)), ceil(M / (4R·8)), instances) workgroups of 8×8 invocations.
//
// Why this shape: lavapipe runs the invocations of a workgroup as the lanes of 8-wide SIMD
// registers and executes every storage load lane by lane, so loads, not arithmetic, bound
// the speed. Every load here fetches a whole vec4, and each step of 4 along k loads
// 4·(R + C) vec4s for 64·R·C multiply-adds. No workgroup memory and no barriers (expensive
// on CPUs). Rows and columns past the edge are clamped to the last one (computed, never
// stored), so the inner loop has no branches. The sum over k runs in a fixed order, so
// results are deterministic.

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

// `inst` (common/matmul_blocks.wgsl): where this invocation's product starts in each binding
// (a, b in vec4s; bias, c in values): one dispatch computes the products of an ensemble's N
// SAEs, product s = workgroup z, each operand at s · its stride (a stride of 0 shares it).
fn set_instance(s: u32) {
    inst = vec4<u32>(s * (p.stride_a / 4u), s * (p.stride_b / 4u), s * p.stride_bias, s * p.stride_c);
}

fn a_at(e: u32) -> f32 { return a[inst.x + e / 4u][e % 4u]; }
fn b_at(e: u32) -> f32 { return b[inst.y + e / 4u][e % 4u]; }

// A(i, k) for a row i (already clamped) and column k.
fn a_one(i: u32, k: u32) -> f32 {
    if (A_T) { return a_at(k * p.m + i); }
    return a_at(i * p.k + k);
}

fn b_one(k: u32, j: u32) -> f32 {
    if (B_T) { return b_at(j * p.k + k); }
    return b_at(k * p.n + j);
}

// The 4×4 block of A at rows i0.., columns k..k+3, transposed: column r holds A(i0 + r, k..k+3).
// Rows past M repeat the last row. (Transposes are free: a CPU driver keeps every component
// in its own register.)
fn a_block(i0: u32, k: u32) -> mat4x4<f32> {
    let last = p.m - 1u;
    if (A_T && A_VEC) {
        // a is [K, M]: one vec4 holds A(i0..i0+3, k') for one k'.
        let q = min(i0, last) / 4u;
        let s = p.m / 4u;
        return transpose(mat4x4<f32>(a[inst.x + k * s + q], a[inst.x + (k + 1u) * s + q], a[inst.x + (k + 2u) * s + q], a[inst.x + (k + 3u) * s + q]));
    }
    let r = vec4<u32>(min(i0, last), min(i0 + 1u, last), min(i0 + 2u, last), min(i0 + 3u, last));
    if (A_VEC) {
        // a is [M, K]: one vec4 holds A(i, k..k+3) for one row.
        return mat4x4<f32>(a[inst.x + (r.x * p.k + k) / 4u], a[inst.x + (r.y * p.k + k) / 4u], a[inst.x + (r.z * p.k + k) / 4u], a[inst.x + (r.w * p.k + k) / 4u]);
    }
    return mat4x4<f32>(a_run(r.x, k), a_run(r.y, k), a_run(r.z, k), a_run(r.w, k));
}

// A(i, k..k+3) element by element.
fn a_run(i: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(a_one(i, k), a_one(i, k + 1u), a_one(i, k + 2u), a_one(i, k + 3u));
}

// The 4×4 block of B at rows k..k+3, columns j0..: column c holds B(k..k+3, j0 + c).
// Columns past N repeat the last column.
fn b_block(j0: u32, k: u32) -> mat4x4<f32> {
    let last = p.n - 1u;
    if (!B_T && B_VEC) {
        // b is [K, N]: one vec4 holds B(k', j0..j0+3) for one k'.
        let q = min(j0, last) / 4u;
        let s = p.n / 4u;
        return transpose(mat4x4<f32>(b[inst.y + k * s + q], b[inst.y + (k + 1u) * s + q], b[inst.y + (k + 2u) * s + q], b[inst.y + (k + 3u) * s + q]));
    }
    let j = vec4<u32>(min(j0, last), min(j0 + 1u, last), min(j0 + 2u, last), min(j0 + 3u, last));
    if (B_VEC) {
        // b is [N, K]: one vec4 holds B(k..k+3, j) for one column.
        return mat4x4<f32>(b[inst.y + (j.x * p.k + k) / 4u], b[inst.y + (j.y * p.k + k) / 4u], b[inst.y + (j.z * p.k + k) / 4u], b[inst.y + (j.w * p.k + k) / 4u]);
    }
    return mat4x4<f32>(b_run(k, j.x), b_run(k, j.y), b_run(k, j.z), b_run(k, j.w));
}

fn b_run(k: u32, j: u32) -> vec4<f32> {
    return vec4<f32>(b_one(k, j), b_one(k + 1u, j), b_one(k + 2u, j), b_one(k + 3u, j));
}

// A(i0..i0+3, k) and B(k, j0..j0+3), clamped, for the scalar tail.
fn a_column(i0: u32, k: u32) -> vec4<f32> {
    let last = p.m - 1u;
    return vec4<f32>(a_one(min(i0, last), k), a_one(min(i0 + 1u, last), k), a_one(min(i0 + 2u, last), k), a_one(min(i0 + 3u, last), k));
}

fn b_row(k: u32, j0: u32) -> vec4<f32> {
    let last = p.n - 1u;
    return vec4<f32>(b_one(k, min(j0, last)), b_one(k, min(j0 + 1u, last)), b_one(k, min(j0 + 2u, last)), b_one(k, min(j0 + 3u, last)));
}

// The outer product a bᵀ as a matrix whose column c is a · b[c].
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}
