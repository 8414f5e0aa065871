//! The suites every optimizer gets from its case in `tests/common/cases.rs`:
//!
//! - the `f64` reference of the case, where it has one, within the bound it states;
//! - the configs its builder refuses, and calls with bad buffers that write nothing;
//! - checkpoints: a save/load round trip that resumes with exactly the bits of a run that never
//!   stopped, on every backend;
//! - the checkpoints written by version 1 of the format (`tests/fixtures/checkpoint-v1`, made
//!   by the crate before the optimizers moved into the registry) still load, save back to the
//!   same bytes, and continue as that version continued them.
//!
//! The bit-exact property tests against the scalar oracle (all 27 element-type mixes) stay in
//! `tests/optimizer_props.rs` and `tests/momentum_props.rs`, one per optimizer: each calls its
//! optimizer's own entry point, so that a test binary compiles only the kernels it tests.

mod common;

use common::cases::{CASES, OptimizerCase, non_negative};
use common::data::{Misaligned, Rng};
use common::reference::within;
use common::{backends, sequential};
use optkern::{Backend, Element, Error, Executor, StatefulOptimizer, TensorStep, bf16, f16};

// ---- the f64 references ----

fn value<E: Element>(rng: &mut Rng) -> f32 {
    common::reference::finite_value::<E>(rng)
}

fn to_f64<E: Element>(x: E) -> f64 {
    f64::from(x.to_f32())
}

/// Four steps of a random config of `case` on 203 elements, each compared with the case's
/// `f64` step from the values stored before it.
fn within_reference<W: Element, T: Element, G: Element>(case: &OptimizerCase, seed: u64) {
    const N: usize = 203;
    let Some(reference) = case.reference else {
        return;
    };
    let mut rng = Rng::new(seed);
    let config = (case.random)(&mut rng);
    let names = config.state_buffers();
    let mut w = Misaligned::<W>::new(N, 1, || value::<W>(&mut rng));
    let mut state: Vec<Misaligned<T>> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            Misaligned::<T>::new(N, 2 + k, || {
                let x = value::<T>(&mut rng);
                if non_negative(name) { x.abs() } else { x }
            })
        })
        .collect();
    let exec = sequential(Backend::best());
    for step in 1..=4u64 {
        let g = Misaligned::<G>::new(N, 5, || value::<G>(&mut rng));
        let (w0, s0) = (
            w.copy(),
            state.iter().map(Misaligned::copy).collect::<Vec<_>>(),
        );
        let tensor = TensorStep::new(
            w.slice_mut(),
            state.iter_mut().map(Misaligned::slice_mut).collect(),
            g.slice(),
        );
        exec.step_many(&mut [tensor], &config, step).unwrap();
        for i in 0..N {
            let s_in: Vec<f64> = s0.iter().map(|s| to_f64(s.slice()[i])).collect();
            let (gi, wi) = (to_f64(g.slice()[i]), to_f64(w0.slice()[i]));
            let (w_want, s_want, w_err, s_err) = reference(&config, wi, &s_in, gi, step);
            let at = |what: &str| {
                format!(
                    "{}: {what}[{i}] (w {wi:e}, state {s_in:?}, g {gi:e}, {config:?}, step {step})",
                    case.name
                )
            };
            within(&at("weights"), w.slice()[i], w_want, w_err).unwrap();
            for (k, name) in names.iter().enumerate() {
                within(&at(name), state[k].slice()[i], s_want[k], s_err[k]).unwrap();
            }
        }
    }
}

#[test]
fn every_reference_holds() {
    let mut checked = 0;
    for case in CASES.iter().filter(|c| c.reference.is_some()) {
        for seed in 0..40 {
            within_reference::<f32, f32, f32>(case, seed);
            within_reference::<bf16, f32, bf16>(case, seed + 1000);
            within_reference::<f16, f16, f16>(case, seed + 2000);
        }
        checked += 1;
    }
    assert!(checked > 0, "no case carries a reference");
}

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
