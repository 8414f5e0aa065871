//! Backends in plain Rust, without intrinsics: the scalar fallback (one lane, the test oracle)
//! and, for the crate's tests, pulp's 16-lane emulation of a 512-bit vector.
//!
//! Both convert half-precision values with the reference functions of [`crate::element`].

use super::Lanes;
use crate::element::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};

impl Lanes for pulp::Scalar {
    #[inline(always)]
    unsafe fn load_f16(self, src: *const u16) -> f32 {
        // SAFETY: the caller guarantees `src` is valid for one read.
        f16_bits_to_f32(unsafe { src.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store_f16(self, dst: *mut u16, values: f32) {
        // SAFETY: the caller guarantees `dst` is valid for one write.
        unsafe { dst.write_unaligned(f32_to_f16_bits(values)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(self, src: *const u16) -> f32 {
        // SAFETY: the caller guarantees `src` is valid for one read.
        bf16_bits_to_f32(unsafe { src.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store_bf16(self, dst: *mut u16, values: f32) {
        // SAFETY: the caller guarantees `dst` is valid for one write.
        unsafe { dst.write_unaligned(f32_to_bf16_bits(values)) }
    }
}

#[cfg(feature = "emulated-backends")]
mod emulated {
    use super::*;
    use pulp::f32x16;

    const LANES: usize = 16;

    #[inline(always)]
    unsafe fn load_with(src: *const u16, widen: fn(u16) -> f32) -> f32x16 {
        let mut lanes = [0.0f32; LANES];
        for (i, lane) in lanes.iter_mut().enumerate() {
            // SAFETY: the caller guarantees `src` is valid for 16 reads.
            *lane = widen(unsafe { src.add(i).read_unaligned() });
        }
        pulp::cast(lanes)
    }

    #[inline(always)]
    unsafe fn store_with(dst: *mut u16, values: f32x16, narrow: fn(f32) -> u16) {
        let lanes: [f32; LANES] = pulp::cast(values);
        for (i, lane) in lanes.into_iter().enumerate() {
            // SAFETY: the caller guarantees `dst` is valid for 16 writes.
            unsafe { dst.add(i).write_unaligned(narrow(lane)) }
        }
    }

    impl Lanes for pulp::Scalar512b {
        #[inline(always)]
        unsafe fn load_f16(self, src: *const u16) -> f32x16 {
            // SAFETY: forwarded from the caller.
            unsafe { load_with(src, f16_bits_to_f32) }
        }
        #[inline(always)]
        unsafe fn store_f16(self, dst: *mut u16, values: f32x16) {
            // SAFETY: forwarded from the caller.
            unsafe { store_with(dst, values, f32_to_f16_bits) }
        }
        #[inline(always)]
        unsafe fn load_bf16(self, src: *const u16) -> f32x16 {
            // SAFETY: forwarded from the caller.
            unsafe { load_with(src, bf16_bits_to_f32) }
        }
        #[inline(always)]
        unsafe fn store_bf16(self, dst: *mut u16, values: f32x16) {
            // SAFETY: forwarded from the caller.
            unsafe { store_with(dst, values, f32_to_bf16_bits) }
        }
    }
}
