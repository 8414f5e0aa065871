//! Helpers for the f64 reference tests.

use optkern::{DType, Element};

/// The unit roundoff of f32.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Half a unit in the last place of `E` at `x`: the final rounding into storage.
pub fn storage_half_ulp<E: Element>(x: f64) -> f64 {
    match E::DTYPE {
        DType::F32 => 0.0,
        DType::F16 => (x.abs() * 2f64.powi(-11)).max(2f64.powi(-25)),
        DType::BF16 => (x.abs() * 2f64.powi(-8)).max(2f64.powi(-134)),
    }
}

/// Finite inputs for the reference tests: mostly moderate, sometimes tiny or large (down to
/// `10^-span`, up to `10^span`), sometimes zero; f16 keeps to its range.
pub fn finite_value<E: Element>(rng: &mut super::data::Rng, span: f64) -> f32 {
    let (lo, hi) = if E::DTYPE == DType::F16 {
        (-4.0, 3.0)
    } else {
        (-span, span)
    };
    match rng.next_u64() % 10 {
        0 => 0.0,
        1 => rng.magnitude(lo, hi) as f32,
        _ => rng.magnitude(-3.0, 1.0) as f32,
    }
}

/// The smallest f32 subnormal, as an absolute floor for results that land there.
pub const FLOOR: f64 = 1e-44;

/// Checks `got` (a value stored as `E`) against the f64 `want` within `bound` (the error of
/// the f32 computation) plus the final rounding into `E`. Results the type cannot hold (they
/// overflow) are outside these tests' scope and pass.
pub fn within<E: Element>(what: &str, got: E, want: f64, bound: f64) -> Result<(), String> {
    if !E::from_f32(want as f32).to_f32().is_finite() {
        return Ok(());
    }
    let got = f64::from(got.to_f32());
    let limit = bound + storage_half_ulp::<E>(want) + FLOOR;
    let error = (got - want).abs();
    // Written so that a NaN fails.
    let ok = error <= limit;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} ({}): {got:e} vs f64 {want:e}: error {error:e} > bound {limit:e}",
            E::DTYPE
        ))
    }
}
