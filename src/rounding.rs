//! Stochastic rounding of `f32` results into bf16 and f16 weights.
//!
//! Round-to-nearest loses every update smaller than half a unit in the last place of the
//! stored weight: a bf16 weight of 1.0 never moves under updates below `2^-9`. Stochastic
//! rounding rounds up with probability equal to the distance to the lower neighbour (in units
//! of their spacing), so the stored weight is right *on average* and small updates accumulate.
//!
//! The random bits are a counter-based hash, so they depend only on (seed, step, element
//! index), never on the backend, the chunking or the thread count:
//!
//! ```text
//! key          = splitmix64(seed ^ splitmix64(step))                    (64 bits, per call)
//! bits(index)  = mix32(mix32(lo(index) ^ lo(key)) ^ hi(index) ^ hi(key))
//! mix32(x)     = x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
//! ```
//!
//! where `mix32` is Chris Wellons' "lowbias32" and `lo`/`hi` are the low and high 32 bits;
//! [`stochastic_bits`] computes it. The index is the element's position in the tensor plus the
//! call's index base (in a multi-tensor call, tensors are numbered one after the other).
//!
//! With those bits `r`, a finite value `x` becomes (infinities and NaNs round to nearest):
//!
//! - bf16: `bits(x) + (r >> 16)` with its low 16 bits cleared. A carry rolls into the exponent,
//!   so binade boundaries are handled.
//! - f16, `|x| >= 2^-24`: the same with the `k` low bits that the f16 grid drops at `x`'s
//!   exponent (`k = 13` for normal halves, up to 23 in the subnormal range), `r` masked to `k`
//!   bits.
//! - f16, `|x| < 2^-24`: `2^-24` (the smallest subnormal) if `u < |x| / 2^-24` for `u`
//!   uniform in `[0, 1)` on 23 bits of `r`, else 0; with the sign of `x`.
//!
//! The result lies on the grid of the stored type, and is then stored exactly. Values beyond
//! the largest finite half (65504) can round up to infinity, as the next value up.

use pulp::Simd;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^ (x >> 16)
}

/// The per-call key of the random stream: (seed, step) mixed into 64 bits, split in halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamKey {
    lo: u32,
    hi: u32,
}

impl StreamKey {
    pub(crate) fn new(seed: u64, step: u64) -> StreamKey {
        let k = splitmix64(seed ^ splitmix64(step));
        StreamKey {
            lo: k as u32,
            hi: (k >> 32) as u32,
        }
    }
}

/// The 32 random bits that stochastic rounding uses for element `index` at `step` with `seed`:
/// the reference every backend reproduces (see the module documentation).
pub fn stochastic_bits(seed: u64, step: u64, index: u64) -> u32 {
    let key = StreamKey::new(seed, step);
    mix32(mix32(index as u32 ^ key.lo) ^ (index >> 32) as u32 ^ key.hi)
}

#[inline(always)]
fn shr<S: Simd>(simd: S, x: S::u32s, amount: u32) -> S::u32s {
    simd.wrapping_dyn_shr_u32s(x, simd.splat_u32s(amount))
}

#[inline(always)]
fn mix32_lanes<S: Simd>(simd: S, x: S::u32s) -> S::u32s {
    let x = simd.xor_u32s(x, shr(simd, x, 16));
    let x = simd.mul_u32s(x, simd.splat_u32s(0x7FEB_352D));
    let x = simd.xor_u32s(x, shr(simd, x, 15));
    let x = simd.mul_u32s(x, simd.splat_u32s(0x846C_A68B));
    simd.xor_u32s(x, shr(simd, x, 16))
}

/// `0, 1, 2, ...` in the lanes of a vector.
static IOTA: [u32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The random bits of the `S::U32_LANES` consecutive elements starting at `index`.
#[inline(always)]
pub(crate) fn lane_bits<S: Simd>(simd: S, key: StreamKey, index: u64) -> S::u32s {
    const { assert!(S::U32_LANES <= 16) };
    // SAFETY: IOTA holds 16 >= U32_LANES values; u32s is a plain array of u32 (Pod).
    let iota = unsafe { IOTA.as_ptr().cast::<S::u32s>().read_unaligned() };
    let base_lo = simd.splat_u32s(index as u32);
    let lo = simd.add_u32s(base_lo, iota);
    // A lane whose low half wrapped past 2^32 carries into the high half.
    let wrapped = simd.less_than_u32s(lo, base_lo);
    let carry = simd.select_u32s(wrapped, simd.splat_u32s(1), simd.splat_u32s(0));
    let hi = simd.add_u32s(simd.splat_u32s((index >> 32) as u32), carry);
    let first = mix32_lanes(simd, simd.xor_u32s(lo, simd.splat_u32s(key.lo)));
    mix32_lanes(
        simd,
        simd.xor_u32s(simd.xor_u32s(first, hi), simd.splat_u32s(key.hi)),
    )
}

/// `x` stochastically rounded onto the bf16 grid (still as `f32`), with random bits `r`.
#[inline(always)]
pub(crate) fn onto_bf16_grid<S: Simd>(simd: S, x: S::f32s, r: S::u32s) -> S::f32s {
    let bits = simd.transmute_u32s_f32s(x);
    let magnitude = simd.and_u32s(bits, simd.splat_u32s(0x7FFF_FFFF));
    let finite = simd.less_than_u32s(magnitude, simd.splat_u32s(0x7F80_0000));
    // The magnitude stays below 0x7F81_0000, so the sign bit is never touched.
    let rounded = simd.and_u32s(
        simd.add_u32s(bits, shr(simd, r, 16)),
        simd.splat_u32s(0xFFFF_0000),
    );
    simd.transmute_f32s_u32s(simd.select_u32s(finite, rounded, bits))
}

/// `x` stochastically rounded onto the f16 grid (still as `f32`), with random bits `r`.
#[inline(always)]
pub(crate) fn onto_f16_grid<S: Simd>(simd: S, x: S::f32s, r: S::u32s) -> S::f32s {
    let bits = simd.transmute_u32s_f32s(x);
    let sign = simd.and_u32s(bits, simd.splat_u32s(0x8000_0000));
    let magnitude = simd.and_u32s(bits, simd.splat_u32s(0x7FFF_FFFF));
    let finite = simd.less_than_u32s(magnitude, simd.splat_u32s(0x7F80_0000));
    let exponent = shr(simd, magnitude, 23);
    // Bits the f16 grid drops below x: 13 for normal halves, 126 - exponent below 2^-14.
    let dropped = simd.sub_u32s(
        simd.splat_u32s(126),
        simd.min_u32s(exponent, simd.splat_u32s(126)),
    );
    let dropped = simd.min_u32s(
        simd.max_u32s(dropped, simd.splat_u32s(13)),
        simd.splat_u32s(23),
    );
    let mask = simd.sub_u32s(
        simd.wrapping_dyn_shl_u32s(simd.splat_u32s(1), dropped),
        simd.splat_u32s(1),
    );
    let noisy = simd.add_u32s(magnitude, simd.and_u32s(r, mask));
    let on_grid = simd.and_u32s(noisy, simd.not_u32s(mask));
    // Below 2^-24 the neighbours are 0 and 2^-24: round up with probability |x| / 2^-24.
    let uniform = simd.sub_f32s(
        simd.transmute_f32s_u32s(simd.or_u32s(simd.splat_u32s(0x3F80_0000), shr(simd, r, 9))),
        simd.splat_f32s(1.0),
    );
    let scaled = simd.mul_f32s(
        simd.transmute_f32s_u32s(magnitude),
        simd.splat_f32s(16_777_216.0),
    );
    let up = simd.less_than_f32s(uniform, scaled);
    let tiny = simd.select_u32s(up, simd.splat_u32s(0x3380_0000), simd.splat_u32s(0));
    let below = simd.less_than_u32s(exponent, simd.splat_u32s(103));
    let result = simd.or_u32s(simd.select_u32s(below, tiny, on_grid), sign);
    simd.transmute_f32s_u32s(simd.select_u32s(finite, result, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_the_scalar_reference() {
        let simd = pulp::Scalar512b;
        for (seed, step, index) in [
            (0u64, 1u64, 0u64),
            (7, 3, u32::MAX as u64 - 5),
            (1 << 40, 9, 1 << 33),
        ] {
            let key = StreamKey::new(seed, step);
            let lanes: [u32; 16] = pulp::cast(lane_bits(simd, key, index));
            for (j, bits) in lanes.iter().enumerate() {
                assert_eq!(
                    *bits,
                    stochastic_bits(seed, step, index + j as u64),
                    "lane {j}"
                );
            }
        }
    }

    #[test]
    fn grid_values_are_exact_in_the_stored_type() {
        let simd = pulp::Scalar::new();
        for bits in (0..=u32::MAX).step_by(65_537) {
            let x = f32::from_bits(bits);
            for r in [0u32, 1, 0x1234_5678, u32::MAX] {
                let b = onto_bf16_grid(simd, x, r);
                let h = onto_f16_grid(simd, x, r);
                if x.is_finite() {
                    assert_eq!(
                        half::bf16::from_f32(b).to_f32().to_bits(),
                        b.to_bits(),
                        "bf16 {x:e}"
                    );
                    if h.abs() < 65520.0 {
                        assert_eq!(
                            half::f16::from_f32(h).to_f32().to_bits(),
                            h.to_bits(),
                            "f16 {x:e}"
                        );
                    } else {
                        // Beyond the largest half: stored as the infinity of its sign.
                        assert!(half::f16::from_f32(h).is_infinite(), "f16 {x:e}");
                    }
                }
            }
        }
    }
}

/// Stochastic rounding of bf16 and f16 weights (see this module): the seed of the random
/// stream, and the global index of the first element of a single-tensor call (a multi-tensor
/// call numbers its tensors' elements one after the other from there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StochasticRounding {
    /// The seed of the random stream.
    pub seed: u64,
    /// The global index of the first element.
    pub index_base: u64,
}

impl StochasticRounding {
    /// Stochastic rounding with this seed, numbering elements from 0.
    pub const fn new(seed: u64) -> StochasticRounding {
        StochasticRounding {
            seed,
            index_base: 0,
        }
    }
}

/// What a call does with subnormal values: the crate's subnormal policy, chosen per
/// [`Executor`](crate::Executor) ([`with_subnormals`](crate::Executor::with_subnormals)) and
/// per [`StatefulOptimizer`](crate::StatefulOptimizer).
///
/// Subnormal `f32`s (magnitude below `2^-126`, [`f32::MIN_POSITIVE`]) are where some CPUs
/// slow down: Intel's cores take a microcode assist for an arithmetic operation on one (up to
/// about a hundred cycles), AMD's Zen cores do not. They are what optimizer state turns into
/// where gradients are zero: `v = 0.9*v` decays to `2^-149` and stays there (`0.9 * 2^-149`
/// rounds back to `2^-149`), so every later step pays for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Subnormals {
    /// IEEE 754: subnormal values are read, computed and stored like any other (the default;
    /// the results of PyTorch's CPU optimizers).
    #[default]
    Keep,
    /// Every value a step reads (weights, state and gradient, after widening to `f32`, before
    /// the gradient multiplier) and every result it stores (weights, state and model copy,
    /// before narrowing to the buffer's type and before stochastic rounding) whose magnitude is below
    /// `2^-126` becomes a zero of its sign. Nothing else is flushed: the operations inside an
    /// optimizer's formula keep subnormal intermediate results (the hardware's flush-to-zero
    /// and denormals-are-zero modes stay off, see the crate's numerics contract), so results
    /// are the same bits on every backend (scalar included) and thread count.
    ///
    /// `f16` buffers have subnormals of their own (`2^-24` to `2^-14`): as `f32` they are
    /// normal, so they are kept (they cost nothing: the arithmetic is in `f32`). bf16's are
    /// `f32` subnormals and are flushed. The conversions ([`Executor::convert`]) and the
    /// gradient norm ([`Executor::grad_norm`], and the check of
    /// [`Executor::check_and_step`]) read values as they are under either policy.
    ///
    /// [`Executor::convert`]: crate::Executor::convert
    /// [`Executor::grad_norm`]: crate::Executor::grad_norm
    /// [`Executor::check_and_step`]: crate::Executor::check_and_step
    Flush,
}

impl Subnormals {
    /// The lower-case name (`"keep"`, `"flush"`).
    pub const fn name(self) -> &'static str {
        match self {
            Subnormals::Keep => "keep",
            Subnormals::Flush => "flush",
        }
    }
}

/// [`Subnormals::Flush`] on one vector: each lane whose magnitude is below `2^-126` becomes
/// the zero of its sign. Bit operations, a comparison and a select: no arithmetic on the small
/// values (which is what costs on CPUs that penalize them), the same bits on every backend.
#[inline(always)]
pub(crate) fn flush_subnormals<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let tiny = simd.less_than_f32s(simd.abs_f32s(x), simd.splat_f32s(f32::MIN_POSITIVE));
    simd.select_f32s(tiny, simd.and_f32s(x, simd.splat_f32s(-0.0)), x)
}
