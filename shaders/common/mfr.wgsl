// Prepended to every `mfr_*.wgsl` (`kernels::source`): the family's one parameter block
// (`Params` in src/kernels/mfr.rs: ma, mb the dictionaries' rows, d their width, scale the
// gradient's factor, lo, hi, chunk `mfr_max_tiles.wgsl`'s rows, fresh the gradient kernels'
// overwrite flag), the per-step uniform the gradient reads (weight = λ·w(t)), the 1-D
// workgroup width and the folded 1-D index.

struct Params { ma: u32, mb: u32, d: u32, scale: f32, lo: u32, hi: u32, chunk: u32, fresh: u32 }
struct Step { weight: f32, _p0: f32, _p1: f32, _p2: f32 }

const WG: u32 = 64u;

// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.
fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}
