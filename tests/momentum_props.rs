//! Property tests of the momentum family: on every backend that runs here (the 16-lane
//! emulations included), for every combination of element types, every form and option,
//! lengths 0..=2100, misaligned starts and values of every magnitude, the result has exactly
//! the bits of the scalar oracle, sequentially and split across 1 and 4 threads.

use crate::common;
use crate::{for_each_dtype_pair, for_each_dtype_triple};

use common::data::{Misaligned, Rng};
use common::{backends, pools, same_bits, sequential, split_finely};
use optkern::{Backend, Element, Momentum, MomentumForm, Sgd, WeightDecay};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Clone, Debug)]
struct Case {
    form: MomentumForm,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: WeightDecay,
    maximize: bool,
    step: u64,
    len: usize,
    offsets: [usize; 3],
    seed: u64,
    special: bool,
}

fn lr() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0f64), (-6.0f64..1.0).prop_map(|e| 10f64.powf(e))]
}

fn weight_decay() -> impl Strategy<Value = WeightDecay> {
    let wd = (-6.0f64..0.0).prop_map(|e| 10f64.powf(e));
    prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let form = prop_oneof![
        Just(MomentumForm::HeavyBall),
        Just(MomentumForm::LrInVelocity),
        Just(MomentumForm::MovingAverage)
    ];
    let momentum = prop_oneof![Just(0.0f64), Just(0.9), Just(0.99), 0.0f64..1.0];
    let dampening = prop_oneof![Just(0.0f64), 0.0f64..=1.0];
    (
        (
            form,
            lr(),
            momentum,
            dampening,
            any::<bool>(),
            weight_decay(),
            any::<bool>(),
        ),
        (
            prop_oneof![Just(1u64), 2u64..1000],
            0usize..=2100,
            [0usize..16, 0usize..16, 0usize..16],
        ),
        (any::<u64>(), any::<bool>()),
    )
        .prop_map(
            |(
                (form, lr, momentum, dampening, nesterov, weight_decay, maximize),
                (step, len, offsets),
                (seed, special),
            )| {
                // Keep the options valid: dampening only in the PyTorch form, Nesterov only
                // with momentum and without dampening.
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
                    step,
                    len,
                    offsets,
                    seed,
                    special,
                }
            },
        )
}

impl Case {
    fn config(&self) -> Momentum {
        let builder = match self.form {
            MomentumForm::HeavyBall => Momentum::heavy_ball(self.lr, self.momentum),
            MomentumForm::LrInVelocity => Momentum::lr_in_velocity(self.lr, self.momentum),
            MomentumForm::MovingAverage => Momentum::moving_average(self.lr, self.momentum),
        };
        builder
            .dampening(self.dampening)
            .nesterov(self.nesterov)
            .weight_decay(self.weight_decay)
            .maximize(self.maximize)
            .build()
            .unwrap()
    }

    fn buffers<W: Element, T: Element, G: Element>(
        &self,
    ) -> (Misaligned<W>, Misaligned<T>, Misaligned<G>) {
        let mut rng = Rng::new(self.seed);
        let special = self.special;
        let w = Misaligned::new(self.len, self.offsets[0], || rng.value(special));
        let v = Misaligned::new(self.len, self.offsets[1], || rng.value(special));
        let g = Misaligned::new(self.len, self.offsets[2], || rng.value(special));
        (w, v, g)
    }
}

fn fail(backend: Backend, how: &str, detail: String) -> TestCaseError {
    TestCaseError::fail(format!("{backend} ({how}): {detail}"))
}

fn momentum_matches_oracle<W: Element, T: Element, G: Element>(
    case: &Case,
) -> Result<(), TestCaseError> {
    let config = case.config();
    let (w0, v0, g) = case.buffers::<W, T, G>();
    let (mut w_ref, mut v_ref) = (w0.copy(), v0.copy());
    sequential(Backend::Scalar)
        .momentum_step(
            w_ref.slice_mut(),
            v_ref.slice_mut(),
            g.slice(),
            &config,
            case.step,
        )
        .unwrap();
    let types = format!("w {}, v {}, g {}", W::DTYPE, T::DTYPE, G::DTYPE);
    for backend in backends() {
        let mut runs = vec![("sequential".to_owned(), sequential(backend), None)];
        for (name, pool) in pools() {
            runs.push((format!("split, {name}"), split_finely(backend), Some(pool)));
        }
        for (how, exec, pool) in runs {
            let (mut w, mut v) = (w0.copy(), v0.copy());
            let mut step =
                || exec.momentum_step(w.slice_mut(), v.slice_mut(), g.slice(), &config, case.step);
            match pool {
                Some(pool) => pool.install(step),
                None => step(),
            }
            .unwrap();
            let how = format!("{how}; {types}");
            same_bits("weights", w.slice(), w_ref.slice()).map_err(|e| fail(backend, &how, e))?;
            same_bits("velocity", v.slice(), v_ref.slice()).map_err(|e| fail(backend, &how, e))?;
        }
    }
    Ok(())
}

fn sgd_matches_oracle<W: Element, G: Element>(case: &Case) -> Result<(), TestCaseError> {
    let config = Sgd::builder(case.lr)
        .weight_decay(case.weight_decay)
        .maximize(case.maximize)
        .build()
        .unwrap();
    let (w0, _, g) = case.buffers::<W, f32, G>();
    let mut w_ref = w0.copy();
    sequential(Backend::Scalar)
        .sgd_step(w_ref.slice_mut(), g.slice(), &config, 1)
        .unwrap();
    for backend in backends() {
        for (name, pool) in pools() {
            let mut w = w0.copy();
            pool.install(|| split_finely(backend).sgd_step(w.slice_mut(), g.slice(), &config, 1))
                .unwrap();
            let how = format!("split, {name}; w {}, g {}", W::DTYPE, G::DTYPE);
            same_bits("weights", w.slice(), w_ref.slice()).map_err(|e| fail(backend, &how, e))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(256)))]

    #[test]
    fn momentum_bits_equal_scalar_oracle(case in case()) {
        for_each_dtype_triple!(momentum_matches_oracle, &case);
    }

    #[test]
    fn sgd_bits_equal_scalar_oracle(case in case()) {
        for_each_dtype_pair!(sgd_matches_oracle, &case);
    }
}

/// The fixed-type calls are PyTorch's plain heavy ball without the first-step rule: the same
/// bits as the config call at a step other than the first.
#[test]
fn fixed_type_calls_match_config_calls() {
    fn check<E: Element>(
        fixed: fn(&mut [E], &mut [E], &[E], f32, f32),
        sgd: fn(&mut [E], &[E], f32),
    ) {
        let mut rng = Rng::new(7);
        for len in [0, 1, 7, 8, 15, 16, 17, 100, 1000, 70_000] {
            let mk = |rng: &mut Rng| Misaligned::<E>::new(len, 3, || rng.value(false));
            let (w0, v0, g) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
            let config = Momentum::heavy_ball(0.01, 0.9).build().unwrap();
            let (mut w_ref, mut v_ref) = (w0.copy(), v0.copy());
            sequential(Backend::Scalar)
                .momentum_step(w_ref.slice_mut(), v_ref.slice_mut(), g.slice(), &config, 2)
                .unwrap();
            let (mut w, mut v) = (w0.copy(), v0.copy());
            fixed(w.slice_mut(), v.slice_mut(), g.slice(), 0.01, 0.9);
            same_bits("weights", w.slice(), w_ref.slice()).unwrap();
            same_bits("velocity", v.slice(), v_ref.slice()).unwrap();

            let mut w_ref = w0.copy();
            let plain = Sgd::new(0.01).unwrap();
            sequential(Backend::Scalar)
                .sgd_step(w_ref.slice_mut(), g.slice(), &plain, 1)
                .unwrap();
            let mut w = w0.copy();
            sgd(w.slice_mut(), g.slice(), 0.01);
            same_bits("sgd weights", w.slice(), w_ref.slice()).unwrap();
        }
    }
    check::<f32>(optkern::momentum_step_f32, optkern::sgd_step_f32);
    check::<optkern::f16>(optkern::momentum_step_f16, optkern::sgd_step_f16);
    check::<optkern::bf16>(optkern::momentum_step_bf16, optkern::sgd_step_bf16);
}
