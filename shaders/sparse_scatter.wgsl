// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// `scatter`: per latent j, out[j, c] (+)= Σ_{e ∈ entries of j} s[e] · y[row of e, c];
//   s [rows, k], y [rows, cols]; out [m, cols], or [cols, m] when transposed = 1.
//   Bindings: 0 p, 1 csc_offsets, 2 csc_entries, 3 csc_rows, 4 s, 5 out, 6 y.
//   One invocation per `width` (16 or 32, `SparseWidth`) columns of a latent's output row
//   (index i → latent i / ceil(cols / width)); y is bound as vec4s (tensors are padded to
//   16 bytes), and where cols is a multiple of 4 each entry loads width / 4 whole vec4s (lavapipe loads
//   storage lane by lane, so one vec4 costs about what one scalar does).
//   Work rows·k·cols + m·cols.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params {
    rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, op: u32,
    width: u32, _p0: u32, _p1: u32, _p2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> csc_offsets: array<u32>;
@group(0) @binding(2) var<storage, read> csc_entries: array<u32>;
@group(0) @binding(3) var<storage, read> csc_rows: array<u32>;
@group(0) @binding(4) var<storage, read> s: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> y: array<vec4<f32>>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// Indices of columns c0 .. c0 + 3 of the row starting at `base` of a [.., cols] matrix;
// columns past the end read the last one (their results are never stored).
fn cols4(base: u32, c0: u32) -> vec4<u32> {
    let last = p.cols - 1u;
    return vec4<u32>(base + min(c0, last), base + min(c0 + 1u, last), base + min(c0 + 2u, last), base + min(c0 + 3u, last));
}

// out[base + c·stride] (+)= v for the columns c = c0 .. c0 + 3 that exist.
fn store4(base: u32, stride: u32, c0: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if (c0 + q < p.cols) {
            var value = v[q];
            if (p.accumulate != 0u) { value += out[base + (c0 + q) * stride]; }
            out[base + (c0 + q) * stride] = value;
        }
    }
}

// y[e] of y viewed as scalars.
fn y_at(e: u32) -> f32 {
    return y[e / 4u][e % 4u];
}

// The sums of one invocation: columns c0 .. c0 + 15 (lo) and c0 + 16 .. c0 + 31 (hi), a
// vec4 a column of each matrix (matrices and structs stay in registers on SwiftShader,
// where a private array spills to memory).
struct Acc { lo: mat4x4<f32>, hi: mat4x4<f32> }

// Σ_{e ∈ entries of j} s[e] · y[row of e, c0 .. c0 + 31] as eight vec4s, for cols a
// multiple of 4 (vec4s past the row's end repeat its last one; never stored).
fn gather_vec4(j: u32, c0: u32) -> Acc {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let o = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    let o2 = vec4<u32>(min(v0 + 4u, last), min(v0 + 5u, last), min(v0 + 6u, last), min(v0 + 7u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let base = csc_rows[n] * q;
        let sv = s[csc_entries[n]];
        acc0 += sv * y[base + o.x];
        acc1 += sv * y[base + o.y];
        acc2 += sv * y[base + o.z];
        acc3 += sv * y[base + o.w];
        acc4 += sv * y[base + o2.x];
        acc5 += sv * y[base + o2.y];
        acc6 += sv * y[base + o2.z];
        acc7 += sv * y[base + o2.w];
    }
    return Acc(mat4x4<f32>(acc0, acc1, acc2, acc3), mat4x4<f32>(acc4, acc5, acc6, acc7));
}

// The same sum over columns c0 .. c0 + 15 as four vec4s (width 16).
fn gather_vec4_16(j: u32, c0: u32) -> mat4x4<f32> {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let o = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let base = csc_rows[n] * q;
        let sv = s[csc_entries[n]];
        acc0 += sv * y[base + o.x];
        acc1 += sv * y[base + o.y];
        acc2 += sv * y[base + o.z];
        acc3 += sv * y[base + o.w];
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

// The same sum for any cols, one scalar load per value.
fn gather_scalar(j: u32, c0: u32) -> mat4x4<f32> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var n = csc_offsets[j]; n < csc_offsets[j + 1u]; n++) {
        let base = csc_rows[n] * p.cols;
        let sv = s[csc_entries[n]];
        let a0 = cols4(base, c0);
        let a1 = cols4(base, c0 + 4u);
        let a2 = cols4(base, c0 + 8u);
        let a3 = cols4(base, c0 + 12u);
        acc0 += sv * vec4<f32>(y_at(a0.x), y_at(a0.y), y_at(a0.z), y_at(a0.w));
        acc1 += sv * vec4<f32>(y_at(a1.x), y_at(a1.y), y_at(a1.z), y_at(a1.w));
        acc2 += sv * vec4<f32>(y_at(a2.x), y_at(a2.y), y_at(a2.z), y_at(a2.w));
        acc3 += sv * vec4<f32>(y_at(a3.x), y_at(a3.y), y_at(a3.z), y_at(a3.w));
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

@compute @workgroup_size(64)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + p.width - 1u) / p.width;
    let i = linear(wg, nwg, li);
    let j = i / blocks;
    let c0 = (i % blocks) * p.width;
    if (j >= p.m) { return; }
    // Uniform branches outside the loops: each path keeps its loop free of branches.
    var acc = Acc(mat4x4<f32>(), mat4x4<f32>());
    if (p.cols % 4u == 0u && p.width == 32u) {
        acc = gather_vec4(j, c0);
    } else if (p.cols % 4u == 0u) {
        acc.lo = gather_vec4_16(j, c0);
    } else {
        acc.lo = gather_scalar(j, c0);
        if (p.width == 32u) { acc.hi = gather_scalar(j, c0 + 16u); }
    }
    var base = j * p.cols;
    var stride = 1u;
    if (p.transposed != 0u) {
        base = j;
        stride = p.m;
    }
    store4(base, stride, c0, acc.lo[0]);
    store4(base, stride, c0 + 4u, acc.lo[1]);
    store4(base, stride, c0 + 8u, acc.lo[2]);
    store4(base, stride, c0 + 12u, acc.lo[3]);
    if (p.width == 32u) {
        store4(base, stride, c0 + 16u, acc.hi[0]);
        store4(base, stride, c0 + 20u, acc.hi[1]);
        store4(base, stride, c0 + 24u, acc.hi[2]);
        store4(base, stride, c0 + 28u, acc.hi[3]);
    }
}
