// Mutual Feature Regularization between the unit-row dictionaries of two SAEs,
// without storing their m×m similarity matrix S = ua · ubᵀ.
//
// `similarity`: for each latent j of SAE b (row j of ub [m, d]):
//   mode 0 (MMCS_max):   sim[j] = max_i ua[i]·ub[j], assign[j] = argmax_i (ties → lowest i)
//   mode 1 (MMCS_match): sim[j] = ua[assign[j]]·ub[j], assign given (the CPU's optimal matching)
//   so MMCS = mean_j sim[j] either way.
//   Bindings: 0 p, 1 ua, 2 ub, 3 assign (u32), 4 sim. One invocation per j, 64 a group.
// `gradient`: the gradient of c · Σ_j S[assign[j], j], c = scale · step.weight, w.r.t. both
//   dictionaries, added to ga and gb [m, d]:
//     gb[j] += c · ua[assign[j]]
//     ga[i] += c · Σ_{j : assign[j] = i} ub[j]
//   (MFR: scale = −1 / (pairs · m) and weight = λ·w(t), the per-step uniform, so that this is
//   the gradient of λ·w(t)·mean_pairs(1 − MMCS).) Invocation r writes gb[r] and ga[r] only,
//   so there are no write conflicts. Bindings: 0 g, 1 step, 2 ua, 3 ub, 4 assign, 5 ga, 6 gb.

struct Params { m: u32, d: u32, mode: u32, _p0: u32 }
struct Grad { m: u32, d: u32, scale: f32, _p0: u32 }
struct Step { weight: f32, _p0: f32, _p1: f32, _p2: f32 }

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ua: array<f32>;
@group(0) @binding(2) var<storage, read> ub: array<f32>;
@group(0) @binding(3) var<storage, read_write> assign: array<u32>;
@group(0) @binding(4) var<storage, read_write> sim: array<f32>;

@group(0) @binding(0) var<uniform> g: Grad;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> ga_u: array<f32>;
@group(0) @binding(3) var<storage, read> gb_u: array<f32>;
@group(0) @binding(4) var<storage, read> g_assign: array<u32>;
@group(0) @binding(5) var<storage, read_write> ga: array<f32>;
@group(0) @binding(6) var<storage, read_write> gb: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

fn dot_rows(i: u32, j: u32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.d; c++) { s += ua[i * p.d + c] * ub[j * p.d + c]; }
    return s;
}

@compute @workgroup_size(64)
fn similarity(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let j = linear(wg, nwg, li);
    if (j >= p.m) { return; }
    if (p.mode == 1u) {
        sim[j] = dot_rows(assign[j], j);
        return;
    }
    var best = dot_rows(0u, j);
    var arg = 0u;
    for (var i = 1u; i < p.m; i++) {
        let s = dot_rows(i, j);
        if (s > best) { best = s; arg = i; }
    }
    sim[j] = best;
    assign[j] = arg;
}

@compute @workgroup_size(64)
fn gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let r = linear(wg, nwg, li);
    if (r >= g.m) { return; }
    let c = g.scale * step.weight;
    let partner = g_assign[r];
    for (var k = 0u; k < g.d; k++) { gb[r * g.d + k] += c * ga_u[partner * g.d + k]; }
    for (var j = 0u; j < g.m; j++) {
        if (g_assign[j] == r) {
            for (var k = 0u; k < g.d; k++) { ga[r * g.d + k] += c * gb_u[j * g.d + k]; }
        }
    }
}
