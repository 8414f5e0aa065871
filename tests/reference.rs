//! The momentum family against an independent `f64` implementation written straight from the
//! published formulas (not from the crate's shared formula), so that a mistake in that
//! formula cannot hide behind the bit-exact backend tests.
//!
//! The bound. With `u = 2^-24` (the unit roundoff of f32), one step computes each result with
//! a handful of correctly rounded operations, so its error is at most `K * u * M`, where `M`
//! is the sum of the magnitudes of the terms that make up the result (not the result itself,
//! which may cancel to near zero) and `K = 8` covers the roundings of the coefficients
//! (`1 - dampening`, `1 - lr*wd`) and of the operations. For the velocity `M = |mu*v| +
//! |c|*(|g| + |l2*w|)`; for the weights `M = |w| + |a|*M_d` with `M_d` the velocity's `M`
//! (plus `|mu|*M_v + |c*g|` with Nesterov). Storing in f16 or bf16 adds half a unit in the
//! last place of the stored value (`2^-11` or `2^-8` relative, and half the spacing of the
//! smallest subnormals absolute). Inputs are finite and kept where no result overflows.

use crate::common;
use crate::for_each_dtype_triple;

use common::data::{Misaligned, Rng};
use common::sequential;
use optkern::{Backend, DType, Element, Momentum, MomentumForm, WeightDecay};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const U: f64 = 1.0 / (1u64 << 24) as f64;
const K: f64 = 8.0;

#[derive(Clone, Debug)]
struct Case {
    form: MomentumForm,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: WeightDecay,
    maximize: bool,
    first: bool,
    seed: u64,
}

/// One step in f64, from the formulas. Returns the new weights, the new velocity, and the
/// magnitude sums `M` of each.
#[allow(clippy::too_many_arguments)]
fn reference_step(c: &Case, w: f64, v: f64, g: f64) -> (f64, f64, f64, f64) {
    let mu = c.momentum;
    let lr = c.lr;
    let (l2, decoupled) = match c.weight_decay {
        WeightDecay::None => (0.0, 0.0),
        WeightDecay::L2(wd) => (wd, 0.0),
        WeightDecay::Decoupled(wd) => (0.0, wd),
    };
    let g_sign = if c.maximize { -g } else { g };
    let g_eff = g_sign + l2 * w;
    let g_mag = g.abs() + (l2 * w).abs();
    let w_decayed = w * (1.0 - lr * decoupled);
    // The velocity coefficient c and the step coefficient a of each form.
    let (coef, a) = match c.form {
        MomentumForm::HeavyBall => (1.0 - c.dampening, lr),
        MomentumForm::LrInVelocity => (lr, 1.0),
        MomentumForm::MovingAverage => (1.0 - mu, lr),
    };
    let first = c.first && c.form == MomentumForm::HeavyBall;
    let (v_new, m_v) = if first {
        (g_eff, g_mag)
    } else {
        (mu * v + coef * g_eff, (mu * v).abs() + coef * g_mag)
    };
    let (d, m_d) = if c.nesterov {
        // PyTorch: g + mu*v (dampening is 0, so coef is 1); Keras: mu*v + lr*g; EMA: beta*v + (1-beta)*g.
        (mu * v_new + coef * g_eff, mu * m_v + coef * g_mag)
    } else {
        (v_new, m_v)
    };
    let w_new = w_decayed - a * d;
    (w_new, v_new, w.abs() + a * m_d, m_v)
}

/// Half a unit in the last place of `E` at `x`, for the final rounding into storage.
fn storage_half_ulp<E: Element>(x: f64) -> f64 {
    match E::DTYPE {
        DType::F32 => 0.0,
        DType::F16 => (x.abs() * 2f64.powi(-11)).max(2f64.powi(-25)),
        DType::BF16 => (x.abs() * 2f64.powi(-8)).max(2f64.powi(-134)),
    }
}

/// Finite inputs of a range the element type holds without overflow.
fn value<E: Element>(rng: &mut Rng) -> f32 {
    let (lo, hi) = if E::DTYPE == DType::F16 {
        (-4.0, 3.0)
    } else {
        (-20.0, 20.0)
    };
    match rng.next_u64() % 10 {
        0 => 0.0,
        1 => rng.magnitude(lo, hi) as f32,
        _ => rng.magnitude(-3.0, 1.0) as f32,
    }
}

fn within_bound<W: Element, T: Element, G: Element>(case: &Case) -> Result<(), TestCaseError> {
    let config = {
        let b = match case.form {
            MomentumForm::HeavyBall => Momentum::heavy_ball(case.lr, case.momentum),
            MomentumForm::LrInVelocity => Momentum::lr_in_velocity(case.lr, case.momentum),
            MomentumForm::MovingAverage => Momentum::moving_average(case.lr, case.momentum),
        };
        b.dampening(case.dampening)
            .nesterov(case.nesterov)
            .weight_decay(case.weight_decay)
            .maximize(case.maximize)
            .build()
            .unwrap()
    };
    let n = 257;
    let mut rng = Rng::new(case.seed);
    let mut w = Misaligned::<W>::new(n, 1, || value::<W>(&mut rng));
    let mut v = Misaligned::<T>::new(n, 2, || value::<T>(&mut rng));
    let g = Misaligned::<G>::new(n, 3, || value::<G>(&mut rng));
    let (w0, v0) = (w.copy(), v.copy());
    let step = if case.first { 1 } else { 2 };
    sequential(Backend::best())
        .momentum_step(w.slice_mut(), v.slice_mut(), g.slice(), &config, step)
        .unwrap();
    for i in 0..n {
        let (wi, vi, gi) = (
            w0.slice()[i].to_f32(),
            v0.slice()[i].to_f32(),
            g.slice()[i].to_f32(),
        );
        let (w_ref, v_ref, m_w, m_v) =
            reference_step(case, f64::from(wi), f64::from(vi), f64::from(gi));
        // A result too large for the stored type is outside this test's scope.
        if !(W::from_f32(w_ref as f32).to_f32().is_finite()
            && T::from_f32(v_ref as f32).to_f32().is_finite())
        {
            continue;
        }
        let got_w = f64::from(w.slice()[i].to_f32());
        let got_v = f64::from(v.slice()[i].to_f32());
        let bound_w = K * U * m_w + storage_half_ulp::<W>(w_ref) + 1e-44;
        let bound_v = K * U * m_v + storage_half_ulp::<T>(v_ref) + 1e-44;
        prop_assert!(
            (got_w - w_ref).abs() <= bound_w,
            "weights[{i}] ({}): {got_w:e} vs f64 {w_ref:e}: error {:e} > bound {bound_w:e}; w {wi:e} v {vi:e} g {gi:e}",
            W::DTYPE,
            (got_w - w_ref).abs()
        );
        prop_assert!(
            (got_v - v_ref).abs() <= bound_v,
            "velocity[{i}] ({}): {got_v:e} vs f64 {v_ref:e}: error {:e} > bound {bound_v:e}; w {wi:e} v {vi:e} g {gi:e}",
            T::DTYPE,
            (got_v - v_ref).abs()
        );
    }
    Ok(())
}

fn case() -> impl Strategy<Value = Case> {
    let form = prop_oneof![
        Just(MomentumForm::HeavyBall),
        Just(MomentumForm::LrInVelocity),
        Just(MomentumForm::MovingAverage)
    ];
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    let weight_decay = prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ];
    (
        form,
        (-5.0f64..0.0).prop_map(|e| 10f64.powf(e)),
        prop_oneof![Just(0.0f64), 0.0f64..0.999],
        prop_oneof![Just(0.0f64), 0.0f64..=1.0],
        any::<bool>(),
        weight_decay,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(form, lr, momentum, dampening, nesterov, weight_decay, maximize, first, seed)| {
                let dampening = if form == MomentumForm::HeavyBall {
                    dampening
                } else {
                    0.0
                };
                let nesterov = nesterov && momentum > 0.0 && dampening == 0.0;
                Case {
                    form,
                    lr,
                    momentum,
                    dampening,
                    nesterov,
                    weight_decay,
                    maximize,
                    first,
                    seed,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(48)))]

    #[test]
    fn momentum_within_bound_of_f64_reference(case in case()) {
        for_each_dtype_triple!(within_bound, &case);
    }
}

/// The bound is not vacuous: a deliberately wrong result (one f32 ulp away on a term of the
/// size of the result) is caught for results that do not cancel.
#[test]
fn bound_is_tight_enough_to_catch_a_wrong_coefficient() {
    // PyTorch form with dampening: using (1 - dampening) where it must not be (the first
    // step) changes the velocity by a relative 0.3, far beyond the bound.
    let case = Case {
        form: MomentumForm::HeavyBall,
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.3,
        nesterov: false,
        weight_decay: WeightDecay::None,
        maximize: false,
        first: true,
        seed: 0,
    };
    let (_, v_ref, _, m_v) = reference_step(&case, 1.0, 0.0, 0.5);
    assert_eq!(v_ref, 0.5);
    let wrong = 0.5 * 0.7;
    assert!((wrong - v_ref).abs() > K * U * m_v);
}
