//! The suites every optimizer gets from its case in `tests/common/cases/`:
//!
//! - the configs its builder refuses, and calls with bad buffers that write nothing;
//! - checkpoints: a save/load round trip that resumes with exactly the bits of a run that never
//!   stopped, on every backend;
//! - the checkpoints written by version 1 of the format (`tests/fixtures/checkpoint-v1`, made
//!   by the crate before the optimizers moved into the registry) still load, save back to the
//!   same bytes, and continue as that version continued them;
//! - the caller's floating-point environment (flush-to-zero, denormals-are-zero, round toward
//!   zero, on the calling thread or on the pool's workers) changes no bit, on subnormal-heavy
//!   data.
//!
//! The bit-exact property tests against the scalar oracle and the `f64` references (all 27
//! element-type mixes) run over the same cases in `tests/optimizer_props.rs` and
//! `tests/reference_optimizers.rs`, through each optimizer's own entry point, so that they
//! compile only the kernels they test; these suites go through the `Optimizer` enum.

use crate::common;

use common::cases::{CASES, non_negative};
use common::data::Rng;
use common::{backends, sequential};
use optkern::fp_environment_for_tests as fpenv;
use optkern::{Element, Error, Executor, StatefulOptimizer, Subnormals, TensorStep, bf16, f16};

// ---- bad input ----

#[test]
fn every_refused_config_says_why() {
    for case in CASES {
        let refused = (case.refused)();
        assert!(!refused.is_empty(), "{}: no refused config", case.name);
        for (result, word) in refused {
            let error = result.expect_err(case.name).to_string();
            assert!(
                error.contains(word),
                "{}: {error:?} should mention {word}",
                case.name
            );
        }
    }
}

#[test]
fn every_optimizer_refuses_bad_buffers_writing_nothing() {
    let mut rng = Rng::new(5);
    for case in CASES {
        for _ in 0..4 {
            let config = (case.random)(&mut rng);
            let buffers = config.state_buffers().len();
            let exec = Executor::new().unwrap();
            let w0: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
            let s0: Vec<Vec<f32>> = (0..buffers).map(|_| vec![0.5f32; 100]).collect();
            let unchanged = |w: &[f32], s: &[Vec<f32>]| {
                w.iter().zip(&w0).all(|(a, b)| a.to_bits() == b.to_bits())
                    && s.iter().flatten().all(|x| x.to_bits() == 0.5f32.to_bits())
            };
            // A short gradient, a missing state buffer, step 0.
            let (mut w, mut s) = (w0.clone(), s0.clone());
            let g = vec![1.0f32; 99];
            let tensor =
                TensorStep::new(&mut w[..], s.iter_mut().map(|b| &mut b[..]).collect(), &g);
            let e = exec.step_many(&mut [tensor], &config, 1).unwrap_err();
            assert!(
                matches!(e, Error::InTensor { index: 0, .. }),
                "{}: {e}",
                case.name
            );
            assert!(e.to_string().contains("99"), "{}: {e}", case.name);
            assert!(
                unchanged(&w, &s),
                "{}: written on a refused call",
                case.name
            );
            if buffers > 0 {
                let g = vec![1.0f32; 100];
                let tensor = TensorStep::new(
                    &mut w[..],
                    s.iter_mut().skip(1).map(|b| &mut b[..]).collect(),
                    &g,
                );
                let e = exec.step_many(&mut [tensor], &config, 1).unwrap_err();
                assert!(
                    e.to_string().contains("state buffers"),
                    "{}: {e}",
                    case.name
                );
                assert!(
                    unchanged(&w, &s),
                    "{}: written on a refused call",
                    case.name
                );
            }
            let g = vec![1.0f32; 100];
            let tensor =
                TensorStep::new(&mut w[..], s.iter_mut().map(|b| &mut b[..]).collect(), &g);
            let e = exec.step_many(&mut [tensor], &config, 0).unwrap_err();
            assert_eq!(e, Error::InvalidStep, "{}", case.name);
            assert!(
                unchanged(&w, &s),
                "{}: written on a refused call",
                case.name
            );
        }
    }
}

// ---- checkpoints ----

/// Two tensors of the checkpoint tests, and the gradients of step `step`.
fn model() -> Vec<Vec<f32>> {
    [37usize, 300]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0)
                .collect()
        })
        .collect()
}

fn grads(step: u64) -> Vec<Vec<f32>> {
    [37usize, 300]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|i| (((i as u64 * 13 + step * 7) % 17) as f32 - 8.0) / 32.0)
                .collect()
        })
        .collect()
}

fn step_model<T: Element>(opt: &mut StatefulOptimizer<T>, w: &mut [Vec<f32>], step: u64) {
    let g = grads(step);
    let [a, b] = w else { unreachable!() };
    opt.step(&mut [&mut a[..], &mut b[..]], &[&g[0][..], &g[1][..]])
        .unwrap();
}

/// The weights' bits, every NaN as one pattern (its payload is unspecified).
fn bits(w: &[Vec<f32>]) -> Vec<u32> {
    common::canonical_bits(&w.concat())
}

#[test]
fn every_optimizer_resumes_from_a_checkpoint_bit_exactly() {
    let mut rng = Rng::new(9);
    for case in CASES {
        for _ in 0..3 {
            let config = (case.random)(&mut rng);
            let mut straight = StatefulOptimizer::<bf16>::new(config).unwrap();
            let mut w_straight = model();
            for step in 1..=5 {
                step_model(&mut straight, &mut w_straight, step);
            }
            for backend in backends() {
                let mut first =
                    StatefulOptimizer::<bf16>::with_executor(config, sequential(backend));
                let mut w = model();
                for step in 1..=3 {
                    step_model(&mut first, &mut w, step);
                }
                let saved = first.save();
                let mut resumed = StatefulOptimizer::<bf16>::from_checkpoint(&saved).unwrap();
                assert_eq!(resumed.save(), saved, "{}: save(load(x)) != x", case.name);
                assert_eq!(resumed.config(), &config, "{}", case.name);
                for step in 4..=5 {
                    step_model(&mut resumed, &mut w, step);
                }
                assert_eq!(bits(&w), bits(&w_straight), "{} on {backend}", case.name);
                assert_eq!(
                    resumed.save(),
                    straight.save(),
                    "{} on {backend}",
                    case.name
                );
            }
        }
    }
}

/// The fixtures of format version 1: each `NAME.ckpt` is a checkpoint after three steps of the
/// model above (`-f32`: f32 state; `-bf16-options`: bf16 state with clipping at 0.75, a
/// stochastic-rounding seed and a gradient multiplier of 0.5), `NAME.w3` the weights then and
/// `NAME.w4` the weights after the fourth step, as that version computed them (f32 bits,
/// little-endian).
#[test]
fn version_1_checkpoints_still_load_and_continue() {
    // OPTKERN_FIXTURES_DIR: the fixtures folder of a test bundle run elsewhere.
    let dir = std::env::var_os("OPTKERN_FIXTURES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .join("checkpoint-v1");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".ckpt").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures: {names:?}");
    let read_weights = |path: std::path::PathBuf| -> Vec<Vec<f32>> {
        let bytes = std::fs::read(path).unwrap();
        let all: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_bits(u32::from_le_bytes(b.try_into().unwrap())))
            .collect();
        vec![all[..37].to_vec(), all[37..].to_vec()]
    };
    for name in &names {
        let bytes = std::fs::read(dir.join(format!("{name}.ckpt"))).unwrap();
        if name.ends_with("-unstepped-f32") {
            let opt = StatefulOptimizer::<f32>::from_checkpoint(&bytes).unwrap();
            assert_eq!(opt.steps(), 0);
            assert_eq!(opt.save(), bytes, "{name}");
            continue;
        }
        let w3 = read_weights(dir.join(format!("{name}.w3")));
        let w4 = read_weights(dir.join(format!("{name}.w4")));
        fn check<T: Element>(name: &str, bytes: &[u8], w3: &[Vec<f32>], w4: &[Vec<f32>]) {
            let mut opt = StatefulOptimizer::<T>::from_checkpoint(bytes).unwrap();
            assert_eq!(opt.steps(), 3, "{name}");
            assert_eq!(
                opt.save(),
                bytes,
                "{name}: the bytes changed on a round trip"
            );
            let mut w = w3.to_vec();
            step_model(&mut opt, &mut w, 4);
            assert_eq!(
                bits(&w),
                bits(w4),
                "{name}: step 4 differs from version 1's"
            );
        }
        if name.ends_with("-f32") {
            check::<f32>(name, &bytes, &w3, &w4);
        } else {
            check::<bf16>(name, &bytes, &w3, &w4);
        }
    }
}

// ---- the caller's floating-point environment ----

/// The environments a caller may leave: flush-to-zero with denormals-are-zero (FZ and FZ16 on
/// aarch64), round toward zero, and both.
const ENVIRONMENTS: [(&str, bool, bool); 3] = [
    ("FTZ+DAZ", true, false),
    ("round toward zero", false, true),
    ("FTZ+DAZ and round toward zero", true, true),
];

/// Runs `f` with this thread's floating-point controls set as `(flush, toward_zero)` says
/// (checking that they take effect), and checks that they are still set afterwards (a call
/// puts the caller's environment back).
fn in_environment<R>(flush: bool, toward_zero: bool, f: impl FnOnce() -> R) -> R {
    let default_probe = probe();
    let previous = fpenv::set(flush, toward_zero);
    let set = fpenv::current();
    let probed = probe();
    let result = f();
    let after = fpenv::current();
    fpenv::restore(previous);
    assert_eq!(
        probe(),
        default_probe,
        "the default environment was not restored"
    );
    assert_ne!(probed, default_probe, "the environment took no effect");
    let (tiny, third) = (probed.0 != default_probe.0, probed.1 != default_probe.1);
    assert_eq!(
        (tiny, third),
        (flush, toward_zero),
        "the environment took another effect"
    );
    // The exception flags (x86 MXCSR bits 0-5) may have been raised meanwhile.
    assert_eq!(
        after & !0x3f,
        set & !0x3f,
        "the call left another environment"
    );
    result
}

/// Evidence that the environment took effect on this thread: `2^-149 * 1` (flushed to zero
/// under FTZ or DAZ) and `1 / 3` (one ulp lower toward zero).
fn probe() -> (u32, u32) {
    let tiny = std::hint::black_box(f32::from_bits(1)) * std::hint::black_box(1.0f32);
    let third = std::hint::black_box(1.0f32) / std::hint::black_box(3.0f32);
    (tiny.to_bits(), third.to_bits())
}

/// A value of the subnormal-heavy data: zeros, subnormals from `2^-149` up, values around the
/// smallest normal `2^-126`, small and ordinary normal values, of both signs.
fn near_subnormal(rng: &mut Rng) -> f32 {
    let magnitude = match rng.next_u64() % 6 {
        0 => 0.0,
        1 => f32::from_bits(1 + (rng.next_u64() % 64) as u32),
        2 => f32::from_bits((rng.next_u64() % 0x0080_0000) as u32),
        3 => f32::MIN_POSITIVE * rng.range(0.5, 2.0) as f32,
        4 => rng.magnitude(-37.0, -30.0) as f32,
        _ => rng.range(0.01, 1.0) as f32,
    };
    if rng.next_u64() & 1 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// How a trajectory runs one step: which executor, thread and environment.
type RunStep<'a, W, T, G> = dyn Fn(&mut [TensorStep<'_, W, T, G>], u64) + 'a;

/// Six steps of `config` on 300 elements of subnormal-heavy data (a quarter of the gradient
/// entries exactly zero on every step), by `run_step`; the bits of the weights and state after
/// each step.
fn subnormal_trajectory<W: Element, T: Element, G: Element>(
    config: &optkern::Optimizer,
    seed: u64,
    run_step: &RunStep<'_, W, T, G>,
) -> Vec<u32> {
    const N: usize = 300;
    let mut rng = Rng::new(seed);
    let names = config.state_buffers();
    let mut w: Vec<W> = (0..N)
        .map(|_| W::from_f32(near_subnormal(&mut rng)))
        .collect();
    let mut state: Vec<Vec<T>> = names
        .iter()
        .map(|name| {
            (0..N)
                .map(|_| {
                    let x = near_subnormal(&mut rng);
                    T::from_f32(if non_negative(name) { x.abs() } else { x })
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for step in 1..=6 {
        let g: Vec<G> = (0..N)
            .map(|i| {
                let x = near_subnormal(&mut rng);
                G::from_f32(if i % 4 == 0 { 0.0 } else { x })
            })
            .collect();
        let tensor = TensorStep::new(
            &mut w[..],
            state.iter_mut().map(|s| &mut s[..]).collect(),
            &g,
        );
        run_step(&mut [tensor], step);
        out.extend(common::data::bits(&w));
        for s in &state {
            out.extend(common::data::bits(s));
        }
    }
    out
}

/// For every optimizer, backend, subnormal policy and the element-type mixes `(f32, f32, f32)`,
/// `(bf16, f32, bf16)` and `(f16, f16, f16)`: the bits of a subnormal-heavy trajectory are the
/// same whatever environment the caller left, set on the calling thread (a sequential call, and
/// a parallel one from inside a four-thread pool) or on every worker of the pool before a
/// parallel call.
fn same_bits_in_every_environment<W: Element, T: Element, G: Element>(
    config: &optkern::Optimizer,
    seed: u64,
    what: &str,
    pool: &rayon::ThreadPool,
) {
    for (backend, subnormals) in backends()
        .into_iter()
        .flat_map(|b| [(b, Subnormals::Keep), (b, Subnormals::Flush)])
    {
        let seq = sequential(backend).with_subnormals(subnormals);
        let par = common::split_finely(backend).with_subnormals(subnormals);
        let sequential_run =
            |t: &mut [TensorStep<'_, W, T, G>], step| seq.step_many(t, config, step).unwrap();
        let parallel_run = |t: &mut [TensorStep<'_, W, T, G>], step| {
            pool.install(|| par.step_many(t, config, step).unwrap())
        };
        let want = subnormal_trajectory::<W, T, G>(config, seed, &sequential_run);
        let at = |env: &str, how: &str| {
            format!("{what} on {backend}, subnormals {subnormals:?}, {env} {how}")
        };
        assert_eq!(
            subnormal_trajectory::<W, T, G>(config, seed, &parallel_run),
            want,
            "{}",
            at("default environment", "in parallel")
        );
        for (env, flush, toward_zero) in ENVIRONMENTS {
            // The data is made in the default environment: only the calls run in the other.
            let in_caller = |t: &mut [TensorStep<'_, W, T, G>], step| {
                in_environment(flush, toward_zero, || {
                    seq.step_many(t, config, step).unwrap()
                })
            };
            let got = subnormal_trajectory::<W, T, G>(config, seed, &in_caller);
            assert_eq!(
                got,
                want,
                "{}",
                at(env, "on the calling thread, sequential")
            );
            let in_pool = |t: &mut [TensorStep<'_, W, T, G>], step| {
                pool.install(|| {
                    in_environment(flush, toward_zero, || {
                        par.step_many(t, config, step).unwrap()
                    })
                })
            };
            let got = subnormal_trajectory::<W, T, G>(config, seed, &in_pool);
            assert_eq!(
                got,
                want,
                "{}",
                at(env, "on the calling thread, in parallel")
            );
            let previous = pool.broadcast(|_| fpenv::set(flush, toward_zero));
            let default_probe = probe();
            assert!(
                pool.broadcast(|_| probe())
                    .iter()
                    .all(|p| *p != default_probe),
                "{env} took no effect on the workers"
            );
            let got = subnormal_trajectory::<W, T, G>(config, seed, &parallel_run);
            pool.broadcast(|c| fpenv::restore(previous[c.index()]));
            assert_eq!(got, want, "{}", at(env, "on every worker, in parallel"));
        }
    }
}

#[test]
fn every_optimizer_ignores_the_callers_floating_point_environment() {
    // A pool of its own: a worker of a shared pool may run this test's job that sets the
    // environment nested inside another test's call, whose exit then puts its own back.
    let pool = common::pool(4);
    let mut rng = Rng::new(14);
    for case in CASES {
        for k in 0..2 {
            let config = (case.random)(&mut rng);
            let what = format!("{} ({config:?})", case.name);
            same_bits_in_every_environment::<f32, f32, f32>(
                &config,
                k,
                &format!("{what}, f32"),
                &pool,
            );
            same_bits_in_every_environment::<bf16, f32, bf16>(
                &config,
                k + 10,
                &format!("{what}, bf16/f32/bf16"),
                &pool,
            );
            same_bits_in_every_environment::<f16, f16, f16>(
                &config,
                k + 20,
                &format!("{what}, f16"),
                &pool,
            );
        }
    }
}

/// `Subnormals::Flush` on one value: a magnitude below `2^-126` becomes the zero of its sign.
fn flushed(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// What `Subnormals::Flush` is, for every single-pass optimizer on f32 buffers and every
/// backend: the default policy's step on the flushed inputs, with its results flushed (the
/// operations inside the formula keep their subnormal intermediates). LAMB is left out: its
/// second pass reads the moments its first stored, flushed; the bit-exact suite runs it under
/// both policies on every backend. (In bf16 and f16 the results are flushed before they are
/// narrowed, which a flush of the stored value cannot reproduce: the bit-exact suite covers
/// those mixes.)
#[test]
fn flush_is_the_default_step_on_flushed_inputs_with_flushed_results() {
    let mut rng = Rng::new(31);
    const N: usize = 300;
    let mut flushed_any = 0usize;
    for case in CASES.iter().filter(|c| c.name != "LAMB") {
        for _ in 0..6 {
            let config = (case.random)(&mut rng);
            let names = config.state_buffers();
            let step = 1 + rng.next_u64() % 3;
            let w0: Vec<f32> = (0..N).map(|_| near_subnormal(&mut rng)).collect();
            let s0: Vec<Vec<f32>> = names
                .iter()
                .map(|name| {
                    (0..N)
                        .map(|_| {
                            let x = near_subnormal(&mut rng);
                            if non_negative(name) { x.abs() } else { x }
                        })
                        .collect()
                })
                .collect();
            let g: Vec<f32> = (0..N)
                .map(|i| {
                    if i % 4 == 0 {
                        0.0
                    } else {
                        near_subnormal(&mut rng)
                    }
                })
                .collect();
            let run =
                |exec: &optkern::Executor, w: &mut Vec<f32>, s: &mut Vec<Vec<f32>>, g: &[f32]| {
                    let tensor =
                        TensorStep::new(&mut w[..], s.iter_mut().map(|b| &mut b[..]).collect(), g);
                    exec.step_many(&mut [tensor], &config, step).unwrap();
                };
            for backend in backends() {
                let (mut w, mut s) = (w0.clone(), s0.clone());
                run(
                    &sequential(backend).with_subnormals(Subnormals::Flush),
                    &mut w,
                    &mut s,
                    &g,
                );
                let mut w_ref: Vec<f32> = w0.iter().copied().map(flushed).collect();
                let mut s_ref: Vec<Vec<f32>> = s0
                    .iter()
                    .map(|b| b.iter().copied().map(flushed).collect())
                    .collect();
                let g_ref: Vec<f32> = g.iter().copied().map(flushed).collect();
                run(&sequential(backend), &mut w_ref, &mut s_ref, &g_ref);
                flushed_any += w_ref
                    .iter()
                    .chain(s_ref.iter().flatten())
                    .filter(|x| x.is_subnormal())
                    .count();
                w_ref.iter_mut().for_each(|x| *x = flushed(*x));
                s_ref.iter_mut().flatten().for_each(|x| *x = flushed(*x));
                let what = format!("{} on {backend} ({config:?}, step {step})", case.name);
                common::same_bits("weights", &w, &w_ref).unwrap_or_else(|e| panic!("{what}: {e}"));
                for (k, name) in names.iter().enumerate() {
                    common::same_bits(name, &s[k], &s_ref[k])
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
                assert!(
                    w.iter()
                        .chain(s.iter().flatten())
                        .all(|x| !x.is_subnormal()),
                    "{what}: a subnormal was stored"
                );
            }
        }
    }
    // The data must make results subnormal for the check to mean anything.
    assert!(
        flushed_any > 1000,
        "only {flushed_any} subnormal results to flush"
    );
}

/// Lion's sign of a subnormal gradient is its sign, also when the caller set
/// denormals-are-zero (which would read it as zero): the weight moves by exactly `lr`.
#[test]
fn lion_takes_the_sign_of_a_subnormal_under_daz() {
    // beta1 = 0: the interpolation `beta1*m + (1-beta1)*g` is `g` itself.
    let config: optkern::Optimizer = optkern::Lion::builder(0.5)
        .betas(0.0, 0.99)
        .build()
        .unwrap()
        .into();
    for backend in backends() {
        let exec = sequential(backend);
        for g in [1e-40f32, -1e-40, f32::from_bits(1), -f32::from_bits(1)] {
            let (mut w, mut m) = (vec![1.0f32; 37], vec![0.0f32; 37]);
            let grad = vec![g; 37];
            in_environment(true, false, || {
                let tensor = TensorStep::new(&mut w[..], vec![&mut m[..]], &grad);
                exec.step_many(&mut [tensor], &config, 1).unwrap()
            });
            let want = if g > 0.0 { 0.5f32 } else { 1.5 };
            assert!(
                w.iter().all(|x| x.to_bits() == want.to_bits()),
                "{backend}: Lion moved by {} for g = {g:e} under DAZ",
                1.0 - w[0]
            );
        }
    }
}

/// Narrowing to f16 rounds to nearest even under a caller's round-toward-zero too (NEON's
/// conversion follows FPCR's rounding mode): every backend gives the bits of `f16::from_f32`.
#[test]
fn f16_narrowing_rounds_to_nearest_under_a_directed_rounding_mode() {
    let mut rng = Rng::new(16);
    let src: Vec<f32> = (0..1001).map(|_| rng.value(true)).collect();
    let want: Vec<u32> = src
        .iter()
        .map(|&x| u32::from(f16::from_f32(x).to_bits()))
        .collect();
    for backend in backends() {
        let exec = sequential(backend);
        for flush in [false, true] {
            let mut dst = vec![f16::ZERO; src.len()];
            in_environment(flush, true, || exec.convert(&src, &mut dst).unwrap());
            let got: Vec<u32> = dst.iter().map(|x| u32::from(x.to_bits())).collect();
            let nan = |i: usize| src[i].is_nan();
            let differ = (0..src.len()).find(|&i| !nan(i) && got[i] != want[i]);
            assert_eq!(
                differ,
                None,
                "{backend} (flush {flush}): f16 of {:e}",
                differ.map_or(0.0, |i| src[i])
            );
        }
    }
}
