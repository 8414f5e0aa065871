//! The aarch64 backend: NEON (pulp's `Neon`, 4 lanes).
//!
//! f16 uses the base ARMv8 conversions (`fcvtl` to widen, `fcvtn` to narrow, rounding to
//! nearest even under the default FPCR), which need no FP16 arithmetic, so a plain ARMv8.0
//! core such as the Cortex-A53 runs them. bf16 is integer arithmetic, as on x86: widening is a
//! shift, narrowing adds `0x7FFF` plus the lowest kept bit, with NaNs quieted as the reference
//! does. The BF16 extension's `bfcvtn` is not used, so every aarch64 core gives the same bits.

use core::arch::aarch64::*;
use core::mem::transmute;

use pulp::aarch64::Neon;
use pulp::f32x4;

use super::{Kernel, Lanes};

/// Proof that the CPU has NEON (Advanced SIMD).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NeonToken {
    simd: Neon,
}

impl NeonToken {
    pub(crate) fn try_new() -> Option<Self> {
        Neon::try_new().map(|simd| NeonToken { simd })
    }

    #[inline]
    pub(crate) fn run<K: Kernel>(self, kernel: K) -> K::Output {
        // SAFETY: a `NeonToken` exists only when the CPU has NEON, which `enter_neon` enables.
        unsafe { enter_neon(self.simd, kernel) }
    }
}

#[target_feature(enable = "neon")]
unsafe fn enter_neon<K: Kernel>(simd: Neon, kernel: K) -> K::Output {
    kernel.run(simd)
}

impl Lanes for Neon {
    #[inline(always)]
    unsafe fn load_f16(self, src: *const u16) -> f32x4 {
        // SAFETY: the caller guarantees `src` is valid for 4 reads; NEON is enabled in the
        // calling context; `float32x4_t` and `f32x4` are both 4 `f32`s.
        unsafe { transmute(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src)))) }
    }

    #[inline(always)]
    unsafe fn store_f16(self, dst: *mut u16, values: f32x4) {
        // SAFETY: the caller guarantees `dst` is valid for 4 writes; same-size plain vectors.
        unsafe {
            let values = transmute::<f32x4, float32x4_t>(values);
            vst1_u16(dst, vreinterpret_u16_f16(vcvt_f16_f32(values)));
        }
    }

    #[inline(always)]
    unsafe fn load_bf16(self, src: *const u16) -> f32x4 {
        // SAFETY: the caller guarantees `src` is valid for 4 reads; same-size plain vectors.
        unsafe { transmute(vshlq_n_u32::<16>(vmovl_u16(vld1_u16(src)))) }
    }

    #[inline(always)]
    unsafe fn store_bf16(self, dst: *mut u16, values: f32x4) {
        // SAFETY: the caller guarantees `dst` is valid for 4 writes; same-size plain vectors.
        unsafe {
            let x = transmute::<f32x4, uint32x4_t>(values);
            let high = vshrq_n_u32::<16>(x);
            let lsb = vandq_u32(high, vdupq_n_u32(1));
            let biased = vaddq_u32(vaddq_u32(x, vdupq_n_u32(0x7FFF)), lsb);
            let rounded = vshrq_n_u32::<16>(biased);
            let magnitude = vandq_u32(x, vdupq_n_u32(0x7FFF_FFFF));
            let is_nan = vcgtq_u32(magnitude, vdupq_n_u32(0x7F80_0000));
            let quiet_nan = vorrq_u32(high, vdupq_n_u32(0x0040));
            vst1_u16(dst, vmovn_u32(vbslq_u32(is_nan, quiet_nan, rounded)));
        }
    }
}
