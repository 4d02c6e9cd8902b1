// Workgroup-tiled matrix product for GPUs (2-D block tiling, as in the classic SGEMMs):
//   C[i, j] = alpha · Σ_k A(i, k) · B(k, j) + (has_bias ? bias[j] : 0)
// with A(i, k) = a[i·K + k] (a: [M, K] row-major) or, when A_T, a[k·M + i] (a: [K, M]);
// B(k, j) = b[k·N + j] (b: [K, N]) or, when B_T, b[j·K + k] (b: [N, K]). c: [M, N] row-major.
//
// The wrapper prepends the constants that specialise it: A_T, B_T (the layouts above),
// A_VEC, B_VEC (the operand's contiguous size — K, M, N or K — is a multiple of 4, so a
// 4-run along it is one aligned vec4 load).
//
// Bindings: 0 params (uniform), 1 a, 2 b (both viewed as vec4s; the buffers are padded to
// 16 bytes), 3 bias, 4 c (read_write).
// Dispatch: (ceil(N / 64), ceil(M / 64), instances) workgroups of 16×16 invocations.
//
// A workgroup owns a 64×64 tile of C; each invocation a 4×4 block of it, kept in registers.
// Per step of 16 along k, the workgroup stages a 64×16 slab of A (transposed, so rows are
// contiguous) and a 16×64 slab of B in workgroup memory (8 KiB: within WebGPU's 16 KiB),
// each invocation loading one 4-run of each, then every invocation reads a vec4 of A and a
// vec4 of B per k for 16 multiply-adds. Out-of-range elements are staged as zeros. The sum
// runs over k in a fixed order, so results are deterministic.

struct Params {
    m: u32, n: u32, k: u32, has_bias: u32,
    alpha: f32, stride_a: u32, stride_b: u32, stride_bias: u32,
    stride_c: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// as_[k][i] = A(i0 + i, k0 + k), bs[k][j] = B(k0 + k, j0 + j); 4 floats per vec4.
var<workgroup> as_: array<vec4<f32>, 256>; // BK · BM / 4
var<workgroup> bs: array<vec4<f32>, 256>;  // BK · BN / 4

// Where this invocation's product starts in each binding (a, b in vec4s; bias, c in values):
// one dispatch computes the products of an ensemble's N SAEs, product s = workgroup z
// (`set_instance`), each operand at s · its stride (a stride of 0 shares it).
var<private> inst: vec4<u32>;

fn set_instance(s: u32) {
    inst = vec4<u32>(s * (p.stride_a / 4u), s * (p.stride_b / 4u), s * p.stride_bias, s * p.stride_c);
}

fn a_at(e: u32) -> f32 { return a[inst.x + e / 4u][e % 4u]; }
fn b_at(e: u32) -> f32 { return b[inst.y + e / 4u][e % 4u]; }

// A(i, k), or 0 outside the matrix.
fn a_one(i: u32, k: u32) -> f32 {
    if (i >= p.m || k >= p.k) { return 0.0; }
    if (A_T) { return a_at(k * p.m + i); }
    return a_at(i * p.k + k);
}

fn b_one(k: u32, j: u32) -> f32 {
    if (k >= p.k || j >= p.n) { return 0.0; }
    if (B_T) { return b_at(j * p.k + k); }
    return b_at(k * p.n + j);
}

// The 4-run of a starting at element e, one vec4 load where it lies wholly inside (start,
// start + 4 ≤ end) and is aligned.
fn a_run(e: u32, inside: bool, i: u32, k: u32) -> vec4<f32> {
    if (A_VEC && inside) { return a[inst.x + e / 4u]; }
    if (A_T) {
        return vec4<f32>(a_one(i, k), a_one(i + 1u, k), a_one(i + 2u, k), a_one(i + 3u, k));
    }
    return vec4<f32>(a_one(i, k), a_one(i, k + 1u), a_one(i, k + 2u), a_one(i, k + 3u));
}

fn b_run(e: u32, inside: bool, k: u32, j: u32) -> vec4<f32> {
    if (B_VEC && inside) { return b[inst.y + e / 4u]; }
    if (B_T) {
        return vec4<f32>(b_one(k, j), b_one(k + 1u, j), b_one(k + 2u, j), b_one(k + 3u, j));
    }
    return vec4<f32>(b_one(k, j), b_one(k, j + 1u), b_one(k, j + 2u), b_one(k, j + 3u));
}

// Invocation t (0..255) stages one 4-run of the A slab and one of the B slab.
fn stage(t: u32, i0: u32, j0: u32, k0: u32) {
    if (A_T) {
        // a is [K, M]: the run is 4 consecutive i at one k.
        let k = k0 + t / 16u;
        let i = i0 + 4u * (t % 16u);
        as_[t] = a_run(k * p.m + i, k < p.k && i + 4u <= p.m, i, k);
    } else {
        // a is [M, K]: the run is 4 consecutive k of one row, written transposed.
        let i = i0 + t / 4u;
        let k = k0 + 4u * (t % 4u);
        let v = a_run(i * p.k + k, i < p.m && k + 4u <= p.k, i, k);
        let r = t / 4u;
        for (var kk = 0u; kk < 4u; kk++) {
            as_[(4u * (t % 4u) + kk) * (BM / 4u) + r / 4u][r % 4u] = v[kk];
        }
    }
    if (B_T) {
        // b is [N, K]: the run is 4 consecutive k of one column j, written transposed.
        let j = j0 + t / 4u;
        let k = k0 + 4u * (t % 4u);
        let v = b_run(j * p.k + k, j < p.n && k + 4u <= p.k, k, j);
        let cc = t / 4u;
        for (var kk = 0u; kk < 4u; kk++) {
            bs[(4u * (t % 4u) + kk) * (BN / 4u) + cc / 4u][cc % 4u] = v[kk];
        }
    } else {
        // b is [K, N]: the run is 4 consecutive j at one k.
        let k = k0 + t / 16u;
        let j = j0 + 4u * (t % 16u);
        bs[t] = b_run(k * p.n + j, k < p.k && j + 4u <= p.n, k, j);
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    set_instance(wg.z);
    let i0 = wg.y * BM;
    let j0 = wg.x * BN;
    let t = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage(t, i0, j0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = as_[kk * (BM / 4u) + lid.y];
            let bv = bs[kk * (BN / 4u) + lid.x];
            for (var r = 0u; r < 4u; r++) { acc[r] += av[r] * bv; }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + 4u * lid.y + r;
        for (var cc = 0u; cc < 4u; cc++) {
            let j = j0 + 4u * lid.x + cc;
            if (i < p.m && j < p.n) {
                var v = p.alpha * acc[r][cc];
                if (p.has_bias != 0u) { v += bias[inst.z + j]; }
                c[inst.w + i * p.n + j] = v;
            }
        }
    }
}
