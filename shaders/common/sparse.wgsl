// Prepended to every `sparse*.wgsl` (`kernels::source`): the family's one parameter block
// (`Params` in src/kernels/sparse.rs; each kernel reads the members its header names), the
// 1-D workgroup width, the CSC build's block and the folded 1-D index.

struct Params {
    rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, width: u32,
    instances: u32, instance_rows: u32, shared_y: u32, _p1: u32,
}

const WG: u32 = 64u;

// Rows per block of the CSC build (must match `CSC_BLOCK` in sparse.rs).
const BLOCK: u32 = 64u;

// The CSC build of an ensemble's stacked code (`instances` SAEs, each instance_rows rows of
// k latents among m / instances; idx names latents of the stacked dictionary): block b of
// the build is block `local` of instance `s`, its rows [first, end) within that instance's.
struct Block { s: u32, first: u32, end: u32, m: u32 }

fn block_of(b: u32) -> Block {
    let per = (p.instance_rows + BLOCK - 1u) / BLOCK;
    let s = b / per;
    let first = s * p.instance_rows + (b % per) * BLOCK;
    return Block(s, first, min(first + BLOCK, (s + 1u) * p.instance_rows), p.m / p.instances);
}

// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.
fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}
