//! x86-64 backends: AVX2 + FMA + F16C (pulp's `V3`, 8 lanes) and AVX-512 F/BW/CD/DQ/VL (pulp's
//! `V4`, 16 lanes); and, for the crate's tests, `V3_512b` (16 lanes as two AVX2 halves).
//!
//! f16 uses the hardware conversions (`vcvtph2ps`, `vcvtps2ph` with round-to-nearest-even);
//! bf16 is integer arithmetic: widening puts the 16 bits in the top half of each lane (a shift
//! on AVX-512, a byte shuffle on AVX2), narrowing adds `0x7FFF` plus the lowest kept bit and
//! keeps the top half, with NaNs quieted as the reference does. The native
//! AVX512_BF16 convert is not used: it flushes subnormals, which would break bit identity.

use core::arch::x86_64::*;
use core::mem::transmute;

use pulp::x86::{V3, V4};
use pulp::{f32x8, f32x16};

use super::{Kernel, Lanes};

/// Proof that the CPU has AVX2, FMA and F16C (and the rest of x86-64-v3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2 {
    simd: V3,
}

/// Proof that the CPU has AVX-512 F, BW, CD, DQ and VL (x86-64-v4), and F16C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512 {
    simd: V4,
}

impl Avx2 {
    pub(crate) fn try_new() -> Option<Self> {
        let simd = V3::try_new()?;
        std::arch::is_x86_feature_detected!("f16c").then_some(Self { simd })
    }

    #[inline]
    pub(crate) fn run<K: Kernel>(self, kernel: K) -> K::Output {
        // SAFETY: an `Avx2` exists only when the CPU has every feature `enter_v3` enables.
        unsafe { enter_v3(self.simd, kernel) }
    }

    #[cfg(feature = "emulated-backends")]
    #[inline]
    pub(crate) fn run_pair<K: Kernel>(self, kernel: K) -> K::Output {
        // SAFETY: as in `run`: `V3_512b` uses the same instructions as `V3`.
        unsafe { enter_v3_pair(pulp::x86::V3_512b(self.simd), kernel) }
    }
}

impl Avx512 {
    pub(crate) fn try_new() -> Option<Self> {
        let simd = V4::try_new()?;
        std::arch::is_x86_feature_detected!("f16c").then_some(Self { simd })
    }

    #[inline]
    pub(crate) fn run<K: Kernel>(self, kernel: K) -> K::Output {
        // SAFETY: an `Avx512` exists only when the CPU has every feature `enter_v4` enables.
        unsafe { enter_v4(self.simd, kernel) }
    }
}

#[target_feature(enable = "sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,f16c")]
unsafe fn enter_v3<K: Kernel>(simd: V3, kernel: K) -> K::Output {
    kernel.run(simd)
}

#[cfg(feature = "emulated-backends")]
#[target_feature(enable = "sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,f16c")]
unsafe fn enter_v3_pair<K: Kernel>(simd: pulp::x86::V3_512b, kernel: K) -> K::Output {
    kernel.run(simd)
}

#[target_feature(enable = "sse3,ssse3,sse4.1,sse4.2,popcnt,avx,avx2,bmi1,bmi2,fma,lzcnt,f16c")]
#[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl")]
unsafe fn enter_v4<K: Kernel>(simd: V4, kernel: K) -> K::Output {
    kernel.run(simd)
}

// The conversion helpers below are only reached from `enter_v3`/`enter_v4` (through the
// kernels' `Lanes` calls), where the features they use are enabled.

#[inline(always)]
unsafe fn load_f16_x8(src: *const u16) -> __m256 {
    // SAFETY: the caller guarantees `src` is valid for 8 reads (16 bytes, unaligned).
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(src.cast())) }
}

#[inline(always)]
unsafe fn store_f16_x8(dst: *mut u16, values: __m256) {
    // SAFETY: the caller guarantees `dst` is valid for 8 writes (16 bytes, unaligned).
    unsafe {
        _mm_storeu_si128(
            dst.cast(),
            _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(values),
        )
    }
}

#[inline(always)]
unsafe fn load_bf16_x8(src: *const u16) -> __m256 {
    // SAFETY: the caller guarantees `src` is valid for 8 reads (16 bytes, unaligned).
    unsafe {
        // Both 128-bit halves hold the 8 values; one byte shuffle puts values 0..4 (low half)
        // and 4..8 (high half) into the top 16 bits of each 32-bit lane, zeroing the rest:
        // the widened `f32` bits, with one shuffle and no shift.
        let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(src.cast()));
        let z = -128i8;
        let to_top = _mm256_setr_epi8(
            z, z, 0, 1, z, z, 2, 3, z, z, 4, 5, z, z, 6, 7, //
            z, z, 8, 9, z, z, 10, 11, z, z, 12, 13, z, z, 14, 15,
        );
        _mm256_castsi256_ps(_mm256_shuffle_epi8(both, to_top))
    }
}

#[inline(always)]
unsafe fn store_bf16_x8(dst: *mut u16, values: __m256) {
    // SAFETY: the caller guarantees `dst` is valid for 8 writes (16 bytes, unaligned).
    unsafe {
        let x = _mm256_castps_si256(values);
        // Round to nearest even: add 0x7FFF, plus 1 when the lowest kept bit (bit 16) is set
        // (`odd` is then all ones, and subtracting it adds the 1).
        let bit16 = _mm256_set1_epi32(0x1_0000);
        let odd = _mm256_cmpeq_epi32(_mm256_and_si256(x, bit16), bit16);
        let biased = _mm256_sub_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), odd);
        // A NaN keeps its sign and payload, made quiet, as `half` does; no rounding.
        let is_nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(values, values));
        let quiet_nan = _mm256_or_si256(x, _mm256_set1_epi32(0x0040_0000));
        let bits = _mm256_blendv_epi8(biased, quiet_nan, is_nan);
        // The result is the top 16 bits of each lane: gather them into the low 8 bytes of
        // each 128-bit half, then bring the two halves' low 8 bytes together.
        let z = -128i8;
        let tops = _mm256_setr_epi8(
            2, 3, 6, 7, 10, 11, 14, 15, z, z, z, z, z, z, z, z, //
            2, 3, 6, 7, 10, 11, 14, 15, z, z, z, z, z, z, z, z,
        );
        let packed = _mm256_permute4x64_epi64::<0x08>(_mm256_shuffle_epi8(bits, tops));
        _mm_storeu_si128(dst.cast(), _mm256_castsi256_si128(packed));
    }
}

impl Lanes for V3 {
    #[inline(always)]
    unsafe fn load_f16(self, src: *const u16) -> f32x8 {
        // SAFETY: forwarded from the caller; `__m256` and `f32x8` are both 8 `f32`s.
        unsafe { transmute(load_f16_x8(src)) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, dst: *mut u16, values: f32x8) {
        // SAFETY: forwarded from the caller; same-size plain vectors.
        unsafe { store_f16_x8(dst, transmute::<f32x8, __m256>(values)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, src: *const u16) -> f32x8 {
        // SAFETY: forwarded from the caller; same-size plain vectors.
        unsafe { transmute(load_bf16_x8(src)) }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, dst: *mut u16, values: f32x8) {
        // SAFETY: forwarded from the caller; same-size plain vectors.
        unsafe { store_bf16_x8(dst, transmute::<f32x8, __m256>(values)) }
    }
}

impl Lanes for V4 {
    #[inline(always)]
    unsafe fn load_f16(self, src: *const u16) -> f32x16 {
        // SAFETY: `src` is valid for 16 reads (caller); `__m512` and `f32x16` are 16 `f32`s.
        unsafe { transmute(_mm512_cvtph_ps(_mm256_loadu_si256(src.cast()))) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, dst: *mut u16, values: f32x16) {
        // SAFETY: `dst` is valid for 16 writes (caller); same-size plain vectors.
        unsafe {
            let values = transmute::<f32x16, __m512>(values);
            let halves =
                _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(values);
            _mm256_storeu_si256(dst.cast(), halves);
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, src: *const u16) -> f32x16 {
        // SAFETY: `src` is valid for 16 reads (caller); same-size plain vectors.
        unsafe {
            let bits = _mm512_cvtepu16_epi32(_mm256_loadu_si256(src.cast()));
            transmute(_mm512_slli_epi32::<16>(bits))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, dst: *mut u16, values: f32x16) {
        // SAFETY: `dst` is valid for 16 writes (caller); same-size plain vectors.
        unsafe {
            let x = transmute::<f32x16, __m512i>(values);
            let high = _mm512_srli_epi32::<16>(x);
            let lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
            let biased = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb);
            let rounded = _mm512_srli_epi32::<16>(biased);
            let magnitude = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFF_FFFF));
            let is_nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F80_0000));
            let quiet_nan = _mm512_or_si512(high, _mm512_set1_epi32(0x0040));
            let bits = _mm512_mask_blend_epi32(is_nan, rounded, quiet_nan);
            _mm256_storeu_si256(dst.cast(), _mm512_cvtepi32_epi16(bits));
        }
    }
}

#[cfg(feature = "emulated-backends")]
impl Lanes for pulp::x86::V3_512b {
    #[inline(always)]
    unsafe fn load_f16(self, src: *const u16) -> f32x16 {
        // SAFETY: `src` is valid for 16 reads (caller): two groups of 8; `f32x16` is two `f32x8`.
        unsafe { transmute([load_f16_x8(src), load_f16_x8(src.add(8))]) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, dst: *mut u16, values: f32x16) {
        // SAFETY: `dst` is valid for 16 writes (caller); same-size plain vectors.
        unsafe {
            let [lo, hi] = transmute::<f32x16, [__m256; 2]>(values);
            store_f16_x8(dst, lo);
            store_f16_x8(dst.add(8), hi);
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, src: *const u16) -> f32x16 {
        // SAFETY: `src` is valid for 16 reads (caller); same-size plain vectors.
        unsafe { transmute([load_bf16_x8(src), load_bf16_x8(src.add(8))]) }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, dst: *mut u16, values: f32x16) {
        // SAFETY: `dst` is valid for 16 writes (caller); same-size plain vectors.
        unsafe {
            let [lo, hi] = transmute::<f32x16, [__m256; 2]>(values);
            store_bf16_x8(dst, lo);
            store_bf16_x8(dst.add(8), hi);
        }
    }
}
