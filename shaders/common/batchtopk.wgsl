// Prepended to every `batchtopk*.wgsl` (`kernels::source`): the family's parameter block
// (`Params` in src/kernels/batchtopk.rs; `pick` binds none), the tile shape of `histogram`
// and `keep`, and the state words (the method and what each word holds: `batchtopk.wgsl`).

struct Params { n: u32, kk: u32, lr: f32, _p0: u32 }

// `histogram` and `keep`: 256 invocations a workgroup, PER values each.
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
