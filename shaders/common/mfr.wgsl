// Prepended to every `mfr_*.wgsl` (`kernels::source`): the family's parameter block of one
// pair (`Params` in src/kernels/mfr.rs: ma, mb the dictionaries' rows, d their width, scale
// the gradient's factor, lo, hi, chunk `mfr_max_tiles.wgsl`'s rows, fresh the gradient
// kernels' overwrite flag) and of every pair of a stacked ensemble at once (`Pairs`: n SAEs of
// m latents, dictionaries stacked [n·m, d]), the per-step uniform the gradient reads (weight =
// λ·w(t)), the 1-D workgroup width, the folded 1-D index and the pairs' order.

struct Params { ma: u32, mb: u32, d: u32, scale: f32, lo: u32, hi: u32, chunk: u32, fresh: u32 }
struct Pairs { n: u32, m: u32, d: u32, scale: f32 }
struct Step { weight: f32, _p0: f32, _p1: f32, _p2: f32 }

const WG: u32 = 64u;

// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.
fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// The index of pair (a, b), a < b < n, in `crate::mfr::pairs` order: (0,1), (0,2), …, (1,2), ….
fn pair_index(a: u32, b: u32, n: u32) -> u32 {
    return a * n - a * (a + 1u) / 2u + (b - a - 1u);
}

// The pair (a, b) of index p < n(n−1)/2: `pair_index`'s inverse.
fn pair_of(p: u32, n: u32) -> vec2<u32> {
    var a = 0u;
    var rest = p;
    while (rest >= n - 1u - a) {
        rest -= n - 1u - a;
        a += 1u;
    }
    return vec2<u32>(a, a + 1u + rest);
}
