//! Bad input is refused before anything is written: every rejected call leaves every buffer
//! bit-identical to before, returns an error that says what is wrong (the `try_` calls and the
//! executor), or panics with that message (the plain calls).

use crate::common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use optkern::{
    Backend, Error, Executor, Momentum, Sgd, Threads, WeightDecay, bf16, f16, momentum_step,
    try_momentum_step, try_momentum_step_bf16, try_momentum_step_f16, try_momentum_step_f32,
    try_sgd_step, try_sgd_step_f32,
};

fn buffers(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = common::data::Rng::new(seed);
    (0..n).map(|_| rng.value(true)).collect()
}

/// Runs `call` on copies of the buffers and checks it failed with an error whose message
/// contains every one of `words`, and wrote nothing.
fn refused<E: Copy + PartialEq + std::fmt::Debug>(
    w: &[E],
    v: &[E],
    g: &[E],
    words: &[&str],
    call: impl FnOnce(&mut [E], &mut [E], &[E]) -> Result<(), Error>,
) {
    let (mut w2, mut v2, g2) = (w.to_vec(), v.to_vec(), g.to_vec());
    let err = call(&mut w2, &mut v2, &g2).expect_err("the call should have been refused");
    let msg = err.to_string();
    for word in words {
        assert!(
            msg.contains(word),
            "message {msg:?} does not mention {word:?}"
        );
    }
    let same = |a: &[E], b: &[E]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| bits_eq(x, y));
    assert!(
        same(&w2, w) && same(&v2, v) && same(&g2, g),
        "a refused call wrote: {msg}"
    );
}

fn bits_eq<E: Copy>(a: &E, b: &E) -> bool {
    // SAFETY: compares the bytes of two plain values of the same type (f32, f16, bf16).
    let bytes = |x: &E| unsafe {
        std::slice::from_raw_parts((x as *const E).cast::<u8>(), size_of::<E>()).to_vec()
    };
    bytes(a) == bytes(b)
}

#[test]
fn length_mismatches_name_the_buffers_and_lengths() {
    let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
    let w = buffers(100, 1);
    for backend in common::backends() {
        let exec = Executor::with_backend(backend).unwrap();
        refused(
            &w,
            &buffers(99, 2),
            &buffers(100, 3),
            &["velocity", "99", "100"],
            |w, v, g| exec.momentum_step(w, v, g, &config, 3),
        );
        refused(
            &w,
            &buffers(100, 2),
            &buffers(101, 3),
            &["gradient", "101", "100"],
            |w, v, g| exec.momentum_step(w, v, g, &config, 3),
        );
        refused(
            &w,
            &[],
            &buffers(7, 3),
            &["sgd_step", "gradient", "7", "100"],
            |w, _, g| exec.sgd_step(w, g, &Sgd::new(0.1).unwrap(), 1),
        );
    }
    refused(
        &w,
        &buffers(100, 2),
        &buffers(64, 3),
        &["momentum_step_f32", "gradient", "64"],
        |w, v, g| try_momentum_step_f32(w, v, g, 0.1, 0.9),
    );
    refused(
        &w,
        &[],
        &buffers(3, 3),
        &["sgd_step_f32", "3", "100"],
        |w, _, g| try_sgd_step_f32(w, g, 0.1),
    );
    let to_bf16 = |x: &[f32]| x.iter().map(|x| bf16::from_f32(*x)).collect::<Vec<_>>();
    refused(
        &to_bf16(&w),
        &to_bf16(&buffers(98, 2)),
        &to_bf16(&buffers(100, 3)),
        &["98"],
        |w, v, g| try_momentum_step_bf16(w, v, g, 0.1, 0.9),
    );
    let to_f16 = |x: &[f32]| x.iter().map(|x| f16::from_f32(*x)).collect::<Vec<_>>();
    refused(
        &to_f16(&w),
        &to_f16(&buffers(100, 2)),
        &to_f16(&buffers(0, 3)),
        &["gradient"],
        |w, v, g| try_momentum_step_f16(w, v, g, 0.1, 0.9),
    );
    // Mixed types through the generic call.
    refused(
        &to_bf16(&w),
        &[],
        &to_bf16(&w),
        &["velocity", "0"],
        |w, v: &mut [bf16], g| try_momentum_step(w, v, g, &config, 1),
    );
}

#[test]
fn invalid_hyperparameters_are_refused_with_their_name() {
    let (w, v, g) = (buffers(50, 1), buffers(50, 2), buffers(50, 3));
    for (lr, mu, word) in [
        (f32::NAN, 0.9, "lr"),
        (f32::INFINITY, 0.9, "lr"),
        (-0.1, 0.9, "lr"),
        (0.1, 1.0, "momentum"),
        (0.1, -0.5, "momentum"),
        (0.1, f32::NAN, "momentum"),
        (0.1, f32::INFINITY, "momentum"),
    ] {
        refused(&w, &v, &g, &[word], |w, v, g| {
            try_momentum_step_f32(w, v, g, lr, mu)
        });
    }
    refused(&w, &[], &g, &["lr"], |w, _, g| {
        try_sgd_step_f32(w, g, f32::NAN)
    });

    let builds = [
        (
            Momentum::heavy_ball(0.1, 0.9).dampening(1.5).build(),
            "dampening",
        ),
        (
            Momentum::heavy_ball(0.1, 0.9).dampening(f64::NAN).build(),
            "dampening",
        ),
        (
            Momentum::heavy_ball(0.1, 0.9)
                .weight_decay(WeightDecay::L2(-1.0))
                .build(),
            "weight_decay",
        ),
        (
            Momentum::heavy_ball(0.1, 0.9)
                .weight_decay(WeightDecay::Decoupled(f64::NAN))
                .build(),
            "weight_decay",
        ),
        (
            Momentum::heavy_ball(0.1, 0.9)
                .dampening(0.1)
                .nesterov(true)
                .build(),
            "Nesterov",
        ),
        (
            Momentum::heavy_ball(0.1, 0.0).nesterov(true).build(),
            "Nesterov",
        ),
        (
            Momentum::lr_in_velocity(0.1, 0.9).dampening(0.1).build(),
            "dampening",
        ),
        (Momentum::moving_average(0.1, 1.0).build(), "momentum"),
    ];
    for (result, word) in builds {
        let msg = result.expect_err("should be refused").to_string();
        assert!(msg.contains(word), "{msg:?} should mention {word}");
    }
    assert!(
        Sgd::builder(0.1)
            .weight_decay(WeightDecay::L2(f64::INFINITY))
            .build()
            .is_err()
    );
    let mut config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
    assert!(config.set_lr(-1.0).is_err());
    assert_eq!(config.lr(), 0.1, "a refused set_lr keeps the old value");
}

/// Every hyperparameter is checked as the `f32` the kernels use, not only as the `f64` it was
/// given: values that round to 0, to 1 or to infinity are refused with a message that gives
/// the `f32` value; values at the edge that stay valid in `f32` are accepted.
#[test]
fn hyperparameters_are_checked_in_f32() {
    use optkern::{Adam, Lion};
    let refusals = [
        // eps 1e-50 is 0 in f32: 0/0 on a zero state and gradient.
        (
            Adam::builder(1e-3).eps(1e-50).build().map(drop),
            "eps",
            "0e0",
        ),
        // 1 - 1e-9 is exactly 1 in f32: the velocity never decays.
        (
            Momentum::heavy_ball(0.1, 1.0 - 1e-9).build().map(drop),
            "momentum",
            "1e0",
        ),
        (Sgd::builder(1e39).build().map(drop), "lr", "inf"),
        (
            Sgd::builder(0.1)
                .weight_decay(WeightDecay::L2(1e39))
                .build()
                .map(drop),
            "weight_decay",
            "inf",
        ),
        (
            Executor::new().unwrap().with_grad_scale(1e39).map(drop),
            "grad_scale",
            "inf",
        ),
        // Decoupled decay with lr * wd > 1: the weights would flip sign every step.
        (
            Adam::adamw(10.0, 0.5).build().map(drop),
            "weight_decay",
            "1 / lr",
        ),
        (
            Lion::builder(1.0)
                .weight_decay(WeightDecay::Decoupled(2.0))
                .build()
                .map(drop),
            "weight_decay",
            "1 / lr",
        ),
        (
            Adam::adamw(1e20, 1e20).build().map(drop),
            "weight_decay",
            "1 / lr",
        ),
    ];
    for (result, name, became) in refusals {
        let msg = result.expect_err("should be refused").to_string();
        assert!(msg.contains(name), "{msg:?} should name {name}");
        assert!(msg.contains(became), "{msg:?} should say {became:?}");
    }
    // The edges that stay valid in f32.
    Adam::builder(1e-3)
        .eps(1e-45)
        .build()
        .expect("eps 1e-45 is > 0 in f32");
    Momentum::heavy_ball(0.1, 1.0 - 1e-7)
        .build()
        .expect("1 - 1e-7 is below 1 in f32");
    Adam::adamw(10.0, 0.1)
        .build()
        .expect("lr * wd = 1: the decay factor is 0, not negative");
    // A refused set_lr keeps the config as it was.
    let mut config = Adam::adamw(1.0, 0.1).build().unwrap();
    let err = config.set_lr(20.0).expect_err("1 - 20 * 0.1 < 0");
    assert!(err.to_string().contains("weight_decay"), "{err}");
    assert_eq!(config.lr().to_bits(), 1.0f64.to_bits());
    let mut config = Adam::builder(1e-3).build().unwrap();
    assert!(config.set_lr(1e39).is_err());
    assert_eq!(config.lr().to_bits(), 1e-3f64.to_bits());

    // The first bias-corrected step size lr / (1 - beta1) must be finite in f32: 1e32 / 1e-7
    // is 1e39, an infinite step (every weight infinite or NaN after one step).
    use optkern::Adamax;
    let near_one = 1.0 - 1e-7;
    for result in [
        Adam::builder(1e32).betas(near_one, 0.999).build().map(drop),
        Adamax::builder(1e32)
            .betas(near_one, 0.999)
            .build()
            .map(drop),
    ] {
        let msg = result.expect_err("an infinite first step").to_string();
        assert!(
            msg.contains("lr / (1 - beta1)") && msg.contains("inf"),
            "{msg}"
        );
    }
    // Without bias correction the step size is lr itself; a smaller lr is fine.
    Adam::builder(1e32)
        .betas(near_one, 0.999)
        .bias_correction(false)
        .build()
        .expect("without bias correction the step size is lr");
    let mut config = Adam::builder(1e30).betas(near_one, 0.999).build().unwrap();
    let (mut w, mut m, mut v) = (vec![1.0f32; 3], vec![0.0f32; 3], vec![0.0f32; 3]);
    Executor::new()
        .unwrap()
        .adam_step(&mut w, &mut m, &mut v, &[0.5f32; 3], &config, 1)
        .unwrap();
    assert!(w.iter().all(|x| x.is_finite()), "{w:?}");
    // set_lr checks the same bound, and a refusal keeps the config.
    assert!(config.set_lr(1e32).is_err());
    assert_eq!(config.lr().to_bits(), 1e30f64.to_bits());
    let mut opt = optkern::StatefulOptimizer::<f32>::new(config).unwrap();
    assert!(opt.set_lr(1e32).is_err());
    assert_eq!(opt.lr().to_bits(), 1e30f64.to_bits());
}

#[test]
fn step_zero_is_refused() {
    let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
    let (w, v, g) = (buffers(40, 1), buffers(40, 2), buffers(40, 3));
    refused(&w, &v, &g, &["step 0"], |w, v, g| {
        try_momentum_step(w, v, g, &config, 0)
    });
}

#[test]
fn panicking_calls_panic_with_the_message_and_write_nothing() {
    let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
    let (w0, v0, g) = (buffers(30, 1), buffers(30, 2), buffers(29, 3));
    let (mut w, mut v) = (w0.clone(), v0.clone());
    let payload = catch_unwind(AssertUnwindSafe(|| {
        momentum_step(&mut w, &mut v, &g, &config, 2)
    }))
    .expect_err("should panic");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        msg.contains("gradient") && msg.contains("29") && msg.contains("30"),
        "{msg}"
    );
    assert!(
        w.iter()
            .zip(&w0)
            .chain(v.iter().zip(&v0))
            .all(|(a, b)| bits_eq(a, b))
    );

    let (mut w, mut v) = (w0.clone(), v0.clone());
    let payload = catch_unwind(AssertUnwindSafe(|| {
        optkern::momentum_step_f32(&mut w, &mut v, &g[..29], 0.1, 0.9)
    }))
    .expect_err("should panic");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("momentum_step_f32"), "{msg}");
    assert_eq!(
        w.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        w0.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn unavailable_backends_are_errors_not_crashes() {
    for backend in Backend::ALL {
        match Executor::with_backend(backend) {
            Ok(exec) => assert!(backend.is_available() && exec.backend() == backend),
            Err(e) => {
                assert!(!backend.is_available());
                let available: Vec<&str> = Backend::available().iter().map(|b| b.name()).collect();
                assert_eq!(
                    e,
                    Error::BackendUnavailable {
                        backend: backend.name(),
                        source: "explicit choice",
                        available: available.clone(),
                    }
                );
                let message = e.to_string();
                assert!(message.contains(backend.name()), "{message}");
                assert!(message.contains(&available.join(", ")), "{message}");
            }
        }
    }
    assert!(
        Backend::ALL.iter().any(|b| !b.is_available()),
        "some backend is always missing"
    );
}

#[test]
fn convert_checks_lengths() {
    let src = buffers(10, 1);
    let mut dst = vec![bf16::from_f32(7.0); 9];
    let err = Executor::new()
        .unwrap()
        .with_threads(Threads::Sequential)
        .convert(&src, &mut dst)
        .unwrap_err();
    assert!(err.to_string().contains("destination"));
    assert!(dst.iter().all(|x| *x == bf16::from_f32(7.0)));
}

#[test]
fn generic_sgd_refuses_mismatch_for_mixed_types() {
    let w: Vec<bf16> = buffers(20, 1).iter().map(|x| bf16::from_f32(*x)).collect();
    let g = buffers(21, 2);
    let mut w2 = w.clone();
    assert!(try_sgd_step(&mut w2, &g, &Sgd::new(0.1).unwrap(), 1).is_err());
    assert!(w2.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()));
}

/// Runs `call` on copies of `buffers` (the gradient among them, read only) and checks it was
/// refused with a message containing every one of `words`, with every buffer unchanged.
fn refused_all(
    what: &str,
    buffers: &[Vec<f32>],
    words: &[&str],
    call: impl FnOnce(&mut [Vec<f32>]) -> Result<(), Error>,
) {
    let mut copies = buffers.to_vec();
    let msg = call(&mut copies).expect_err(what).to_string();
    for word in words {
        assert!(
            msg.contains(word),
            "{what}: message {msg:?} does not mention {word:?}"
        );
    }
    for (a, b) in copies.iter().zip(buffers) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len(),
            "{what}: wrote: {msg}"
        );
    }
}

/// Every optimizer's bad calls of its own entry point (`tests/common/cases/`: buffers of the
/// wrong length, a state buffer missing or one too many, step 0), on every backend: refused
/// with a message that names what is wrong, nothing written.
#[test]
fn every_optimizers_bad_calls_write_nothing() {
    for case in common::cases::CASES {
        let calls = (case.bad_calls)();
        assert!(!calls.is_empty(), "{}: no bad call", case.name);
        for backend in common::backends() {
            let exec = Executor::with_backend(backend).unwrap();
            for call in &calls {
                let buffers: Vec<Vec<f32>> = call
                    .lens
                    .iter()
                    .enumerate()
                    .map(|(k, &n)| buffers(n, k as u64 + 10))
                    .collect();
                let what = format!("{} on {backend:?}, lengths {:?}", case.name, call.lens);
                refused_all(&what, &buffers, call.words, |b| (call.call)(&exec, b));
            }
        }
    }
}

/// Every `Threads` value runs, with the bits of a sequential call: thresholds of 0 and
/// `usize::MAX` included (a `min_chunk` of `usize::MAX` once overflowed when rounded up to the
/// chunk alignment, and a chunk of 0 divided by zero or split forever).
#[test]
fn every_thread_policy_value_runs_with_the_sequential_bits() {
    use optkern::{Adam, Lamb, Optimizer, TensorStep};
    let lens = [10_000usize, 3, 4_099];
    let w0: Vec<Vec<f32>> = lens.iter().map(|&n| buffers(n, n as u64)).collect();
    let g: Vec<Vec<f32>> = lens.iter().map(|&n| buffers(n, n as u64 + 1)).collect();
    let momentum = Momentum::heavy_ball(0.05, 0.9).build().unwrap();
    let lamb: Optimizer = Lamb::builder(1e-2).build().unwrap().into();
    let adam: Optimizer = Adam::adamw(1e-3, 0.1).build().unwrap().into();
    // Everything the split touches: one tensor, a conversion, a norm, a multi-tensor step of
    // LAMB (its norm and moments passes and the weights pass) and a checked step of Adam.
    let run = |exec: &Executor| {
        let mut out: Vec<u32> = Vec::new();
        let (mut w, mut v) = (w0[0].clone(), vec![0.0f32; lens[0]]);
        exec.momentum_step(&mut w, &mut v, &g[0], &momentum, 1)
            .unwrap();
        out.extend(w.iter().chain(&v).map(|x| x.to_bits()));
        let mut half = vec![bf16::ZERO; lens[0]];
        exec.convert(&w0[0], &mut half).unwrap();
        out.extend(half.iter().map(|x| u32::from(x.to_bits())));
        let grads: Vec<&[f32]> = g.iter().map(|x| &x[..]).collect();
        out.push(exec.grad_norm(&grads).norm().to_bits() as u32);
        for (config, checked) in [(&lamb, false), (&adam, true)] {
            let mut w = w0.clone();
            let buffers = config.state_buffers().len();
            let mut state: Vec<Vec<Vec<f32>>> =
                lens.iter().map(|&n| vec![vec![0.0; n]; buffers]).collect();
            let mut tensors: Vec<TensorStep<'_, f32, f32, f32>> = w
                .iter_mut()
                .zip(&mut state)
                .zip(&g)
                .map(|((w, s), g)| {
                    TensorStep::new(w, s.iter_mut().map(|b| &mut b[..]).collect(), g)
                })
                .collect();
            if checked {
                exec.check_and_step(&mut tensors, config, 3, Some(1.0))
                    .unwrap();
            } else {
                exec.step_many(&mut tensors, config, 3).unwrap();
            }
            drop(tensors);
            out.extend(
                w.iter()
                    .flatten()
                    .chain(state.iter().flatten().flatten())
                    .map(|x| x.to_bits()),
            );
        }
        out
    };
    let want = run(&Executor::new().unwrap().with_threads(Threads::Sequential));
    for threads in [
        Threads::Parallel {
            min_len: 0,
            min_chunk: usize::MAX,
        },
        Threads::Parallel {
            min_len: 0,
            min_chunk: usize::MAX / 2 + 7,
        },
        Threads::Parallel {
            min_len: 0,
            min_chunk: 0,
        },
        Threads::Parallel {
            min_len: 1,
            min_chunk: 1,
        },
        Threads::Parallel {
            min_len: usize::MAX,
            min_chunk: 0,
        },
        Threads::Parallel {
            min_len: 0,
            min_chunk: 100,
        },
    ] {
        let exec = Executor::new().unwrap().with_threads(threads);
        let got = common::pool(3).install(|| run(&exec));
        assert!(got == want, "{threads:?} changed the bits");
    }
}

/// Stochastic rounding numbers a call's elements from `index_base`: a range that would run
/// past `u64::MAX` is refused before anything is written (it once panicked part-way through
/// a write in debug builds and wrapped in release builds).
#[test]
fn stochastic_rounding_indices_must_fit() {
    use optkern::{StochasticRounding, TensorStep};
    let config = Momentum::heavy_ball(0.05, 0.9).build().unwrap();
    let w: Vec<bf16> = buffers(100, 1).iter().map(|&x| bf16::from_f32(x)).collect();
    let g: Vec<bf16> = buffers(100, 2).iter().map(|&x| bf16::from_f32(x)).collect();
    let v = vec![bf16::ZERO; 100];
    let exec = |base: u64| {
        Executor::new()
            .unwrap()
            .with_stochastic_rounding(Some(StochasticRounding {
                seed: 9,
                index_base: base,
            }))
    };
    for base in [u64::MAX - 3, u64::MAX - 99, u64::MAX] {
        refused(&w, &v, &g, &["index_base", "u64::MAX"], |w, v, g| {
            exec(base).momentum_step(w, v, g, &config, 1)
        });
    }
    // The last range that fits: indices up to u64::MAX - 1.
    let (mut w2, mut v2) = (w.clone(), v.clone());
    exec(u64::MAX - 100)
        .momentum_step(&mut w2, &mut v2, &g, &config, 1)
        .unwrap();
    // Many tensors: each would fit alone, together they do not.
    let optimizer: optkern::Optimizer = config.into();
    for checked in [false, true] {
        let (mut a, mut b) = (w.clone(), w.clone());
        let (mut va, mut vb) = (v.clone(), v.clone());
        let mut tensors = [
            TensorStep::new(&mut a[..], vec![&mut va[..]], &g[..]),
            TensorStep::new(&mut b[..], vec![&mut vb[..]], &g[..]),
        ];
        let e = if checked {
            exec(u64::MAX - 150)
                .check_and_step(&mut tensors, &optimizer, 1, None)
                .unwrap_err()
        } else {
            exec(u64::MAX - 150)
                .step_many(&mut tensors, &optimizer, 1)
                .unwrap_err()
        };
        assert!(
            matches!(e, Error::RoundingIndexOverflow { index_base, elements: 200 } if index_base == u64::MAX - 150)
        );
        drop(tensors);
        let bits = |x: &[bf16]| x.iter().map(|y| y.to_bits()).collect::<Vec<_>>();
        assert_eq!((bits(&a), bits(&b)), (bits(&w), bits(&w)));
        assert_eq!((bits(&va), bits(&vb)), (bits(&v), bits(&v)));
    }
}
