// Adam (Kingma & Ba 2015) with bias correction, one parameter tensor at a time:
//   m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²
//   p ← p − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
// The step t and the (scheduled) lr come from the per-step uniform, written by
// the trainer before each step's submit; β1, β2, ε and n are fixed at binding.
// Bindings: 0 hyper, 1 step, 2 param, 3 grad, 4 m, 5 v, all bound as vec4s (tensors are
// padded to 16 bytes; the padding's zeros stay zero). One invocation per 4 values: lavapipe
// loads storage lane by lane, one vec4 for about the price of one scalar.

struct Hyper { n: u32, beta1: f32, beta2: f32, eps: f32 }
struct Step { t: f32, lr: f32, _p0: f32, _p1: f32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> h: Hyper;
@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    if (i >= (h.n + 3u) / 4u) { return; }
    let g = grad[i];
    let mi = h.beta1 * m[i] + (1.0 - h.beta1) * g;
    let vi = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let mhat = mi / (1.0 - pow(h.beta1, s.t));
    let vhat = vi / (1.0 - pow(h.beta2, s.t));
    param[i] -= s.lr * mhat / (sqrt(vhat) + h.eps);
}
