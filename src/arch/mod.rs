//! Everything that is specific to an instruction set lives under this module, and only here.
//!
//! The kernels are written once, generic over [`Lanes`]: pulp's [`Simd`] trait (arithmetic on
//! `f32` lanes, fused multiply-add, square root, comparisons, ...) plus the loads and stores of
//! half-precision buffers that pulp does not provide. Each backend implements [`Lanes`] for its
//! pulp token type:
//!
//! | backend | pulp type | lanes | where |
//! |---|---|---|---|
//! | scalar | `pulp::Scalar` | 1 | [`portable`] |
//! | AVX2 + FMA + F16C | `pulp::x86::V3` | 8 | [`x86`] |
//! | AVX-512 (F, BW, CD, DQ, VL) | `pulp::x86::V4` | 16 | [`x86`] |
//! | NEON | `pulp::aarch64::Neon` | 4 | [`aarch64`] |
//! | 16 emulated scalar lanes (tests, not on x86-64) | `pulp::Scalar512b` | 16 | [`portable`] |
//! | AVX2 on 16-lane vectors (tests) | `pulp::x86::V3_512b` | 16 | [`x86`] |
//!
//! A kernel is a [`Kernel`]: a value with a `run` method generic over [`Lanes`]. [`Isa::run`]
//! enters the backend's `#[target_feature]` function and calls it there, so that everything
//! the kernel reaches is compiled for that instruction set. Everything reached from such an
//! entry point is `#[inline(always)]`; a call that is not inlined loses the target features
//! (and `mul_add` would become a library call).

use pulp::Simd;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
pub(crate) mod aarch64;
pub(crate) mod fpenv;
pub(crate) mod portable;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// pulp's [`Simd`] plus the conversions of half-precision buffers.
///
/// Loads read exactly `F32_LANES` elements and stores write exactly `F32_LANES` elements,
/// through possibly unaligned pointers.
///
/// # Safety (for callers)
///
/// Every method reads or writes `Self::F32_LANES` elements through a raw pointer, which must
/// be valid for that access. The token `self` must only exist where the CPU supports its
/// instruction set, and the method must be reached from inside [`Isa::run`] (so that it is
/// compiled with the backend's target features).
pub(crate) trait Lanes: Simd {
    /// Reads `F32_LANES` binary16 values (as bits) and widens them to `f32`.
    unsafe fn load_f16(self, src: *const u16) -> Self::f32s;
    /// Narrows `F32_LANES` values to binary16 (round to nearest even) and writes their bits.
    unsafe fn store_f16(self, dst: *mut u16, values: Self::f32s);
    /// Reads `F32_LANES` bfloat16 values (as bits) and widens them to `f32`.
    unsafe fn load_bf16(self, src: *const u16) -> Self::f32s;
    /// Narrows `F32_LANES` values to bfloat16 (round to nearest even) and writes their bits.
    unsafe fn store_bf16(self, dst: *mut u16, values: Self::f32s);

    /// Reads `F32_LANES` `f32` values.
    #[inline(always)]
    unsafe fn load_f32(self, src: *const f32) -> Self::f32s {
        // SAFETY: the caller guarantees `src` is valid for `F32_LANES` reads; `f32s` is a
        // plain array of that many `f32`s (pulp's types are `Pod`), read unaligned.
        unsafe { src.cast::<Self::f32s>().read_unaligned() }
    }

    /// Writes `F32_LANES` `f32` values.
    #[inline(always)]
    unsafe fn store_f32(self, dst: *mut f32, values: Self::f32s) {
        // SAFETY: as in `load_f32`, for writes.
        unsafe { dst.cast::<Self::f32s>().write_unaligned(values) }
    }
}

/// A computation to run on one backend, written once, generic over its [`Lanes`].
pub(crate) trait Kernel {
    type Output;
    fn run<S: Lanes>(self, simd: S) -> Self::Output;
}

/// A backend the CPU is known to support, holding the token that proves it.
///
/// Values of this type are only created by [`crate::Backend`]'s detection, after the CPU
/// reported every feature the backend uses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(x86::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(x86::Avx512),
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    Neon(aarch64::NeonToken),
    // Compiled only where no AVX2-pair emulation covers the 16-lane walk (not on x86-64), and
    // left out of the emulated CI builds (`--cfg optkern_no_scalar16`), which never run it.
    #[cfg(all(
        feature = "emulated-backends",
        not(target_arch = "x86_64"),
        not(optkern_no_scalar16)
    ))]
    Scalar16,
    #[cfg(all(feature = "emulated-backends", target_arch = "x86_64"))]
    Avx2Pair(x86::Avx2),
}

impl Isa {
    /// Runs `kernel` on this backend, inside the backend's target-feature context.
    #[inline]
    pub(crate) fn run<K: Kernel>(self, kernel: K) -> K::Output {
        // On every thread that runs a kernel (the caller's and the pool's workers).
        let _env = fpenv::Environment::enter();
        match self {
            Isa::Scalar => kernel.run(pulp::Scalar::new()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(token) => token.run(kernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512(token) => token.run(kernel),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Isa::Neon(token) => token.run(kernel),
            #[cfg(all(
                feature = "emulated-backends",
                not(target_arch = "x86_64"),
                not(optkern_no_scalar16)
            ))]
            Isa::Scalar16 => kernel.run(pulp::Scalar512b),
            #[cfg(all(feature = "emulated-backends", target_arch = "x86_64"))]
            Isa::Avx2Pair(token) => token.run_pair(kernel),
        }
    }
}
