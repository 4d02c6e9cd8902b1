// BatchTopK's radix select (the method, the keys and the state words: `batchtopk.wgsl`):
// `threshold`: θ ← (1 − lr)·θ + lr·(the smallest positive kept value), θ kept when none.
//   Bindings: 0 p, 1 st_t [8], 2 theta [1]. One invocation.
// Prepended (`kernels::source`): shaders/common/batchtopk.wgsl — Params, WGS, PER, NONE, the S_* state words.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> st_t: array<u32, 8>;
@group(0) @binding(2) var<storage, read_write> theta: array<f32, 1>;

@compute @workgroup_size(1)
fn threshold() {
    let bits = st_t[S_MIN];
    if (bits != NONE) {
        theta[0] = (1.0 - p.lr) * theta[0] + p.lr * bitcast<f32>(bits);
    }
}
