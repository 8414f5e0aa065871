//! Property tests of Adam/AdamW/AMSGrad, RMSprop, Adagrad, Lion and Adamax: on every backend that runs
//! here (the 16-lane emulations included), for all 27 combinations of element types, every
//! option, lengths 0..=2100, misaligned starts, random hyperparameters and values of every
//! magnitude (zeros, subnormals, 1e-30 to 1e30, infinities and NaNs), the result has exactly
//! the bits of the scalar oracle, sequentially and split across 1 and 4 threads.

use crate::common;
use crate::for_each_dtype_triple;

use common::harness::{Bufs, matches_oracle};
use common::proptest_cases;
use optkern::{
    Adagrad, Adam, Adamax, Element, EpsilonPlacement, Lion, MomentumForm, Rmsprop, WeightDecay,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// What every case has besides its config.
#[derive(Clone, Debug)]
struct Layout {
    len: usize,
    offsets: [usize; 3],
    seed: u64,
    special: bool,
    step: u64,
}

impl Layout {
    fn bufs<W: Element, T: Element, G: Element>(&self, non_negative: &[bool]) -> Bufs<W, T, G> {
        Bufs::new(
            self.len,
            self.offsets,
            non_negative,
            self.seed,
            self.special,
        )
    }
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        0usize..=2100,
        [0usize..16, 0usize..16, 0usize..16],
        any::<u64>(),
        any::<bool>(),
        prop_oneof![Just(1u64), 2u64..100, 100u64..10_000_000],
    )
        .prop_map(|(len, offsets, seed, special, step)| Layout {
            len,
            offsets,
            seed,
            special,
            step,
        })
}

fn lr() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0f64), (-6.0f64..1.0).prop_map(|e| 10f64.powf(e))]
}

fn beta() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0f64), Just(0.9), Just(0.999), 0.0f64..1.0]
}

fn eps() -> impl Strategy<Value = f64> {
    (-12.0f64..-1.0).prop_map(|e| 10f64.powf(e))
}

fn weight_decay() -> impl Strategy<Value = WeightDecay> {
    let wd = (-6.0f64..0.0).prop_map(|e| 10f64.powf(e));
    prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled),
    ]
}

fn momentum_form() -> impl Strategy<Value = MomentumForm> {
    prop_oneof![
        Just(MomentumForm::HeavyBall),
        Just(MomentumForm::LrInVelocity),
        Just(MomentumForm::MovingAverage)
    ]
}

// ---- Adam, AdamW, AMSGrad ----

fn adam() -> impl Strategy<Value = Adam> {
    let placement = prop_oneof![
        Just(EpsilonPlacement::Corrected),
        Just(EpsilonPlacement::Hat)
    ];
    (
        lr(),
        beta(),
        beta(),
        eps(),
        weight_decay(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        placement,
    )
        .prop_map(
            |(lr, b1, b2, eps, wd, amsgrad, maximize, bias_correction, placement)| {
                Adam::builder(lr)
                    .betas(b1, b2)
                    .eps(eps)
                    .weight_decay(wd)
                    .amsgrad(amsgrad)
                    .maximize(maximize)
                    .bias_correction(bias_correction)
                    .epsilon_placement(placement)
                    .build()
                    .unwrap()
            },
        )
}

fn adam_matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Adam, Layout),
) -> Result<(), TestCaseError> {
    let non_negative: &[bool] = if config.amsgrad() {
        &[false, true, true]
    } else {
        &[false, true]
    };
    let bufs = layout.bufs::<W, T, G>(non_negative);
    matches_oracle("adam", &bufs, |exec, b| {
        let (w, mut s, g) = b.parts();
        match s.as_mut_slice() {
            [m, v] => exec.adam_step(w, m, v, g, config, layout.step),
            [m, v, v_max] => exec.amsgrad_step(w, m, v, v_max, g, config, layout.step),
            _ => unreachable!(),
        }
    })
}

// ---- RMSprop ----

fn rmsprop() -> impl Strategy<Value = Rmsprop> {
    let momentum = prop_oneof![Just(0.0f64), Just(0.9), 0.0f64..1.0];
    (
        lr(),
        beta(),
        eps(),
        any::<bool>(),
        weight_decay(),
        momentum,
        momentum_form(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(lr, alpha, eps, inside, wd, momentum, form, centered, maximize)| {
                Rmsprop::builder(lr)
                    .alpha(alpha)
                    .eps(eps)
                    .eps_inside_sqrt(inside)
                    .weight_decay(wd)
                    .momentum(momentum)
                    .momentum_form(form)
                    .centered(centered)
                    .maximize(maximize)
                    .build()
                    .unwrap()
            },
        )
}

fn rmsprop_matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Rmsprop, Layout),
) -> Result<(), TestCaseError> {
    let mut non_negative = vec![true];
    if config.centered() {
        non_negative.push(false);
    }
    if config.momentum() > 0.0 {
        non_negative.push(false);
    }
    let bufs = layout.bufs::<W, T, G>(&non_negative);
    let centered = config.centered();
    matches_oracle("rmsprop", &bufs, |exec, b| {
        let (w, s, g) = b.parts();
        let mut s = s.into_iter();
        let sq = s.next().unwrap();
        let ga = if centered { s.next() } else { None };
        let buf = s.next();
        exec.rmsprop_step(w, sq, ga, buf, g, config, 1)
    })
}

// ---- Adagrad ----

fn adagrad() -> impl Strategy<Value = Adagrad> {
    let decay = prop_oneof![Just(0.0f64), (-6.0f64..0.0).prop_map(|e| 10f64.powf(e))];
    let initial = prop_oneof![Just(0.0f64), 0.0f64..1.0];
    (lr(), decay, weight_decay(), initial, eps(), any::<bool>()).prop_map(
        |(lr, lr_decay, wd, initial, eps, maximize)| {
            Adagrad::builder(lr)
                .lr_decay(lr_decay)
                .weight_decay(wd)
                .initial_accumulator_value(initial)
                .eps(eps)
                .maximize(maximize)
                .build()
                .unwrap()
        },
    )
}

fn adagrad_matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Adagrad, Layout),
) -> Result<(), TestCaseError> {
    let bufs = layout.bufs::<W, T, G>(&[true]);
    matches_oracle("adagrad", &bufs, |exec, b| {
        let (w, mut s, g) = b.parts();
        exec.adagrad_step(w, s[0], g, config, layout.step)
    })
}

// ---- Lion ----

fn lion() -> impl Strategy<Value = Lion> {
    (lr(), beta(), beta(), weight_decay(), any::<bool>()).prop_map(|(lr, b1, b2, wd, maximize)| {
        Lion::builder(lr)
            .betas(b1, b2)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .unwrap()
    })
}

fn lion_matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Lion, Layout),
) -> Result<(), TestCaseError> {
    let bufs = layout.bufs::<W, T, G>(&[false]);
    matches_oracle("lion", &bufs, |exec, b| {
        let (w, mut s, g) = b.parts();
        exec.lion_step(w, s[0], g, config, 1)
    })
}

// ---- Adamax ----

fn adamax() -> impl Strategy<Value = Adamax> {
    (lr(), beta(), beta(), eps(), weight_decay(), any::<bool>()).prop_map(
        |(lr, b1, b2, eps, wd, maximize)| {
            Adamax::builder(lr)
                .betas(b1, b2)
                .eps(eps)
                .weight_decay(wd)
                .maximize(maximize)
                .build()
                .unwrap()
        },
    )
}

fn adamax_matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Adamax, Layout),
) -> Result<(), TestCaseError> {
    let bufs = layout.bufs::<W, T, G>(&[false, true]);
    matches_oracle("adamax", &bufs, |exec, b| {
        let (w, mut s, g) = b.parts();
        let [m, u] = s.as_mut_slice() else {
            unreachable!()
        };
        exec.adamax_step(w, m, u, g, config, layout.step)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(96)))]

    #[test]
    fn adamax_bits_equal_scalar_oracle(case in (adamax(), layout())) {
        for_each_dtype_triple!(adamax_matches, &case);
    }

    #[test]
    fn adam_bits_equal_scalar_oracle(case in (adam(), layout())) {
        for_each_dtype_triple!(adam_matches, &case);
    }

    #[test]
    fn rmsprop_bits_equal_scalar_oracle(case in (rmsprop(), layout())) {
        for_each_dtype_triple!(rmsprop_matches, &case);
    }

    #[test]
    fn adagrad_bits_equal_scalar_oracle(case in (adagrad(), layout())) {
        for_each_dtype_triple!(adagrad_matches, &case);
    }

    #[test]
    fn lion_bits_equal_scalar_oracle(case in (lion(), layout())) {
        for_each_dtype_triple!(lion_matches, &case);
    }
}
