// Part of the TopK step's sparse products (the sparse form idx / val: `sparse.wgsl`).
// `code_gradient`: the gradient at the pre-activation of each active latent,
//   dval[r, t] = g[r, :] · dict[idx[r, t], :] where val[r, t] ≠ 0, else 0 (the
//   activation's derivative: a latent whose kept value is 0 passes nothing, as in
//   `activation_backward.wgsl`). g [rows, cols], dval [rows, k].
//   Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 g (both in the file this is prepended to), 5 dval. One invocation per 4 active latents of a row; where cols is
//   a multiple of 4, every step of 4 along cols loads five whole vec4s for 16 products
//   (lavapipe loads storage lane by lane, so one vec4 costs about what one scalar does).
//   Both paths sum along cols in the same order, so they agree bit for bit.
// Prepended (`kernels::source`) to the two files that bind dict and g and define their
// reads (`dict4`, `g4`: vec4 x of a row; `dict_at`, `g_at`: value e of the operand as one
// array), shaders/sparse_code_gradient.wgsl (storage buffers) and
// sparse_code_gradient_texture.wgsl (textures), after shaders/common/sparse.wgsl — Params,
// WG, BLOCK, linear.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<f32>;
@group(0) @binding(5) var<storage, read_write> dval: array<f32>;

// acc + a · b summed left to right (the order of the scalar path).
fn dot_after(acc: f32, a: vec4<f32>, b: vec4<f32>) -> f32 {
    return acc + a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}

// g[r, :] · dict[rows[q], :] for the four dictionary rows, cols a multiple of 4.
fn dots_vec4(r: u32, rows: vec4<u32>) -> vec4<f32> {
    let q = p.cols / 4u;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < q; c++) {
        let gv = g4(r, c);
        acc = vec4<f32>(dot_after(acc.x, gv, dict4(rows.x, c)), dot_after(acc.y, gv, dict4(rows.y, c)),
                        dot_after(acc.z, gv, dict4(rows.z, c)), dot_after(acc.w, gv, dict4(rows.w, c)));
    }
    return acc;
}

// The same for any cols, one scalar load per value.
fn dots_scalar(r: u32, rows: vec4<u32>) -> vec4<f32> {
    let d = rows * p.cols;
    var acc = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols; c++) {
        let gv = g_at(r * p.cols + c);
        acc += gv * vec4<f32>(dict_at(d.x + c), dict_at(d.y + c), dict_at(d.z + c), dict_at(d.w + c));
    }
    return acc;
}

@compute @workgroup_size(64)
fn code_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let groups = (p.k + 3u) / 4u;
    let i = linear(wg, nwg, li);
    let r = i / groups;
    let t0 = (i % groups) * 4u;
    if (r >= p.rows) { return; }
    // The row's entries t0 .. t0 + 3 (past k: the last one again, never stored).
    let last = r * p.k + p.k - 1u;
    let e = min(vec4<u32>(r * p.k + t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let rows = vec4<u32>(idx[e.x], idx[e.y], idx[e.z], idx[e.w]);
    // A uniform branch outside the loop: each path keeps its loop free of branches.
    var acc: vec4<f32>;
    if (p.cols % 4u == 0u) {
        acc = dots_vec4(r, rows);
    } else {
        acc = dots_scalar(r, rows);
    }
    for (var q = 0u; q < 4u; q++) {
        if (t0 + q < p.k) { dval[e[q]] = select(0.0, acc[q], val[e[q]] != 0.0); }
    }
}
