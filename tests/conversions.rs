//! Exhaustive conversion tests, on every backend that runs here.
//!
//! - f32 -> bf16: all 2^32 bit patterns give the bits of `half::bf16::from_f32`, NaNs included.
//! - f32 -> f16: all 2^32 patterns give the bits of `half::f16::from_f32` for non-NaN inputs;
//!   a NaN gives a NaN with the input's sign. Every backend also gives the scalar backend's
//!   bits for NaN inputs.
//! - f16 -> f32 and bf16 -> f32: all 2^16 patterns widen exactly (the value `half` gives; a
//!   NaN stays a NaN), with the same bits on every backend.
//!
//! The 2^32 sweeps run in blocks across the threads of the global rayon pool; each backend
//! converts a block sequentially (`Threads::Sequential`).
//!
//! `OPTKERN_CONVERSIONS=sampled` (the emulated CI runs, where the full sweep takes tens of
//! minutes) checks a fixed sample instead: every 64th block of 2^20 patterns, and every block
//! that holds a boundary of either format (zeros and subnormals, the smallest normals, the
//! largest finite values and the overflow to infinity, infinities and NaNs), for both signs.
//! The exhaustive sweep runs natively, on every backend the machine has.

mod common;

use common::{backends, sequential};
use optkern::element::{f32_to_bf16_bits, f32_to_f16_bits};
use optkern::{Backend, bf16, f16};
use rayon::prelude::*;

const BLOCK: u64 = 1 << 20;

/// The blocks of 2^20 patterns the sweep checks: all of them, or the sample described in the
/// module docs when `OPTKERN_CONVERSIONS=sampled`.
fn sweep_blocks() -> Vec<u64> {
    let all = (1u64 << 32) / BLOCK;
    match std::env::var("OPTKERN_CONVERSIONS").as_deref() {
        Err(_) | Ok("exhaustive") => (0..all).collect(),
        Ok("sampled") => {
            // Boundaries: 0 (zeros, f32 subnormals), 2^-126 (smallest f32 normal), f16's
            // smallest subnormal and normal (2^-24, 2^-14) with their rounding neighbourhoods,
            // f16's largest finite value and overflow (65504, 65520), f32's largest finite
            // value, infinity and the NaNs.
            let edges = [
                0x0000_0000u32,
                0x0080_0000,
                0x3300_0000,
                0x3380_0000,
                0x3880_0000,
                0x387F_FFFF,
                0x477F_E000,
                0x477F_F000,
                0x7F7F_FFFF,
                0x7F80_0000,
                0x7FC0_0000,
                0x7FFF_FFFF,
            ];
            let mut blocks: Vec<u64> = (0..all).step_by(64).collect();
            for sign in [0u32, 0x8000_0000] {
                blocks.extend(edges.iter().map(|e| u64::from(e | sign) / BLOCK));
            }
            blocks.sort_unstable();
            blocks.dedup();
            blocks
        }
        Ok(other) => panic!("OPTKERN_CONVERSIONS is {other:?}; use exhaustive or sampled"),
    }
}

/// Converts all 2^32 f32 bit patterns to `E` on every backend, in blocks spread over the
/// global rayon pool, and compares each backend's bits with `reference` (computed once per
/// block). Prints each backend's conversion time.
fn sweep_all_f32<E, B, R>(to_bits: B, reference: R)
where
    E: optkern::Element,
    B: Fn(E) -> u16 + Sync,
    R: Fn(f32) -> u16 + Sync,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let list = backends();
    let nanos: Vec<AtomicU64> = list.iter().map(|_| AtomicU64::new(0)).collect();
    let n = BLOCK as usize;
    let blocks = sweep_blocks();
    let count = blocks.len() as u64 * BLOCK;
    blocks.into_par_iter().for_each_init(
        || (vec![0.0f32; n], vec![0u16; n], vec![E::ZERO; n]),
        |(inputs, want, out), block| {
            let start = (block * BLOCK) as u32;
            for (i, x) in inputs.iter_mut().enumerate() {
                *x = f32::from_bits(start + i as u32);
            }
            for (w, x) in want.iter_mut().zip(inputs.iter()) {
                *w = reference(*x);
            }
            for (&backend, ns) in list.iter().zip(&nanos) {
                let t = std::time::Instant::now();
                sequential(backend).convert(inputs, out).unwrap();
                ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if !out.iter().zip(want.iter()).all(|(y, w)| to_bits(*y) == *w) {
                    let i = (0..n).find(|&i| to_bits(out[i]) != want[i]).unwrap();
                    panic!(
                        "{backend}: f32 bits {:#010x} -> {} bits {:#06x}, expected {:#06x}",
                        start + i as u32,
                        E::DTYPE,
                        to_bits(out[i]),
                        want[i]
                    );
                }
            }
        },
    );
    for (backend, ns) in list.iter().zip(&nanos) {
        let secs = ns.load(Ordering::Relaxed) as f64 * 1e-9;
        let what = if count == 1 << 32 {
            "all 2^32 values".to_owned()
        } else {
            format!("a sample of {count} values (OPTKERN_CONVERSIONS=sampled)")
        };
        eprintln!(
            "f32 -> {}: {backend}: {what} in {secs:.2} s (thread time)",
            E::DTYPE
        );
    }
}

#[test]
fn f32_to_bf16_exhaustive_every_backend() {
    sweep_all_f32::<bf16, _, _>(bf16::to_bits, |x| bf16::from_f32(x).to_bits());
}

#[test]
fn f32_to_f16_exhaustive_every_backend() {
    // For non-NaN inputs the reference is `half`. For NaN inputs the contract asks for a NaN
    // of the same sign; the scalar backend's function gives one (checked below), and every
    // backend gives exactly its bits.
    sweep_all_f32::<f16, _, _>(f16::to_bits, |x| {
        if x.is_nan() {
            f32_to_f16_bits(x)
        } else {
            f16::from_f32(x).to_bits()
        }
    });
}

#[test]
fn f16_reference_keeps_nan_sign_and_quiets() {
    for bits in (0x7F80_0001u32..=0x7FFF_FFFF)
        .step_by(997)
        .chain([0x7F80_0001, 0x7FFF_FFFF])
    {
        for sign in [0, 0x8000_0000] {
            let h = f16::from_bits(f32_to_f16_bits(f32::from_bits(bits | sign)));
            assert!(h.is_nan(), "{bits:#010x}");
            assert_eq!(h.is_sign_negative(), sign != 0);
            assert_ne!(h.to_bits() & 0x0200, 0, "quiet bit");
        }
    }
}

fn widen_all<E: optkern::Element>(backend: Backend, from_bits: fn(u16) -> E, half: fn(E) -> f32) {
    let inputs: Vec<E> = (0..=u16::MAX).map(from_bits).collect();
    let mut out = vec![0.0f32; inputs.len()];
    sequential(backend).convert(&inputs, &mut out).unwrap();
    let mut scalar = vec![0.0f32; inputs.len()];
    sequential(Backend::Scalar)
        .convert(&inputs, &mut scalar)
        .unwrap();
    for (i, ((x, y), s)) in inputs.iter().zip(&out).zip(&scalar).enumerate() {
        let want = half(*x);
        if want.is_nan() {
            assert!(y.is_nan(), "{backend}: {i:#06x} widens to {y}, not NaN");
            assert_eq!(
                y.is_sign_negative(),
                want.is_sign_negative(),
                "{backend}: NaN sign {i:#06x}"
            );
        } else {
            assert_eq!(
                y.to_bits(),
                want.to_bits(),
                "{backend}: {i:#06x} widens to {y:e}, not {want:e}"
            );
        }
        assert_eq!(
            y.to_bits(),
            s.to_bits(),
            "{backend}: {i:#06x}: scalar gives {s:e}"
        );
    }
}

#[test]
fn f16_and_bf16_widen_exactly_every_backend() {
    for backend in backends() {
        widen_all(backend, f16::from_bits, f16::to_f32);
        widen_all(backend, bf16::from_bits, bf16::to_f32);
    }
}

#[test]
fn reference_functions_match_half_on_samples() {
    // The scalar reference functions are public; spot-check them directly as well.
    for bits in (0..=u32::MAX).step_by(4093) {
        let x = f32::from_bits(bits);
        assert_eq!(
            f32_to_bf16_bits(x),
            bf16::from_f32(x).to_bits(),
            "{bits:#010x}"
        );
        if !x.is_nan() {
            assert_eq!(
                f32_to_f16_bits(x),
                f16::from_f32(x).to_bits(),
                "{bits:#010x}"
            );
        }
    }
}

#[test]
fn conversions_between_half_types_go_through_f32() {
    // bf16 -> f16 and f16 -> bf16 widen exactly, then narrow once.
    let bf: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let hf: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for backend in backends() {
        let mut to_f16 = vec![f16::ZERO; bf.len()];
        sequential(backend).convert(&bf, &mut to_f16).unwrap();
        let mut to_bf16 = vec![bf16::ZERO; hf.len()];
        sequential(backend).convert(&hf, &mut to_bf16).unwrap();
        for i in 0..bf.len() {
            // A NaN stays a NaN of its sign (its payload is not specified).
            if bf[i].is_nan() {
                assert!(to_f16[i].is_nan(), "{backend} bf16 {i:#06x}");
                assert_eq!(to_f16[i].is_sign_negative(), bf[i].is_sign_negative());
            } else {
                assert_eq!(
                    to_f16[i].to_bits(),
                    f16::from_f32(bf[i].to_f32()).to_bits(),
                    "{backend} bf16 {i:#06x}"
                );
            }
            if hf[i].is_nan() {
                assert!(to_bf16[i].is_nan(), "{backend} f16 {i:#06x}");
                assert_eq!(to_bf16[i].is_sign_negative(), hf[i].is_sign_negative());
            } else {
                assert_eq!(
                    to_bf16[i].to_bits(),
                    bf16::from_f32(hf[i].to_f32()).to_bits(),
                    "{backend} f16 {i:#06x}"
                );
            }
        }
    }
}
