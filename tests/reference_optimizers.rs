//! Adam/AdamW/AMSGrad, RMSprop, Adagrad and Lion against independent `f64` implementations
//! written from the published formulas (and the frameworks' documentation), one step at a time.
//!
//! The bound. With `u = 2^-24` and `K = 16`, each f32 result may differ from the f64 one by
//! `K * u * M` plus the propagated error of its inputs, where `M` is the sum of the magnitudes
//! of the terms the result is made of (so that cancellation does not shrink the bound to
//! nothing): for a moment `beta*m + (1-beta)*g` it is `|beta*m| + (1-beta)*|g|` (plus `|g - m|`
//! where it is PyTorch's lerp, whose weight `1 - beta` is rounded to f32); a quotient
//! `n / d` carries `(err(n) + |n/d| * err(d)) / d`; a square root `sqrt(t)` carries
//! `err(t) / (2*sqrt(t))`; the weights carry `K*u*|w|` plus the step's error. Storing in f16
//! or bf16 adds half a unit in the last place. Inputs are finite; centered RMSprop draws states
//! with `sq >= 4*ga^2` and `alpha >= 0.5`, where the variance `sq - ga^2` is well conditioned;
//! Lion accepts either sign where `|c|` is within its bound of zero (the sign of a value
//! rounding cannot resolve). A wrong coefficient or a misplaced epsilon is off by far more.

use crate::common;
use crate::for_each_dtype_triple;

use common::data::{Misaligned, Rng};
use common::proptest_cases;
use common::reference::{U, within};
use common::sequential;
use optkern::{
    Adagrad, Adam, Backend, Element, EpsilonPlacement, Lion, MomentumForm, Rmsprop, WeightDecay,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const K: f64 = 16.0;
const N: usize = 203;

fn value<E: Element>(rng: &mut Rng) -> f32 {
    common::reference::finite_value::<E>(rng)
}

/// The gradient as every optimizer reads it, its magnitude sum, and the decayed weights.
fn gradient_in(wd: WeightDecay, maximize: bool, lr: f64, w: f64, g: f64) -> (f64, f64, f64) {
    let g_sign = if maximize { -g } else { g };
    match wd {
        WeightDecay::L2(l2) => (g_sign + l2 * w, g.abs() + (l2 * w).abs(), w),
        WeightDecay::Decoupled(d) => (g_sign, g.abs(), w * (1.0 - lr * d)),
        WeightDecay::None => (g_sign, g.abs(), w),
    }
}

fn to_f64<E: Element>(x: E) -> f64 {
    f64::from(x.to_f32())
}

fn fail(e: String) -> TestCaseError {
    TestCaseError::fail(e)
}

// ---- Adam ----

fn adam_within<W: Element, T: Element, G: Element>(
    (config, step, seed): &(Adam, u64, u64),
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(*seed);
    let w0 = Misaligned::<W>::new(N, 1, || value::<W>(&mut rng));
    let m0 = Misaligned::<T>::new(N, 2, || value::<T>(&mut rng));
    let v0 = Misaligned::<T>::new(N, 3, || value::<T>(&mut rng).abs());
    let vm0 = Misaligned::<T>::new(N, 4, || value::<T>(&mut rng).abs());
    let g = Misaligned::<G>::new(N, 5, || value::<G>(&mut rng));
    let (mut w, mut m, mut v, mut vm) = (w0.copy(), m0.copy(), v0.copy(), vm0.copy());
    let exec = sequential(Backend::best());
    if config.amsgrad() {
        exec.amsgrad_step(
            w.slice_mut(),
            m.slice_mut(),
            v.slice_mut(),
            vm.slice_mut(),
            g.slice(),
            config,
            *step,
        )
    } else {
        exec.adam_step(
            w.slice_mut(),
            m.slice_mut(),
            v.slice_mut(),
            g.slice(),
            config,
            *step,
        )
    }
    .unwrap();

    let (b1, b2) = (config.betas().0, config.betas().1);
    let lr = config.lr();
    let (bc1, bc2) = if config.bias_correction() {
        (1.0 - b1.powf(*step as f64), 1.0 - b2.powf(*step as f64))
    } else {
        (1.0, 1.0)
    };
    for i in 0..N {
        let (wi, mi, vi, gi) = (
            to_f64(w0.slice()[i]),
            to_f64(m0.slice()[i]),
            to_f64(v0.slice()[i]),
            to_f64(g.slice()[i]),
        );
        let (ge, gm, wd) = gradient_in(config.weight_decay(), config.maximize(), lr, wi, gi);
        let m_new = b1 * mi + (1.0 - b1) * ge;
        // The lerp weight 1 - beta1 is rounded to f32 (as in PyTorch): that adds u * |g - m|.
        let m_mag = (b1 * mi).abs() + (1.0 - b1) * gm + (ge - mi).abs();
        let v_new = b2 * vi + (1.0 - b2) * ge * ge;
        let v_mag = b2 * vi + (1.0 - b2) * gm * gm;
        let v_used = if config.amsgrad() {
            to_f64(vm0.slice()[i]).max(v_new)
        } else {
            v_new
        };
        let (step_size, k) = match config.epsilon_placement() {
            EpsilonPlacement::Corrected => (lr / bc1, 1.0 / bc2.sqrt()),
            EpsilonPlacement::Hat => (lr * bc2.sqrt() / bc1, 1.0),
        };
        let denom = v_used.sqrt() * k + config.eps();
        let w_new = wd - step_size * m_new / denom;
        // The quotient carries `(err(m) + |m/d| * err(d)) / d`, with `err(d)` from the square
        // root of `v` (`err(v) / (2 sqrt(v))`, or `sqrt(err(v))` at `v = 0`) and the rounding of
        // `d` itself. Where the gradient as read cancels (`g + l2*w` near 0 with `v` its
        // square), `err(v)` is set by the magnitudes of the terms, not by `v`, and the quotient
        // is that ill-conditioned.
        let v_err = K * U * v_mag;
        let sqrt_err = if v_used > 0.0 {
            v_err / (2.0 * v_used.sqrt())
        } else {
            v_err.sqrt()
        };
        let d_err = sqrt_err * k + K * U * denom;
        let q = (m_new / denom).abs();
        let w_bound =
            K * U * (wi.abs() + step_size * q) + step_size * (K * U * m_mag + q * d_err) / denom;
        let at = |what: &str| {
            format!("{what}[{i}] (w {wi:e} m {mi:e} v {vi:e} g {gi:e}, {config:?}, step {step})")
        };
        within(&at("weights"), w.slice()[i], w_new, w_bound).map_err(fail)?;
        within(&at("m"), m.slice()[i], m_new, K * U * m_mag).map_err(fail)?;
        within(&at("v"), v.slice()[i], v_new, K * U * v_mag).map_err(fail)?;
        if config.amsgrad() {
            within(&at("v_max"), vm.slice()[i], v_used, K * U * v_mag).map_err(fail)?;
        }
    }
    Ok(())
}

fn adam() -> impl Strategy<Value = (Adam, u64, u64)> {
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    let weight_decay = prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ];
    let placement = prop_oneof![
        Just(EpsilonPlacement::Corrected),
        Just(EpsilonPlacement::Hat)
    ];
    (
        (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
        0.0f64..0.999,
        0.0f64..0.9999,
        (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
        weight_decay,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        placement,
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        any::<u64>(),
    )
        .prop_map(
            |(lr, b1, b2, eps, wd, amsgrad, maximize, bias, placement, step, seed)| {
                let config = Adam::builder(lr)
                    .betas(b1, b2)
                    .eps(eps)
                    .weight_decay(wd)
                    .amsgrad(amsgrad)
                    .maximize(maximize)
                    .bias_correction(bias)
                    .epsilon_placement(placement)
                    .build()
                    .unwrap();
                (config, step, seed)
            },
        )
}

// ---- RMSprop ----

fn rmsprop_within<W: Element, T: Element, G: Element>(
    (config, seed): &(Rmsprop, u64),
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(*seed);
    let w0 = Misaligned::<W>::new(N, 1, || value::<W>(&mut rng));
    let sq0 = Misaligned::<T>::new(N, 2, || value::<T>(&mut rng).abs());
    // |ga| <= sqrt(sq) / 2, so that the centered variance is well conditioned.
    let ga0 = {
        let sq: Vec<f32> = sq0.slice().iter().map(|x| x.to_f32()).collect();
        let mut k = 0;
        Misaligned::<T>::new(N, 3, || {
            let bound = sq[k].sqrt() * 0.5;
            k += 1;
            (rng.range(-1.0, 1.0) * f64::from(bound)) as f32
        })
    };
    let buf0 = Misaligned::<T>::new(N, 4, || value::<T>(&mut rng));
    let g = Misaligned::<G>::new(N, 5, || value::<G>(&mut rng));
    let (mut w, mut sq, mut ga, mut buf) = (w0.copy(), sq0.copy(), ga0.copy(), buf0.copy());
    let has_momentum = config.momentum() > 0.0;
    sequential(Backend::best())
        .rmsprop_step(
            w.slice_mut(),
            sq.slice_mut(),
            config.centered().then(|| ga.slice_mut()),
            has_momentum.then(|| buf.slice_mut()),
            g.slice(),
            config,
            1,
        )
        .unwrap();

    let (alpha, lr, eps, mu) = (config.alpha(), config.lr(), config.eps(), config.momentum());
    let (c, a) = match config.momentum_form() {
        MomentumForm::HeavyBall => (1.0, lr),
        MomentumForm::LrInVelocity => (lr, 1.0),
        MomentumForm::MovingAverage => (1.0 - mu, lr),
    };
    for i in 0..N {
        let (wi, sqi, gai, bi, gi) = (
            to_f64(w0.slice()[i]),
            to_f64(sq0.slice()[i]),
            to_f64(ga0.slice()[i]),
            to_f64(buf0.slice()[i]),
            to_f64(g.slice()[i]),
        );
        let (ge, gm, wd) = gradient_in(config.weight_decay(), config.maximize(), lr, wi, gi);
        let sq_new = alpha * sqi + (1.0 - alpha) * ge * ge;
        let sq_mag = alpha * sqi + (1.0 - alpha) * gm * gm;
        let ga_new = alpha * gai + (1.0 - alpha) * ge;
        // A lerp with weight 1 - alpha rounded to f32: that adds u * |g - ga|.
        let ga_mag = (alpha * gai).abs() + (1.0 - alpha) * gm + (ge - gai).abs();
        let (t, t_err) = if config.centered() {
            let t = (sq_new - ga_new * ga_new).max(0.0);
            (
                t,
                K * U * (sq_mag + ga_mag * ga_mag + 2.0 * ga_mag * ga_mag),
            )
        } else {
            (sq_new, K * U * sq_mag)
        };
        let (d, d_err) = if config.eps_inside_sqrt() {
            let d = (t + eps).sqrt();
            (d, K * U * d + t_err / (2.0 * d))
        } else {
            let d = t.sqrt() + eps;
            let root_err = if t > 0.0 {
                t_err / (2.0 * t.sqrt())
            } else {
                t_err.sqrt()
            };
            (d, K * U * d + root_err.min(t_err.sqrt()))
        };
        let q = ge / d;
        let q_err = (K * U * gm + q.abs() * d_err) / (d - d_err).max(d * 0.5) + K * U * q.abs();
        let at = |what: &str| {
            format!("{what}[{i}] (w {wi:e} sq {sqi:e} ga {gai:e} buf {bi:e} g {gi:e}, {config:?})")
        };
        let (w_new, w_err) = if has_momentum {
            let b_new = mu * bi + c * q;
            let b_err = K * U * ((mu * bi).abs() + (c * q).abs()) + c * q_err;
            within(&at("momentum_buffer"), buf.slice()[i], b_new, b_err).map_err(fail)?;
            (
                wd - a * b_new,
                K * U * (wi.abs() + (a * b_new).abs()) + a * b_err,
            )
        } else {
            (
                wd - lr * q,
                K * U * (wi.abs() + (lr * q).abs()) + lr * q_err,
            )
        };
        within(&at("weights"), w.slice()[i], w_new, w_err).map_err(fail)?;
        within(&at("square_avg"), sq.slice()[i], sq_new, K * U * sq_mag).map_err(fail)?;
        if config.centered() {
            within(&at("grad_avg"), ga.slice()[i], ga_new, K * U * ga_mag).map_err(fail)?;
        }
    }
    Ok(())
}

fn rmsprop() -> impl Strategy<Value = (Rmsprop, u64)> {
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    let weight_decay = prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ];
    let form = prop_oneof![
        Just(MomentumForm::HeavyBall),
        Just(MomentumForm::LrInVelocity),
        Just(MomentumForm::MovingAverage)
    ];
    (
        (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
        0.5f64..0.999,
        (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
        any::<bool>(),
        weight_decay,
        prop_oneof![Just(0.0f64), 0.0f64..0.99],
        form,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(lr, alpha, eps, inside, wd, momentum, form, centered, maximize, seed)| {
                let config = Rmsprop::builder(lr)
                    .alpha(alpha)
                    .eps(eps)
                    .eps_inside_sqrt(inside)
                    .weight_decay(wd)
                    .momentum(momentum)
                    .momentum_form(form)
                    .centered(centered)
                    .maximize(maximize)
                    .build()
                    .unwrap();
                (config, seed)
            },
        )
}

// ---- Adagrad ----

fn adagrad_within<W: Element, T: Element, G: Element>(
    (config, step, seed): &(Adagrad, u64, u64),
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(*seed);
    let w0 = Misaligned::<W>::new(N, 1, || value::<W>(&mut rng));
    let s0 = Misaligned::<T>::new(N, 2, || value::<T>(&mut rng).abs());
    let g = Misaligned::<G>::new(N, 3, || value::<G>(&mut rng));
    let (mut w, mut s) = (w0.copy(), s0.copy());
    sequential(Backend::best())
        .adagrad_step(w.slice_mut(), s.slice_mut(), g.slice(), config, *step)
        .unwrap();
    let lr = config.lr();
    let clr = lr / (1.0 + (*step - 1) as f64 * config.lr_decay());
    for i in 0..N {
        let (wi, si, gi) = (
            to_f64(w0.slice()[i]),
            to_f64(s0.slice()[i]),
            to_f64(g.slice()[i]),
        );
        let (ge, gm, wd) = gradient_in(config.weight_decay(), config.maximize(), lr, wi, gi);
        let start = if *step == 1 {
            config.initial_accumulator_value()
        } else {
            si
        };
        let s_new = start + ge * ge;
        let s_mag = start + gm * gm;
        let std = s_new.sqrt() + config.eps();
        let w_new = wd - clr * ge / std;
        let w_err = K * U * (wi.abs() + clr * (gm + ge.abs()) / std);
        let at = |what: &str| {
            format!("{what}[{i}] (w {wi:e} sum {si:e} g {gi:e}, {config:?}, step {step})")
        };
        within(&at("weights"), w.slice()[i], w_new, w_err).map_err(fail)?;
        within(&at("sum"), s.slice()[i], s_new, K * U * s_mag).map_err(fail)?;
    }
    Ok(())
}

fn adagrad() -> impl Strategy<Value = (Adagrad, u64, u64)> {
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    let weight_decay = prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ];
    (
        (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
        prop_oneof![Just(0.0f64), 0.0f64..0.1],
        weight_decay,
        prop_oneof![Just(0.0f64), 0.0f64..1.0],
        (-12.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
        any::<bool>(),
        prop_oneof![Just(1u64), 2u64..100_000],
        any::<u64>(),
    )
        .prop_map(|(lr, lr_decay, wd, initial, eps, maximize, step, seed)| {
            let config = Adagrad::builder(lr)
                .lr_decay(lr_decay)
                .weight_decay(wd)
                .initial_accumulator_value(initial)
                .eps(eps)
                .maximize(maximize)
                .build()
                .unwrap();
            (config, step, seed)
        })
}

// ---- Lion ----

fn lion_within<W: Element, T: Element, G: Element>(
    (config, seed): &(Lion, u64),
) -> Result<(), TestCaseError> {
    let mut rng = Rng::new(*seed);
    let w0 = Misaligned::<W>::new(N, 1, || value::<W>(&mut rng));
    let m0 = Misaligned::<T>::new(N, 2, || value::<T>(&mut rng));
    let g = Misaligned::<G>::new(N, 3, || value::<G>(&mut rng));
    let (mut w, mut m) = (w0.copy(), m0.copy());
    sequential(Backend::best())
        .lion_step(w.slice_mut(), m.slice_mut(), g.slice(), config, 1)
        .unwrap();
    let (b1, b2) = (config.betas().0, config.betas().1);
    let lr = config.lr();
    for i in 0..N {
        let (wi, mi, gi) = (
            to_f64(w0.slice()[i]),
            to_f64(m0.slice()[i]),
            to_f64(g.slice()[i]),
        );
        let (ge, gm, wd) = gradient_in(config.weight_decay(), config.maximize(), lr, wi, gi);
        let c = b1 * mi + (1.0 - b1) * ge;
        let c_err = K * U * ((b1 * mi).abs() + (1.0 - b1) * gm);
        let at =
            |what: &str| format!("{what}[{i}] (w {wi:e} m {mi:e} g {gi:e} c {c:e}, {config:?})");
        let w_err = K * U * (wi.abs() + lr);
        if c.abs() > c_err {
            within(&at("weights"), w.slice()[i], wd - lr * c.signum(), w_err).map_err(fail)?;
        } else {
            // Rounding cannot resolve the sign of c: any of the three outcomes is right.
            let candidates = [wd - lr, wd, wd + lr]
                .map(|want| within(&at("weights"), w.slice()[i], want, w_err));
            if candidates.iter().all(Result::is_err) {
                return Err(fail(candidates[0].clone().unwrap_err()));
            }
        }
        let m_new = b2 * mi + (1.0 - b2) * ge;
        within(
            &at("m"),
            m.slice()[i],
            m_new,
            K * U * ((b2 * mi).abs() + (1.0 - b2) * gm),
        )
        .map_err(fail)?;
    }
    Ok(())
}

fn lion() -> impl Strategy<Value = (Lion, u64)> {
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    let weight_decay = prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ];
    (
        (-6.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
        0.0f64..0.999,
        0.0f64..0.999,
        weight_decay,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(lr, b1, b2, wd, maximize, seed)| {
            (
                Lion::builder(lr)
                    .betas(b1, b2)
                    .weight_decay(wd)
                    .maximize(maximize)
                    .build()
                    .unwrap(),
                seed,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(48)))]

    #[test]
    fn adam_within_bound_of_f64_reference(case in adam()) {
        for_each_dtype_triple!(adam_within, &case);
    }

    #[test]
    fn rmsprop_within_bound_of_f64_reference(case in rmsprop()) {
        for_each_dtype_triple!(rmsprop_within, &case);
    }

    #[test]
    fn adagrad_within_bound_of_f64_reference(case in adagrad()) {
        for_each_dtype_triple!(adagrad_within, &case);
    }

    #[test]
    fn lion_within_bound_of_f64_reference(case in lion()) {
        for_each_dtype_triple!(lion_within, &case);
    }
}

/// Lion's sign on every magnitude: subnormals, tiny and huge values move the weight by exactly
/// `lr` (a sign computed by masking bits gets some of these wrong), zeros leave it alone.
#[test]
fn lion_sign_is_right_for_every_magnitude() {
    let config = Lion::builder(0.5).betas(0.0, 0.0).build().unwrap();
    let magnitudes = [
        1e-45f32, 1e-40, 1.2e-38, 1e-30, 1e-10, 0.3, 1.0, 7.0, 1e10, 1e30, 3.4e38,
    ];
    for backend in common::backends() {
        for &x in &magnitudes {
            for sign in [1.0f32, -1.0] {
                // beta1 = 0: c = g, so the weight moves by -lr * sign(g).
                let g = vec![sign * x; 37];
                let (mut w, mut m) = (vec![2.0f32; 37], vec![0.0f32; 37]);
                sequential(backend)
                    .lion_step(&mut w, &mut m, &g, &config, 1)
                    .unwrap();
                assert!(
                    w.iter().all(|&wi| wi == 2.0 - 0.5 * sign),
                    "{backend}: g = {}: {w:?}",
                    sign * x
                );
            }
        }
        for zero in [0.0f32, -0.0] {
            let (mut w, mut m) = (vec![2.0f32; 37], vec![0.0f32; 37]);
            sequential(backend)
                .lion_step(&mut w, &mut m, &[zero; 37], &config, 1)
                .unwrap();
            assert!(w.iter().all(|&wi| wi == 2.0), "{backend}: g = {zero:?}");
        }
    }
}
