// Adam (Kingma & Ba 2015) with bias correction, for one or two parameter tensors at once
// (an SAE's, in one dispatch):
//   m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²
//   p ← p − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)
// The step t and the (scheduled) lr come from the per-step uniform, written by
// the trainer before each step's submit; β1, β2, ε and the sizes n0, n1 (n1 = 0: one
// tensor; its bindings are placeholders) are fixed at binding.
// Bindings: 0 hyper, 1 step, 2 param0, 3 grad0, 4 m0, 5 v0, 6 param1, 7 grad1, 8 m1, 9 v1,
// all bound as vec4s (tensors are padded to 16 bytes; the padding's zeros stay zero).
// One invocation per 4 values: those of tensor 0, then those of tensor 1 (lavapipe loads
// storage lane by lane, one vec4 for about the price of one scalar).

struct Hyper { n0: u32, n1: u32, beta1: f32, beta2: f32, eps: f32, _p0: u32, _p1: u32, _p2: u32 }
struct Step { t: f32, lr: f32, _p0: f32, _p1: f32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> h: Hyper;
@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read_write> param0: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad0: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m0: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v0: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> param1: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> grad1: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> m1: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> v1: array<vec4<f32>>;

// One update of 4 values: the new moments and the parameter's change.
struct Update { m: vec4<f32>, v: vec4<f32>, dp: vec4<f32> }

fn adam4(g: vec4<f32>, m: vec4<f32>, v: vec4<f32>) -> Update {
    let mi = h.beta1 * m + (1.0 - h.beta1) * g;
    let vi = h.beta2 * v + (1.0 - h.beta2) * g * g;
    let mhat = mi / (1.0 - pow(h.beta1, s.t));
    let vhat = vi / (1.0 - pow(h.beta2, s.t));
    return Update(mi, vi, s.lr * mhat / (sqrt(vhat) + h.eps));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = (wg.y * nwg.x + wg.x) * WG + li;
    let q0 = (h.n0 + 3u) / 4u;
    if (i < q0) {
        let u = adam4(grad0[i], m0[i], v0[i]);
        m0[i] = u.m;
        v0[i] = u.v;
        param0[i] -= u.dp;
    } else if (i - q0 < (h.n1 + 3u) / 4u) {
        let j = i - q0;
        let u = adam4(grad1[j], m1[j], v1[j]);
        m1[j] = u.m;
        v1[j] = u.v;
        param1[j] -= u.dp;
    }
}
