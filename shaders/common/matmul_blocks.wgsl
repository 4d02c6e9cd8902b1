// Prepended (`kernels::source`) to matmul_register.wgsl and matmul_texture.wgsl, the two
// register-blocked variants (the wrapper, src/kernels/matmul.rs, appends the entry point it
// generates for them): their parameters, the bindings they share (0 params, 3 bias, 4 c;
// each file binds a and b its own way) and `store`. `inst` holds, per instance, where its
// operands start (each file's `set_instance` sets it; .z and .w: bias and c, in values).

struct Params {
    m: u32, n: u32, k: u32, has_bias: u32,
    alpha: f32, stride_a: u32, stride_b: u32, stride_bias: u32,
    stride_c: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<private> inst: vec4<u32>;

// Stores the 4×4 block acc (column c holds C(i0..i0+3, j0 + c)) where it lies inside C.
fn store(i0: u32, j0: u32, acc: mat4x4<f32>) {
    for (var cc = 0u; cc < 4u; cc++) {
        let j = j0 + cc;
        var add = 0.0;
        if (p.has_bias != 0u && j < p.n) { add = bias[inst.z + j]; }
        for (var r = 0u; r < 4u; r++) {
            let i = i0 + r;
            if (i < p.m && j < p.n) { c[inst.w + i * p.n + j] = p.alpha * acc[cc][r] + add; }
        }
    }
}
