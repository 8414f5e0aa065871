//! Many tensors per call, the gradient multiplier, master weights with a model copy,
//! stochastic rounding, the global gradient norm, the checked step, and LAMB.
//!
//! Bit-exactness is asserted with equality of bits: every backend that runs here (the 16-lane
//! emulations included), sequentially and split into fine chunks on 1 and 4 threads, against
//! the scalar oracle run sequentially; and the multi-tensor call against each tensor stepped
//! alone.

use crate::common;

use common::data::{Misaligned, Rng};
use common::{backends, pools, proptest_cases, same_bits, sequential, split_finely};
use optkern::{
    Adam, Backend, Error, Executor, Lamb, Optimizer, Sgd, StochasticRounding, Subnormals,
    TensorStep, Threads, WeightDecay, bf16, f16,
};
use optkern::{Element, GradNorm};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use common::cases::{CASES, non_negative, pick, random_config as optimizer};

// ---- a model: many tensors ----

/// The tensors of a model: weights, state, gradient and model copy of each, every buffer at
/// its own misaligned start.
struct Model<W: Element, T: Element, G: Element, C: Element> {
    tensors: Vec<Tensor<W, T, G, C>>,
}

/// Weights, state buffers, gradient, model copy.
type Tensor<W, T, G, C> = (
    Misaligned<W>,
    Vec<Misaligned<T>>,
    Misaligned<G>,
    Misaligned<C>,
);

impl<W: Element, T: Element, G: Element, C: Element> Model<W, T, G, C> {
    fn new(lengths: &[usize], optimizer: &Optimizer, seed: u64, special: bool) -> Self {
        let mut rng = Rng::new(seed);
        let tensors = lengths
            .iter()
            .map(|&n| {
                let off = (rng.next_u64() % 16) as usize;
                let w = Misaligned::new(n, off, || rng.value(special));
                let state = optimizer
                    .state_buffers()
                    .iter()
                    .map(|name| {
                        let nonneg = non_negative(name);
                        let off = (rng.next_u64() % 16) as usize;
                        Misaligned::new(n, off, || {
                            let x = rng.value(special);
                            if nonneg { x.abs() } else { x }
                        })
                    })
                    .collect();
                let g = Misaligned::new(n, (rng.next_u64() % 16) as usize, || rng.value(special));
                let c = Misaligned::new(n, (rng.next_u64() % 16) as usize, || rng.value(false));
                (w, state, g, c)
            })
            .collect();
        Model { tensors }
    }

    fn copy(&self) -> Self {
        Model {
            tensors: self
                .tensors
                .iter()
                .map(|(w, s, g, c)| {
                    (
                        w.copy(),
                        s.iter().map(Misaligned::copy).collect(),
                        g.copy(),
                        c.copy(),
                    )
                })
                .collect(),
        }
    }

    /// The tensors as a multi-tensor call takes them (`range` of them), with or without the
    /// model copies.
    fn steps(
        &mut self,
        range: core::ops::Range<usize>,
        with_copy: bool,
    ) -> Vec<TensorStep<'_, W, T, G, C>> {
        self.tensors[range]
            .iter_mut()
            .map(|(w, s, g, c)| TensorStep {
                weights: w.slice_mut(),
                state: s.iter_mut().map(Misaligned::slice_mut).collect(),
                grad: g.slice(),
                model_copy: with_copy.then(|| c.slice_mut()),
            })
            .collect()
    }

    fn grads(&self) -> Vec<&[G]> {
        self.tensors.iter().map(|t| t.2.slice()).collect()
    }

    fn same_as(&self, other: &Self) -> Result<(), String> {
        for (k, (a, b)) in self.tensors.iter().zip(&other.tensors).enumerate() {
            same_bits(&format!("tensor {k} weights"), a.0.slice(), b.0.slice())?;
            for (j, (x, y)) in a.1.iter().zip(&b.1).enumerate() {
                same_bits(&format!("tensor {k} state {j}"), x.slice(), y.slice())?;
            }
            same_bits(&format!("tensor {k} gradient"), a.2.slice(), b.2.slice())?;
            same_bits(&format!("tensor {k} model copy"), a.3.slice(), b.3.slice())?;
        }
        Ok(())
    }
}

/// One multi-tensor case.
#[derive(Clone, Debug)]
struct Case {
    kind: u64,
    lengths: Vec<usize>,
    seed: u64,
    special: bool,
    step: u64,
    with_copy: bool,
    rounding: Option<StochasticRounding>,
    scale: f64,
    subnormals: Subnormals,
}

fn case() -> impl Strategy<Value = Case> {
    let length = prop_oneof![0usize..=70, 0usize..=2100, 2000usize..=6000];
    (
        0u64..CASES.len() as u64,
        proptest::collection::vec(length, 1..=5),
        any::<u64>(),
        any::<bool>(),
        prop_oneof![Just(1u64), 2u64..1000],
        any::<bool>(),
        proptest::option::of((any::<u64>(), 0u64..1 << 40)),
        prop_oneof![Just(1.0f64), Just(1.0 / 1024.0), Just(0.37), Just(-2.0)],
        prop_oneof![Just(Subnormals::Keep), Just(Subnormals::Flush)],
    )
        .prop_map(
            |(kind, lengths, seed, special, step, with_copy, rounding, scale, subnormals)| Case {
                kind,
                lengths,
                seed,
                special,
                step,
                with_copy,
                rounding: rounding
                    .map(|(seed, index_base)| StochasticRounding { seed, index_base }),
                scale,
                subnormals,
            },
        )
}

fn executor(base: Executor, case: &Case) -> Executor {
    base.with_grad_scale(case.scale)
        .unwrap()
        .with_stochastic_rounding(case.rounding)
        .with_subnormals(case.subnormals)
}

/// The multi-tensor call on every backend and thread count has the scalar oracle's bits, and
/// so does each tensor stepped alone (with its `index_base` and, for LAMB, the global
/// clipping folded into the multiplier).
fn many_matches<W: Element, T: Element, G: Element, C: Element>(
    case: &Case,
) -> Result<(), TestCaseError> {
    let optimizer = optimizer(case.kind, &mut Rng::new(case.seed ^ 0x5eed));
    let what = format!(
        "{optimizer:?}; w {}, state {}, g {}, copy {}",
        W::DTYPE,
        T::DTYPE,
        G::DTYPE,
        C::DTYPE
    );
    let fail = |how: &str, e: String| TestCaseError::fail(format!("{how}; {what}: {e}"));
    let initial = Model::<W, T, G, C>::new(&case.lengths, &optimizer, case.seed, case.special);

    let mut oracle = initial.copy();
    executor(sequential(Backend::Scalar), case)
        .step_many(
            &mut oracle.steps(0..case.lengths.len(), case.with_copy),
            &optimizer,
            case.step,
        )
        .map_err(|e| fail("oracle", e.to_string()))?;

    for backend in backends() {
        let mut runs = vec![("sequential".to_owned(), sequential(backend), None)];
        for (name, pool) in pools() {
            runs.push((format!("split, {name}"), split_finely(backend), Some(pool)));
        }
        for (how, exec, pool) in runs {
            let exec = executor(exec, case);
            let mut model = initial.copy();
            let mut run = || {
                exec.step_many(
                    &mut model.steps(0..case.lengths.len(), case.with_copy),
                    &optimizer,
                    case.step,
                )
            };
            match pool {
                Some(pool) => pool.install(run),
                None => run(),
            }
            .map_err(|e| fail(&format!("{backend} ({how})"), e.to_string()))?;
            model
                .same_as(&oracle)
                .map_err(|e| fail(&format!("{backend} ({how})"), e))?;
        }
    }

    // Each tensor alone, with the numbering and the multiplier it had in the call.
    let mut alone = initial.copy();
    let (mut config, mut scale) = (optimizer, case.scale);
    if let Optimizer::Lamb(lamb) = optimizer
        && let Some(max) = lamb.max_grad_norm()
    {
        let norm = sequential(Backend::Scalar)
            .grad_norm(&initial.grads())
            .norm()
            * scale.abs();
        if norm > max {
            scale /= norm / max;
        }
        config = rebuild_lamb_without_clipping(lamb).into();
    }
    let mut index = case.rounding.map_or(0, |r| r.index_base);
    for (k, &n) in case.lengths.iter().enumerate() {
        let rounding = case.rounding.map(|r| StochasticRounding {
            index_base: index,
            ..r
        });
        let exec = sequential(Backend::Scalar)
            .with_grad_scale(scale)
            .unwrap()
            .with_stochastic_rounding(rounding)
            .with_subnormals(case.subnormals);
        exec.step_many(
            &mut alone.steps(k..k + 1, case.with_copy),
            &config,
            case.step,
        )
        .map_err(|e| fail("alone", e.to_string()))?;
        index += n as u64;
    }
    alone
        .same_as(&oracle)
        .map_err(|e| fail("each tensor alone", e))?;
    Ok(())
}

/// The same LAMB config with `max_grad_norm = None`.
fn rebuild_lamb_without_clipping(lamb: Lamb) -> Lamb {
    Lamb::builder(lamb.lr())
        .weight_decay(lamb.weight_decay())
        .betas(lamb.betas().0, lamb.betas().1)
        .eps(lamb.eps())
        .bias_correction(lamb.bias_correction())
        .grad_averaging(lamb.grad_averaging())
        .max_grad_norm(None)
        .trust_clip(lamb.trust_clip())
        .always_adapt(lamb.always_adapt())
        .maximize(lamb.maximize())
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(48)))]

    #[test]
    fn many_f32_master_weights_bf16_copy(case in case()) {
        many_matches::<f32, f32, f32, bf16>(&case)?;
    }

    #[test]
    fn many_f32_master_weights_f16_copy_bf16_state(case in case()) {
        many_matches::<f32, bf16, f16, f16>(&case)?;
    }

    #[test]
    fn many_bf16_weights_f32_state(case in case()) {
        many_matches::<bf16, f32, bf16, bf16>(&case)?;
    }

    #[test]
    fn many_all_f16(case in case()) {
        many_matches::<f16, f16, f16, f16>(&case)?;
    }
}

// ---- single-tensor calls agree with the multi-tensor call ----

#[test]
fn single_tensor_calls_match_the_multi_tensor_call() {
    let mut rng = Rng::new(7);
    for trial in 0..40 {
        let n = [0usize, 1, 37, 2048, 3000][trial % 5];
        let rounding = (trial % 2 == 1).then_some(StochasticRounding {
            seed: trial as u64,
            index_base: 99,
        });
        let exec = Executor::new()
            .unwrap()
            .with_grad_scale(0.5)
            .unwrap()
            .with_stochastic_rounding(rounding);
        let step = 1 + trial as u64 % 3;
        for kind in [2u64, 6] {
            let config = optimizer(kind, &mut rng);
            let initial = Model::<bf16, f32, bf16, bf16>::new(&[n], &config, rng.next_u64(), false);
            let mut many = initial.copy();
            exec.step_many(&mut many.steps(0..1, false), &config, step)
                .unwrap();
            let mut single = initial.copy();
            let (w, s, g, _) = &mut single.tensors[0];
            let [m, v, rest @ ..] = &mut s[..] else {
                unreachable!()
            };
            match config {
                Optimizer::Adam(c) if c.amsgrad() => exec.amsgrad_step(
                    w.slice_mut(),
                    m.slice_mut(),
                    v.slice_mut(),
                    rest[0].slice_mut(),
                    g.slice(),
                    &c,
                    step,
                ),
                Optimizer::Adam(c) => exec.adam_step(
                    w.slice_mut(),
                    m.slice_mut(),
                    v.slice_mut(),
                    g.slice(),
                    &c,
                    step,
                ),
                Optimizer::Lamb(c) => exec.lamb_step(
                    w.slice_mut(),
                    m.slice_mut(),
                    v.slice_mut(),
                    g.slice(),
                    &c,
                    step,
                ),
                _ => unreachable!(),
            }
            .unwrap();
            single
                .same_as(&many)
                .unwrap_or_else(|e| panic!("{config:?}, n = {n}: {e}"));
        }
    }
}

// ---- the global gradient norm ----

/// The sum of squares in `f64`, naively: an error below `n * 2^-53` of the sum.
fn reference_sum_of_squares<G: Element>(grads: &[&[G]]) -> f64 {
    grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|x| (x.to_f32() as f64).powi(2))
        .sum()
}

fn norm_everywhere<G: Element>(grads: &[&[G]]) -> GradNorm {
    let oracle = sequential(Backend::Scalar).grad_norm(grads);
    for backend in backends() {
        assert_eq!(
            sequential(backend)
                .grad_norm(grads)
                .sum_of_squares()
                .to_bits(),
            oracle.sum_of_squares().to_bits(),
            "{backend}"
        );
        for (name, pool) in pools() {
            let got = pool.install(|| split_finely(backend).grad_norm(grads));
            assert_eq!(
                got.sum_of_squares().to_bits(),
                oracle.sum_of_squares().to_bits(),
                "{backend}, {name}"
            );
            let got = pool.install(|| {
                Executor::with_backend(backend)
                    .unwrap()
                    .with_threads(Threads::Parallel {
                        min_len: 1,
                        min_chunk: 1,
                    })
                    .grad_norm(grads)
            });
            assert_eq!(
                got.sum_of_squares().to_bits(),
                oracle.sum_of_squares().to_bits(),
                "{backend}, {name}, min_chunk 1"
            );
        }
    }
    oracle
}

fn grad_norm_case<G: Element>(seed: u64) {
    let mut rng = Rng::new(seed);
    let count = 1 + rng.next_u64() % 6;
    let grads: Vec<Misaligned<G>> = (0..count)
        .map(|_| {
            let n = pick(&mut rng, &[0usize, 1, 15, 2047, 2048, 2049, 5000, 20_000]);
            let off = (rng.next_u64() % 16) as usize;
            let scale = pick(&mut rng, &[1.0f32, 1e-20, 1e15]);
            Misaligned::new(n, off, || rng.value(false) * scale)
        })
        .collect();
    let slices: Vec<&[G]> = grads.iter().map(Misaligned::slice).collect();
    let norm = norm_everywhere(&slices);
    let want = reference_sum_of_squares(&slices);
    let n: usize = slices.iter().map(|g| g.len()).sum();
    assert!(
        norm.is_finite() == want.is_finite(),
        "finiteness: {norm:?} vs {want}"
    );
    if want.is_finite() {
        let bound = want * (n as f64 + 16.0) * f64::EPSILON;
        assert!(
            (norm.sum_of_squares() - want).abs() <= bound,
            "{} vs {want} (bound {bound:e})",
            norm.sum_of_squares()
        );
    }

    // A non-finite value anywhere is found, on every backend and thread count.
    if n > 0 {
        let mut grads: Vec<Misaligned<G>> = grads.iter().map(Misaligned::copy).collect();
        let mut k = (rng.next_u64() % grads.len() as u64) as usize;
        while grads[k].slice().is_empty() {
            k = (k + 1) % grads.len();
        }
        let at = (rng.next_u64() % grads[k].slice().len() as u64) as usize;
        let bad = pick(&mut rng, &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        grads[k].slice_mut()[at] = G::from_f32(bad);
        let slices: Vec<&[G]> = grads.iter().map(Misaligned::slice).collect();
        assert!(
            !norm_everywhere(&slices).is_finite(),
            "{bad} at {at} of tensor {k}"
        );
    }
}

#[test]
fn grad_norm_is_deterministic_and_accurate() {
    for seed in 0..24 {
        grad_norm_case::<f32>(seed);
        grad_norm_case::<bf16>(seed);
        grad_norm_case::<f16>(seed);
    }
    // The largest f32 values square without overflow in f64.
    let big = vec![f32::MAX; 3000];
    assert!(
        sequential(Backend::Scalar)
            .grad_norm(&[&big[..]])
            .is_finite()
    );
    let norm = Executor::new()
        .unwrap()
        .grad_norm::<f32>(&[&[3.0, 4.0], &[12.0]]);
    assert_eq!(norm.norm(), 13.0);
    assert_eq!(norm.clip_coefficient(1.0), 1.0 / (13.0 + 1e-6));
    assert_eq!(norm.clip_coefficient(100.0), 1.0);
}

// ---- the checked step ----

#[test]
fn checked_step_skips_non_finite_gradients_writing_nothing() {
    let mut rng = Rng::new(11);
    for kind in 0..CASES.len() as u64 {
        let config = optimizer(kind, &mut rng);
        let initial = Model::<f32, f32, bf16, bf16>::new(&[100, 3000, 7], &config, kind, false);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut model = initial.copy();
            model.tensors[1].2.slice_mut()[2999] = bf16::from_f32(bad);
            let snapshot = model.copy();
            let exec = Executor::new()
                .unwrap()
                .with_grad_scale(1.0 / 65536.0)
                .unwrap();
            let report = exec
                .check_and_step(&mut model.steps(0..3, true), &config, 5, Some(1.0))
                .unwrap();
            assert!(
                !report.applied && !report.grad_norm.expect("computed").is_finite(),
                "{report:?}"
            );
            model
                .same_as(&snapshot)
                .unwrap_or_else(|e| panic!("{config:?} with {bad}: {e}"));
        }
    }
}

#[test]
fn checked_step_folds_unscaling_and_clipping_into_one_multiplier() {
    let mut rng = Rng::new(12);
    for kind in 0..CASES.len() as u64 {
        let config = optimizer(kind, &mut rng);
        for (loss_scale, max_norm) in [
            (1.0, None),
            (1024.0, Some(1.0)),
            (8.0, Some(1e6)),
            (2.0, Some(1e-3)),
        ] {
            let initial =
                Model::<f32, f32, f32, bf16>::new(&[100, 3000, 7], &config, kind + 100, false);
            let exec = Executor::new()
                .unwrap()
                .with_grad_scale(1.0 / loss_scale)
                .unwrap();
            let mut checked = initial.copy();
            let report = exec
                .check_and_step(&mut checked.steps(0..3, true), &config, 3, max_norm)
                .unwrap();
            assert!(report.applied);
            // PyTorch: unscale, then clip_grad_norm_(max_norm) on the unscaled gradients.
            let norm = (reference_sum_of_squares(&initial.grads())).sqrt() / loss_scale;
            let clip = max_norm.map_or(1.0, |max| (max / (norm + 1e-6)).min(1.0));
            let want = clip / loss_scale;
            assert!(
                (report.multiplier - want).abs() <= want * 1e-12,
                "{} vs {want}",
                report.multiplier
            );
            let mut manual = initial.copy();
            Executor::new()
                .unwrap()
                .with_grad_scale(report.multiplier)
                .unwrap()
                .step_many(&mut manual.steps(0..3, true), &config, 3)
                .unwrap();
            checked
                .same_as(&manual)
                .unwrap_or_else(|e| panic!("{config:?}: {e}"));
        }
    }
}

// ---- bad input ----

#[test]
fn multi_tensor_calls_refuse_bad_tensors_writing_nothing() {
    let adam: Optimizer = Adam::builder(1e-3).build().unwrap().into();
    let initial = Model::<f32, f32, f32, bf16>::new(&[10, 20, 30], &adam, 1, false);
    let exec = Executor::new().unwrap();
    let check =
        |model: &mut Model<f32, f32, f32, bf16>, result: Result<(), Error>, words: &[&str]| {
            let e = result.expect_err("refused");
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{text:?} lacks {w:?}");
            }
            model.same_as(&initial).unwrap();
        };

    // A missing state buffer in tensor 2.
    let mut model = initial.copy();
    let result = {
        let mut steps = model.steps(0..3, false);
        steps[2].state.pop();
        exec.step_many(&mut steps, &adam, 1)
    };
    check(
        &mut model,
        result,
        &["tensor 2", "2 state buffers", "1 were given"],
    );

    // A short gradient in tensor 1 (after tensor 0, which is fine).
    let mut model = initial.copy();
    let short = vec![0.0f32; 19];
    let result = {
        let mut steps = model.steps(0..3, false);
        steps[1].grad = &short;
        exec.step_many(&mut steps, &adam, 1)
    };
    check(&mut model, result, &["tensor 1", "gradient", "19", "20"]);

    // A model copy of the wrong length in the last tensor; and the checked step.
    let mut model = initial.copy();
    let mut copy = vec![bf16::ZERO; 31];
    let result = {
        let mut steps = model.steps(0..3, true);
        steps[2].model_copy = Some(&mut copy);
        exec.check_and_step(&mut steps, &adam, 1, Some(1.0))
            .map(|_| ())
    };
    check(&mut model, result, &["tensor 2", "model copy", "31", "30"]);

    // Step 0, and an invalid max_norm.
    let mut model = initial.copy();
    let result = exec.step_many(&mut model.steps(0..3, true), &adam, 0);
    check(&mut model, result, &["step 0"]);
    let mut model = initial.copy();
    let result = exec
        .check_and_step(&mut model.steps(0..3, true), &adam, 1, Some(f64::NAN))
        .map(|_| ());
    check(&mut model, result, &["max_norm"]);

    // LAMB's single-tensor call checks lengths too.
    let lamb = Lamb::builder(1e-3).build().unwrap();
    let (mut w, mut m, mut v, g) = (
        vec![1.0f32; 5],
        vec![0.0f32; 5],
        vec![0.0f32; 4],
        vec![1.0f32; 5],
    );
    let e = exec
        .lamb_step(&mut w, &mut m, &mut v, &g, &lamb, 1)
        .unwrap_err();
    assert!(
        e.to_string().contains("lamb_step") && e.to_string().contains("the v buffer"),
        "{e}"
    );
    assert_eq!((w, m), (vec![1.0f32; 5], vec![0.0f32; 5]));
    assert!(
        Lamb::builder(1e-3)
            .max_grad_norm(Some(0.0))
            .build()
            .is_err()
    );
    assert!(Lamb::builder(1e-3).betas(1.0, 0.9).build().is_err());
}

// ---- stochastic rounding ----

/// Rounds `x` onto the grid of `E` stochastically, `n` times (one element each), through the
/// model copy of f32 master weights that plain SGD with a zero gradient leaves unchanged.
fn rounded_many<E: Element>(x: f32, n: usize, seed: u64, step: u64) -> Vec<E> {
    let sgd: Optimizer = Sgd::new(0.1).unwrap().into();
    let (mut w, g, mut copy) = (vec![x; n], vec![0.0f32; n], vec![E::ZERO; n]);
    let exec = Executor::new()
        .unwrap()
        .with_stochastic_rounding(Some(StochasticRounding {
            seed,
            index_base: 0,
        }));
    let mut steps =
        [TensorStep::<f32, f32, f32>::new(&mut w, vec![], &g).model_copy(&mut copy[..])];
    exec.step_many(&mut steps, &sgd, step).unwrap();
    assert!(w.iter().all(|&wi| wi == x));
    copy
}

/// The two neighbours of `x` on the grid of `E`.
fn neighbours<E: Element>(x: f32) -> (f32, f32) {
    let near = E::from_f32(x).to_f32();
    let step_to = |toward: f32| {
        let mut y = near;
        let mut bits = near.to_bits();
        while y == near {
            bits = if (toward > near) == (near >= 0.0) {
                bits + 1
            } else {
                bits - 1
            };
            y = E::from_f32(f32::from_bits(bits)).to_f32();
        }
        y
    };
    if near == x {
        (x, x)
    } else if near < x {
        (near, step_to(f32::INFINITY))
    } else {
        (step_to(f32::NEG_INFINITY), near)
    }
}

fn unbiased<E: Element>() {
    let mut rng = Rng::new(3);
    let n = 1 << 14;
    for trial in 0..40 {
        let x = (rng.range(-4.0, 4.0) * 10f64.powi(pick(&mut rng, &[-3, 0, 2]))) as f32;
        let (lo, hi) = neighbours::<E>(x);
        let rounded = rounded_many::<E>(x, n, trial, 1 + trial);
        let values: Vec<f32> = rounded.iter().map(|r| r.to_f32()).collect();
        assert!(
            values.iter().all(|&v| v == lo || v == hi),
            "{x}: values besides {lo} and {hi}"
        );
        let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let p = if hi > lo {
            (x - lo) as f64 / (hi - lo) as f64
        } else {
            0.0
        };
        // The mean of n Bernoulli choices: standard deviation sqrt(p(1-p)/n) of the gap.
        let sigma = (hi - lo) as f64 * (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (mean - x as f64).abs() <= 5.0 * sigma + (hi - lo) as f64 * 1e-3,
            "{} {x}: mean {mean} (p = {p}, sigma {sigma:e})",
            E::DTYPE
        );
    }
    // Values on the grid stay where they are.
    let on_grid = E::from_f32(1.5).to_f32();
    assert!(
        rounded_many::<E>(on_grid, 1000, 1, 1)
            .iter()
            .all(|r| r.to_f32() == on_grid)
    );
}

#[test]
fn stochastic_rounding_is_unbiased() {
    unbiased::<bf16>();
    unbiased::<f16>();
}

/// An update smaller than half a unit in the last place never moves a bf16 weight with
/// round-to-nearest; with stochastic rounding it moves it by the right amount on average.
#[test]
fn stochastic_rounding_lets_small_updates_accumulate() {
    let n = 1 << 13;
    let steps = 200u64;
    let (lr, grad) = (1e-3f64, 1.0f32); // each step: -1e-3; half a bf16 unit at 1 is 2^-8
    let sgd: Optimizer = Sgd::new(lr).unwrap().into();
    let g = vec![bf16::from_f32(grad); n];
    let run = |rounding: Option<StochasticRounding>| {
        let mut w = vec![bf16::ONE; n];
        let exec = Executor::new().unwrap().with_stochastic_rounding(rounding);
        for step in 1..=steps {
            exec.step_many(
                &mut [TensorStep::<bf16, f32, bf16>::new(&mut w, vec![], &g)],
                &sgd,
                step,
            )
            .unwrap();
        }
        w.iter().map(|x| x.to_f32() as f64).sum::<f64>() / n as f64
    };
    assert_eq!(run(None), 1.0, "round-to-nearest loses every update");
    let mean = run(Some(StochasticRounding {
        seed: 42,
        index_base: 0,
    }));
    let want = 1.0 - lr * steps as f64;
    // Each step adds at most one unit (2^-8 below 1) of variance-carrying noise per element.
    let bound = 5.0 * (steps as f64).sqrt() * 2f64.powi(-8) / (n as f64).sqrt();
    assert!(
        (mean - want).abs() <= bound,
        "mean {mean}, want {want} +- {bound}"
    );
}

#[test]
fn stochastic_rounding_depends_on_seed_step_and_index_only() {
    let x = 1.0f32 + 2f32.powi(-9);
    let a = rounded_many::<bf16>(x, 5000, 9, 3);
    assert_eq!(a, rounded_many::<bf16>(x, 5000, 9, 3));
    assert_ne!(a, rounded_many::<bf16>(x, 5000, 10, 3), "another seed");
    assert_ne!(a, rounded_many::<bf16>(x, 5000, 9, 4), "another step");
    // Round-to-nearest-even without it.
    let sgd: Optimizer = Sgd::new(0.1).unwrap().into();
    let (mut w, g, mut copy) = (vec![x; 10], vec![0.0f32; 10], vec![bf16::ZERO; 10]);
    Executor::new()
        .unwrap()
        .step_many(
            &mut [TensorStep::<f32, f32, f32>::new(&mut w, vec![], &g).model_copy(&mut copy[..])],
            &sgd,
            1,
        )
        .unwrap();
    assert!(copy.iter().all(|c| *c == bf16::from_f32(x)));
}

// ---- LAMB against an f64 reference ----

/// Weights, `m`, `v` and gradient of one tensor, in `f64`.
type Exact = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// timm's LAMB in f64 on one tensor (or several: the clipping uses all gradients).
fn lamb_reference(config: &Lamb, tensors: &mut [Exact], step: u64) {
    let (b1, b2) = config.betas();
    let (wd, decoupled) = match config.weight_decay() {
        WeightDecay::None => (0.0, false),
        WeightDecay::L2(wd) => (wd, false),
        WeightDecay::Decoupled(wd) => (wd, true),
    };
    let lr = config.lr();
    let sign = if config.maximize() { -1.0 } else { 1.0 };
    let mut clip = 1.0;
    if let Some(max) = config.max_grad_norm() {
        let norm = tensors
            .iter()
            .flat_map(|t| t.3.iter())
            .map(|g| g * g)
            .sum::<f64>()
            .sqrt();
        if norm > max {
            clip = norm / max;
        }
    }
    let (bc1, bc2) = if config.bias_correction() {
        (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32))
    } else {
        (1.0, 1.0)
    };
    for (w, m, v, g) in tensors.iter_mut() {
        let n = w.len();
        let mut u = vec![0.0; n];
        for i in 0..n {
            let gi = sign * g[i] / clip;
            m[i] = b1 * m[i]
                + if config.grad_averaging() {
                    (1.0 - b1) * gi
                } else {
                    gi
                };
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            if decoupled {
                w[i] *= 1.0 - lr * wd;
            }
            u[i] = (m[i] / bc1) / (v[i].sqrt() / bc2.sqrt() + config.eps());
            if !decoupled {
                u[i] += wd * w[i];
            }
        }
        let mut trust = 1.0;
        if wd != 0.0 || config.always_adapt() {
            let wn = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            let un = u.iter().map(|x| x * x).sum::<f64>().sqrt();
            trust = if wn > 0.0 && un > 0.0 { wn / un } else { 1.0 };
            if config.trust_clip() {
                trust = trust.min(1.0);
            }
        }
        for i in 0..n {
            w[i] -= lr * trust * u[i];
        }
    }
}

#[test]
fn lamb_matches_an_f64_reference() {
    let mut rng = Rng::new(21);
    for trial in 0..60 {
        let config = common::cases::lamb::lamb(&mut rng);
        let lengths = [
            1 + (rng.next_u64() % 3000) as usize,
            1 + (rng.next_u64() % 50) as usize,
        ];
        let mut exact: Vec<Exact> = lengths
            .iter()
            .map(|&n| {
                let mut f = |lo: f64, hi: f64| {
                    (0..n)
                        .map(|_| rng.range(lo, hi) as f32 as f64)
                        .collect::<Vec<f64>>()
                };
                (f(-1.0, 1.0), f(-0.1, 0.1), f(0.0, 0.01), f(-2.0, 2.0))
            })
            .collect();
        let mut w: Vec<Vec<f32>> = exact
            .iter()
            .map(|t| t.0.iter().map(|&x| x as f32).collect())
            .collect();
        let mut m: Vec<Vec<f32>> = exact
            .iter()
            .map(|t| t.1.iter().map(|&x| x as f32).collect())
            .collect();
        let mut v: Vec<Vec<f32>> = exact
            .iter()
            .map(|t| t.2.iter().map(|&x| x as f32).collect())
            .collect();
        let g: Vec<Vec<f32>> = exact
            .iter()
            .map(|t| t.3.iter().map(|&x| x as f32).collect())
            .collect();
        let step = 1 + trial as u64 % 7;
        let mut steps: Vec<TensorStep<'_, f32, f32, f32>> = w
            .iter_mut()
            .zip(m.iter_mut().zip(v.iter_mut()))
            .zip(&g)
            .map(|((w, (m, v)), g)| TensorStep::new(w, vec![&mut m[..], &mut v[..]], g))
            .collect();
        Executor::new()
            .unwrap()
            .step_many(&mut steps, &config.into(), step)
            .unwrap();
        drop(steps);
        lamb_reference(&config, &mut exact, step);
        for (k, t) in exact.iter().enumerate() {
            for i in 0..t.0.len() {
                // The update is lr * trust * u with |u| up to ~1/(1-beta1) and trust up to
                // |w| / |u|: compare the change of each weight against its size.
                let (got, want) = (w[k][i] as f64, t.0[i]);
                let scale = want.abs().max(config.lr() * 10.0).max(1e-3);
                assert!(
                    (got - want).abs() <= 1e-5 * scale,
                    "trial {trial} {config:?}: tensor {k}[{i}]: {got} vs {want}"
                );
                assert!(
                    (m[k][i] as f64 - t.1[i]).abs() <= 1e-5 * t.1[i].abs() + 1e-7,
                    "m"
                );
                assert!(
                    (v[k][i] as f64 - t.2[i]).abs() <= 1e-5 * t.2[i].abs() + 1e-9,
                    "v"
                );
            }
        }
    }
}
