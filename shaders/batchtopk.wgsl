// BatchTopK (Bussmann et al. 2024) over a whole batch a [rows, m] (n = rows·m values):
// keeps the kk = rows·k largest of relu(a), ordered (value descending, flat index
// ascending) — the order of TopK's rows — writes z [rows, m] = relu(a) there and 0
// elsewhere, and moves the inference threshold θ towards the smallest positive kept
// value: θ ← (1 − lr)·θ + lr·min{z > 0} (SAELens's BatchTopKTrainingSAE rule; θ stays
// put when nothing positive is kept).
//
// The selection is a radix select with integer counts only (no float atomics, the
// same result on every run). relu(a) ≥ 0, so its f32 bit pattern orders like its value
// (−0 and NaN are read as 0). Each value gets the unique 64-bit key
// (hi = value bits, lo = 0xFFFFFFFF − flat index): key order is exactly the (value
// descending, index ascending) order, so the kk kept values are the keys ≥ T, the
// kk-th largest key, and no separate tie pass is needed. T is found 8 bits at a time
// from the top, 8 digits (4 of hi, 4 of lo):
//   `start`      resets the histogram and the state (remaining rank = kk).
//   `histogram`  counts the next digit among the keys whose decided digits equal the
//                prefix so far: per workgroup in workgroup memory, then added to the
//                256 global bins (u32 atomics: the counts do not depend on order).
//   `pick`       walks the bins from 255 down and fixes the digit at which the running
//                count reaches the remaining rank; when that bin holds exactly the
//                remaining rank, every key under the prefix is kept, the select is done
//                and the undecided digits stay 0 (the smallest key with that prefix).
//                Later `histogram` / `pick` passes then do nothing.
//   `keep`       z = relu(a) where key ≥ T, else 0; the smallest positive kept value's
//                bits by u32 atomicMin (the minimum does not depend on order).
//   `threshold`  θ ← (1 − lr)·θ + lr·that value.
//
// One file per binding layout: `start` here, the other passes in `batchtopk_*.wgsl`.
// Bindings: 0 p (uniform), then
//   start:     1 hist_w [256], 2 st_w [8]
//   histogram: 1 a [n], 2 hist [256] (atomic), 3 st [8]
//   pick:      (no uniform) 0 hist_p [256], 1 st_p [8]
//   keep:      1 a, 2 z [n], 3 st_a [8] (atomic)
//   threshold: 1 st, 2 theta [1]
// Dispatch: `histogram` and `keep` one 256-wide workgroup per TILE = 256·PER values,
// grid folded into 2-D (group = wg.y·nwg.x + wg.x); `start` one workgroup of 256;
// `pick` and `threshold` one invocation. Workgroup memory: 1 KiB.
// State words: the S_* constants of common/batchtopk.wgsl.
// Prepended (`kernels::source`): shaders/common/batchtopk.wgsl — Params, WGS, PER, NONE, the S_* state words.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> hist_w: array<u32, 256>;
@group(0) @binding(2) var<storage, read_write> st_w: array<u32, 8>;

@compute @workgroup_size(256)
fn start(@builtin(local_invocation_index) li: u32) {
    hist_w[li] = 0u;
    if (li < 8u) {
        var v = 0u;
        if (li == S_REMAINING) { v = p.kk; }
        if (li == S_MIN) { v = NONE; }
        st_w[li] = v;
    }
}
