// BatchTopK's radix select (the method, the keys and the state words: `batchtopk.wgsl`):
// `threshold`: θ ← (1 − lr)·θ + lr·(the smallest positive kept value), θ kept when none.
//   Bindings: 0 p, 1 st_t [8], 2 theta [1]. One invocation.

struct Params { n: u32, kk: u32, lr: f32, _p0: u32 }

const NONE: u32 = 0xFFFFFFFFu;
// The state words, as in `batchtopk.wgsl`.
const S_PREFIX_HI: u32 = 0u;
const S_PREFIX_LO: u32 = 1u;
const S_MASK_HI: u32 = 2u;
const S_MASK_LO: u32 = 3u;
const S_REMAINING: u32 = 4u;
const S_PASS: u32 = 5u;
const S_DONE: u32 = 6u;
const S_MIN: u32 = 7u;
const PASSES: u32 = 8u;

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
