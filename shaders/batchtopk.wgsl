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
// Bindings: 0 p (uniform), then
//   start:     1 hist_w [256], 2 st_w [8]
//   histogram: 1 a [n], 2 hist [256] (atomic), 3 st [8]
//   pick:      (no uniform) 0 hist_p [256], 1 st_p [8]
//   keep:      1 a, 2 z [n], 3 st_a [8] (atomic)
//   threshold: 1 st, 2 theta [1]
// Dispatch: `histogram` and `keep` one 256-wide workgroup per TILE = 256·PER values,
// grid folded into 2-D (group = wg.y·nwg.x + wg.x); `start` one workgroup of 256;
// `pick` and `threshold` one invocation. Workgroup memory: 1 KiB.
// State words: see the S_* constants.

struct Params { n: u32, kk: u32, lr: f32, _p0: u32 }

const WGS: u32 = 256u;
const PER: u32 = 16u;
const NONE: u32 = 0xFFFFFFFFu;
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

@group(0) @binding(1) var<storage, read_write> hist_w: array<u32, 256>;
@group(0) @binding(2) var<storage, read_write> st_w: array<u32, 8>;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>, 256>;
@group(0) @binding(3) var<storage, read> st: array<u32, 8>;

@group(0) @binding(2) var<storage, read_write> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> st_a: array<atomic<u32>, 8>;

@group(0) @binding(0) var<storage, read_write> hist_p: array<u32, 256>;
@group(0) @binding(1) var<storage, read_write> st_p: array<u32, 8>;

@group(0) @binding(1) var<storage, read> st_t: array<u32, 8>;
@group(0) @binding(2) var<storage, read_write> theta: array<f32, 1>;

var<workgroup> local_hist: array<atomic<u32>, 256>;
var<workgroup> local_min: atomic<u32>;
var<workgroup> skip: u32;

// The key of value i: (bits of relu(a[i]), 0xFFFFFFFF − i).
fn key_of(i: u32) -> vec2<u32> {
    let v = a[i];
    var bits = 0u;
    if (v > 0.0) { bits = bitcast<u32>(v); }
    return vec2<u32>(bits, NONE - i);
}

fn tile_start(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WGS * PER;
}

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

@compute @workgroup_size(256)
fn histogram(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    atomicStore(&local_hist[li], 0u);
    if (li == 0u) { skip = st[S_DONE]; }
    if (workgroupUniformLoad(&skip) != 0u) { return; }
    let pass_ = st[S_PASS];
    let prefix = vec2<u32>(st[S_PREFIX_HI], st[S_PREFIX_LO]);
    let mask = vec2<u32>(st[S_MASK_HI], st[S_MASK_LO]);
    let shift = 24u - 8u * (pass_ % 4u);
    let base = tile_start(wg, nwg);
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WGS + li;
        if (i < p.n) {
            let key = key_of(i);
            if (all((key & mask) == prefix)) {
                let word = select(key.y, key.x, pass_ < 4u);
                atomicAdd(&local_hist[(word >> shift) & 255u], 1u);
            }
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_hist[li]);
    if (c != 0u) { atomicAdd(&hist[li], c); }
}

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

@compute @workgroup_size(256)
fn keep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    if (li == 0u) { atomicStore(&local_min, NONE); }
    workgroupBarrier();
    let t = vec2<u32>(atomicLoad(&st_a[S_PREFIX_HI]), atomicLoad(&st_a[S_PREFIX_LO]));
    let base = tile_start(wg, nwg);
    for (var r = 0u; r < PER; r++) {
        let i = base + r * WGS + li;
        if (i < p.n) {
            let key = key_of(i);
            let kept = key.x > t.x || (key.x == t.x && key.y >= t.y);
            var out = 0.0;
            if (kept) {
                out = bitcast<f32>(key.x);
                if (key.x != 0u) { atomicMin(&local_min, key.x); }
            }
            z[i] = out;
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        let v = atomicLoad(&local_min);
        if (v != NONE) { atomicMin(&st_a[S_MIN], v); }
    }
}

@compute @workgroup_size(1)
fn threshold() {
    let bits = st_t[S_MIN];
    if (bits != NONE) {
        theta[0] = (1.0 - p.lr) * theta[0] + p.lr * bitcast<f32>(bits);
    }
}
