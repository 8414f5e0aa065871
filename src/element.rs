//! The element types a buffer may hold (`f32`, [`f16`](struct@crate::f16), [`bf16`]) and the conversions between
//! them and `f32`.
//!
//! Every kernel computes in `f32`. Half-precision values widen to `f32` exactly, and results
//! narrow back with round-to-nearest-even:
//!
//! - `f32 -> bf16` gives the bits of `half::bf16::from_f32` for every one of the 2^32 inputs:
//!   subnormals are kept (never flushed), a NaN stays a NaN with its sign and the top of its
//!   payload, with the quiet bit set.
//! - `f32 -> f16` gives the bits of `half::f16::from_f32` for every non-NaN input (overflow goes
//!   to infinity, subnormal results are rounded, not flushed); a NaN stays a NaN with its sign.
//!
//! The scalar functions in this module are the crate's reference conversions: the scalar
//! backend uses them, and every vectorized backend is tested against them on all 2^32 (or
//! 2^16) inputs.

use core::fmt::Debug;

pub use half::{bf16, f16};

/// The type of the elements of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16 ([`half::f16`]).
    F16,
    /// bfloat16 ([`half::bf16`]): the top half of an `f32`.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The lower-case name (`"f32"`, `"f16"`, `"bf16"`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl core::fmt::Display for DType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) use sealed::{Slice, SliceMut};

pub(crate) mod sealed {
    use super::{bf16, f16};

    /// A buffer of one of the three element types, the type known at run time: what the generic
    /// calls hand to the crate's own compiled kernels (see [`Sealed`]).
    pub enum Slice<'a> {
        F32(&'a [f32]),
        F16(&'a [f16]),
        BF16(&'a [bf16]),
    }

    /// A mutable [`Slice`].
    pub enum SliceMut<'a> {
        F32(&'a mut [f32]),
        F16(&'a mut [f16]),
        BF16(&'a mut [bf16]),
    }

    impl SliceMut<'_> {
        /// The element type.
        pub fn dtype(&self) -> super::DType {
            match self {
                SliceMut::F32(_) => super::DType::F32,
                SliceMut::F16(_) => super::DType::F16,
                SliceMut::BF16(_) => super::DType::BF16,
            }
        }
    }

    /// Seals [`Element`](super::Element): the kernels know how to load and store exactly
    /// these three types.
    ///
    /// It also turns a typed buffer into a [`Slice`] and back. The public calls are generic
    /// over the element types but only wrap them into slices with a run-time type and call a
    /// function that is not generic, which picks the kernel: so every kernel is compiled once,
    /// in this crate, and a caller's crate compiles only the thin wrappers, whatever types it
    /// uses.
    pub trait Sealed: Sized {
        fn erase(buffer: &[Self]) -> Slice<'_>;
        fn erase_mut(buffer: &mut [Self]) -> SliceMut<'_>;
        /// The typed buffer back, if it holds this type.
        fn restore_mut(buffer: SliceMut<'_>) -> Option<&mut [Self]>;
    }

    macro_rules! sealed {
        ($($t:ty: $variant:ident),+) => {$(
            impl Sealed for $t {
                #[inline]
                fn erase(buffer: &[Self]) -> Slice<'_> {
                    Slice::$variant(buffer)
                }
                #[inline]
                fn erase_mut(buffer: &mut [Self]) -> SliceMut<'_> {
                    SliceMut::$variant(buffer)
                }
                #[inline]
                fn restore_mut(buffer: SliceMut<'_>) -> Option<&mut [Self]> {
                    match buffer {
                        SliceMut::$variant(b) => Some(b),
                        _ => None,
                    }
                }
            }
        )+};
    }
    sealed!(f32: F32, f16: F16, bf16: BF16);
}

/// An element type a kernel can read and write: `f32`, [`f16`](struct@crate::f16) or [`bf16`].
///
/// This trait is sealed: the kernels know how to load and store exactly these three types.
pub trait Element:
    sealed::Sealed + Copy + Default + PartialEq + Debug + Send + Sync + 'static
{
    /// Which of the three types this is.
    const DTYPE: DType;
    /// Zero (positive).
    const ZERO: Self;
    /// Widens to `f32` (exact).
    fn to_f32(self) -> f32;
    /// Narrows from `f32` with round-to-nearest-even, bit for bit as every backend does.
    fn from_f32(value: f32) -> Self;
    /// The value's bit pattern (in the low 16 bits for `f16` and `bf16`).
    fn to_bits32(self) -> u32;
    /// The value of a bit pattern (the low 16 bits for `f16` and `bf16`).
    fn from_bits32(bits: u32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        value
    }
    #[inline(always)]
    fn to_bits32(self) -> u32 {
        self.to_bits()
    }
    #[inline(always)]
    fn from_bits32(bits: u32) -> Self {
        f32::from_bits(bits)
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    const ZERO: Self = f16::ZERO;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16_bits_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        f16::from_bits(f32_to_f16_bits(value))
    }
    #[inline(always)]
    fn to_bits32(self) -> u32 {
        u32::from(self.to_bits())
    }
    #[inline(always)]
    fn from_bits32(bits: u32) -> Self {
        f16::from_bits(bits as u16)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    const ZERO: Self = bf16::ZERO;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16_bits_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn from_f32(value: f32) -> Self {
        bf16::from_bits(f32_to_bf16_bits(value))
    }
    #[inline(always)]
    fn to_bits32(self) -> u32 {
        u32::from(self.to_bits())
    }
    #[inline(always)]
    fn from_bits32(bits: u32) -> Self {
        bf16::from_bits(bits as u16)
    }
}

/// Widens bfloat16 bits to `f32`: the bits become the top half of the `f32` (exact, NaN
/// payloads included).
#[inline(always)]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Narrows an `f32` to bfloat16 bits with round-to-nearest-even.
///
/// A NaN keeps its sign and the top 7 bits of its payload, and gets the quiet bit, as
/// `half::bf16::from_f32` does. Subnormals round like any other value.
#[inline(always)]
pub fn f32_to_bf16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    if x & 0x7FFF_FFFF > 0x7F80_0000 {
        return ((x >> 16) | 0x0040) as u16;
    }
    // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry out of
    // the mantissa correctly bumps the exponent (up to infinity).
    let lsb = (x >> 16) & 1;
    ((x + 0x7FFF + lsb) >> 16) as u16
}

/// Widens IEEE binary16 bits to `f32` (exact).
///
/// Subnormal halves become normal `f32`s; infinities stay infinite; a NaN keeps its sign and
/// payload and gets the quiet bit (as the F16C and NEON conversion instructions do).
#[inline(always)]
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    let h = u32::from(bits);
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1F;
    let man = h & 0x03FF;
    let out = if exp == 0x1F {
        if man == 0 {
            sign | 0x7F80_0000
        } else {
            sign | 0x7FC0_0000 | (man << 13)
        }
    } else if exp != 0 {
        sign | ((exp + (127 - 15)) << 23) | (man << 13)
    } else if man == 0 {
        sign
    } else {
        // Subnormal: value = man * 2^-24. Normalise so that the leading one becomes implicit.
        let shift = man.leading_zeros() - 21; // 1..=10: moves the leading one to bit 10
        let man = (man << shift) & 0x03FF;
        let exp = 127 - 15 + 1 - shift;
        sign | (exp << 23) | (man << 13)
    };
    f32::from_bits(out)
}

/// Narrows an `f32` to IEEE binary16 bits with round-to-nearest-even.
///
/// Overflow gives infinity; results below the smallest normal half are rounded to a subnormal
/// (or zero), never flushed. A NaN keeps its sign and the top 10 bits of its payload, and gets
/// the quiet bit.
#[inline(always)]
pub fn f32_to_f16_bits(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let abs = x & 0x7FFF_FFFF;
    if abs >= 0x7F80_0000 {
        // Infinity, or NaN (quiet bit set, top of the payload kept).
        let nan = if abs > 0x7F80_0000 {
            0x0200 | ((abs >> 13) & 0x03FF) as u16
        } else {
            0
        };
        return sign | 0x7C00 | nan;
    }
    if abs >= 0x4780_0000 {
        // |x| >= 65536: beyond the largest finite half (65504) even before rounding.
        return sign | 0x7C00;
    }
    if abs >= 0x3880_0000 {
        // Normal half (|x| >= 2^-14). Rebias the exponent, then round the 13 dropped bits to
        // nearest even; a carry rolls into the exponent, up to infinity, as it should.
        let rebased = abs - ((127 - 15) << 23);
        let lsb = (rebased >> 13) & 1;
        return sign | ((rebased + 0x0FFF + lsb) >> 13) as u16;
    }
    if abs < 0x3300_0000 {
        // |x| < 2^-25: rounds to zero (2^-25 itself is a tie with the even zero).
        return sign;
    }
    // Subnormal half: value / 2^-24, rounded to nearest even. The full mantissa (with its
    // implicit one) is shifted right by 14..=24 - (exponent - 102).
    let exp = abs >> 23; // 102..=112
    let man = (abs & 0x007F_FFFF) | 0x0080_0000;
    let shift = 126 - exp; // 14..=24
    let kept = man >> shift;
    let rest = man & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let round_up = rest > half || (rest == half && kept & 1 == 1);
    sign | (kept + u32::from(round_up)) as u16
}

/// A buffer aligned to the 64-byte cache line, as [`zeroed`] returns.
pub type AlignedBuffer<E> = aligned_vec::AVec<E, aligned_vec::ConstAlign<64>>;

/// A zero-filled buffer of `len` elements starting on a cache line: the natural allocation for
/// optimizer state. (Any slice works with the kernels; alignment only helps speed.)
///
/// ```
/// let v = optkern::zeroed::<optkern::bf16>(1000);
/// assert_eq!(v.len(), 1000);
/// assert_eq!(v.as_ptr() as usize % 64, 0);
/// ```
pub fn zeroed<E: Element>(len: usize) -> AlignedBuffer<E> {
    AlignedBuffer::from_iter(64, core::iter::repeat_n(E::ZERO, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_edges() {
        for (x, bits) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3C00),
            (65504.0, 0x7BFF),
            (65520.0, 0x7C00), // halfway between max finite and 2^16 rounds to infinity
            (65519.99, 0x7BFF),
            (6.103_515_6e-5, 0x0400), // smallest normal
            (5.960_464_5e-8, 0x0001), // smallest subnormal
            (2.980_232_2e-8, 0x0000), // half of it: tie to even zero
            (2.980_232_5e-8, 0x0001), // just above the tie
            (f32::INFINITY, 0x7C00),
            (f32::NEG_INFINITY, 0xFC00),
        ] {
            assert_eq!(f32_to_f16_bits(x), bits, "{x:e}");
            assert_eq!(
                f32_to_f16_bits(x),
                half::f16::from_f32(x).to_bits(),
                "{x:e}"
            );
        }
        assert_eq!(f16_bits_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_bits_to_f32(0x03FF), 6.097_555e-5);
        assert!(f16_bits_to_f32(0x7C01).is_nan());
    }

    #[test]
    fn bf16_edges() {
        for x in [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 1.0 / 256.0, // a tie: rounds to the even 1.0
            1.0 + 3.0 / 256.0, // a tie: rounds up to the even 1.015625
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
        ] {
            assert_eq!(
                f32_to_bf16_bits(x),
                half::bf16::from_f32(x).to_bits(),
                "{x:e}"
            );
        }
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xFF81_2345)), 0xFFC1);
    }
}
