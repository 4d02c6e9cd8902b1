// BatchTopK's radix select (the method, the keys and the state words: `batchtopk.wgsl`):
// `pick` fixes the next digit from the histogram and clears it.
//   Bindings (no uniform): 0 hist_p [256], 1 st_p [8]. One invocation.
// Prepended (`kernels::source`): shaders/common/batchtopk.wgsl — Params, WGS, PER, NONE, the S_* state words.

@group(0) @binding(0) var<storage, read_write> hist_p: array<u32, 256>;
@group(0) @binding(1) var<storage, read_write> st_p: array<u32, 8>;

@compute @workgroup_size(1)
fn pick() {
    let pass_ = st_p[S_PASS];
    if (st_p[S_DONE] == 0u && pass_ < PASSES) {
        let remaining = st_p[S_REMAINING];
        // Keys in higher bins than the chosen one: all kept.
        var above = 0u;
        var b = 255u;
        loop {
            let c = hist_p[b];
            if (above + c >= remaining || b == 0u) { break; }
            above += c;
            b -= 1u;
        }
        let left = remaining - above;
        let shift = 24u - 8u * (pass_ % 4u);
        let word = pass_ / 4u; // 0: hi, 1: lo
        st_p[S_PREFIX_HI + word] |= b << shift;
        st_p[S_MASK_HI + word] |= 255u << shift;
        st_p[S_REMAINING] = left;
        if (hist_p[b] == left) { st_p[S_DONE] = 1u; }
    }
    for (var i = 0u; i < 256u; i++) { hist_p[i] = 0u; }
    st_p[S_PASS] = pass_ + 1u;
}
