//! The optimizer objects: the same bits as the kernels called by hand, bit-exact resume from a
//! checkpoint, and damaged checkpoints refused with the optimizer left as it was.

use crate::common;

use common::data::{Rng, bits};
use common::{backends, same_bits, sequential};
use optkern::schedule::WarmupCosine;
use optkern::{
    Adadelta, Adagrad, Adam, Adamax, Ademamix, Adopt, Asgd, CheckpointError, EpsilonPlacement,
    Error, Executor, Lamb, Lion, Momentum, MomentumForm, Nadam, Optimizer, Radam, Rmsprop, Rprop,
    ScheduleFreeAdamw, ScheduleFreeSgd, Sgd, StatefulOptimizer, StochasticRounding, Subnormals,
    TensorStep, WeightDecay, bf16, f16,
};
use optkern::{Element, zeroed};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// One config of every optimizer and form, with options that exercise every state buffer.
fn configs() -> Vec<(&'static str, Optimizer)> {
    vec![
        ("sgd", Sgd::new(0.05).unwrap().into()),
        (
            "heavy ball",
            Momentum::heavy_ball(0.05, 0.9)
                .dampening(0.1)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "nesterov",
            Momentum::heavy_ball(0.05, 0.9)
                .nesterov(true)
                .build()
                .unwrap()
                .into(),
        ),
        (
            "lr in velocity",
            Momentum::lr_in_velocity(0.05, 0.9)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "moving average",
            Momentum::moving_average(0.05, 0.9).build().unwrap().into(),
        ),
        (
            "rmsprop centered momentum",
            Rmsprop::builder(1e-3)
                .centered(true)
                .momentum(0.9)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "rmsprop keras",
            Rmsprop::builder(1e-3)
                .eps_inside_sqrt(true)
                .momentum(0.5)
                .momentum_form(MomentumForm::LrInVelocity)
                .build()
                .unwrap()
                .into(),
        ),
        ("adam", Adam::builder(1e-3).build().unwrap().into()),
        ("adamw", Adam::adamw(1e-3, 0.1).build().unwrap().into()),
        (
            "amsgrad hat",
            Adam::builder(1e-3)
                .amsgrad(true)
                .epsilon_placement(EpsilonPlacement::Hat)
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adagrad",
            Adagrad::builder(0.05)
                .lr_decay(1e-2)
                .initial_accumulator_value(0.1)
                .build()
                .unwrap()
                .into(),
        ),
        (
            "lion",
            Lion::builder(1e-4)
                .weight_decay(WeightDecay::Decoupled(0.1))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "lamb",
            Lamb::builder(1e-2)
                .max_grad_norm(None)
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adamax",
            Adamax::builder(2e-3)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adadelta",
            Adadelta::builder(0.5)
                .rho(0.95)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "nadamw",
            Nadam::builder(2e-3)
                .momentum_decay(0.01)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "rprop",
            Rprop::builder(1e-2).etas(0.4, 1.3).build().unwrap().into(),
        ),
        (
            "asgd",
            Asgd::builder(1e-2)
                .t0(3.0)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adopt",
            Adopt::builder(1e-3)
                .weight_decay(WeightDecay::Decoupled(1e-2))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "ademamix",
            Ademamix::builder(1e-3)
                .alpha(4.0)
                .t_alpha_beta3(Some(20.0))
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "radam",
            Radam::builder(1e-3)
                .betas(0.9, 0.99)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "schedulefree_adamw",
            ScheduleFreeAdamw::builder(2.5e-3)
                .warmup_steps(3)
                .weight_decay(WeightDecay::Decoupled(1e-2))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "schedulefree_sgd",
            ScheduleFreeSgd::builder(0.1)
                .warmup_steps(2)
                .r(0.5)
                .weight_decay(WeightDecay::L2(1e-3))
                .build()
                .unwrap()
                .into(),
        ),
    ]
}

/// The model's tensor lengths: a vector-width multiple, an odd small one, a large one.
const LENGTHS: [usize; 3] = [1024, 37, 5003];

fn model<W: Element>(rng: &mut Rng) -> Vec<Vec<W>> {
    LENGTHS
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| W::from_f32(rng.range(-1.0, 1.0) as f32))
                .collect()
        })
        .collect()
}

/// The gradients of step `step`: the same for every run of a test.
fn gradients<G: Element>(seed: u64, step: u64) -> Vec<Vec<G>> {
    let mut rng = Rng::new(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    LENGTHS
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| G::from_f32(rng.range(-0.5, 0.5) as f32))
                .collect()
        })
        .collect()
}

fn schedule() -> WarmupCosine {
    WarmupCosine::new(1.0, 3, 12, 0.1)
}

/// Steps `tensor` by hand with the single-tensor kernel of `config`.
fn kernel_by_hand<W: Element, T: Element, G: Element>(
    exec: &Executor,
    config: &Optimizer,
    w: &mut [W],
    state: &mut [Vec<T>],
    g: &[G],
    step: u64,
) -> Result<(), Error> {
    match (config, state) {
        (Optimizer::Sgd(c), []) => exec.sgd_step(w, g, c, step),
        (Optimizer::Momentum(c), [v]) => exec.momentum_step(w, v, g, c, step),
        (Optimizer::Adam(c), [m, v]) => exec.adam_step(w, m, v, g, c, step),
        (Optimizer::Adam(c), [m, v, vmax]) => exec.amsgrad_step(w, m, v, vmax, g, c, step),
        (Optimizer::Rmsprop(c), [sq]) => exec.rmsprop_step(w, sq, None, None, g, c, step),
        (Optimizer::Rmsprop(c), [sq, b]) if c.centered() => {
            exec.rmsprop_step(w, sq, Some(b), None, g, c, step)
        }
        (Optimizer::Rmsprop(c), [sq, b]) => exec.rmsprop_step(w, sq, None, Some(b), g, c, step),
        (Optimizer::Rmsprop(c), [sq, avg, mom]) => {
            exec.rmsprop_step(w, sq, Some(avg), Some(mom), g, c, step)
        }
        (Optimizer::Adagrad(c), [sum]) => exec.adagrad_step(w, sum, g, c, step),
        (Optimizer::Lion(c), [m]) => exec.lion_step(w, m, g, c, step),
        (Optimizer::Lamb(c), [m, v]) => exec.lamb_step(w, m, v, g, c, step),
        (Optimizer::Adamax(c), [m, u]) => exec.adamax_step(w, m, u, g, c, step),
        (Optimizer::Adadelta(c), [sq, acc]) => exec.adadelta_step(w, sq, acc, g, c, step),
        (Optimizer::Nadam(c), [m, v]) => exec.nadam_step(w, m, v, g, c, step),
        (Optimizer::Radam(c), [m, v]) => exec.radam_step(w, m, v, g, c, step),
        (Optimizer::Rprop(c), [prev, size]) => exec.rprop_step(w, prev, size, g, c, step),
        (Optimizer::Asgd(c), [ax]) => exec.asgd_step(w, ax, g, c, step),
        (Optimizer::Adopt(c), [m, v]) => exec.adopt_step(w, m, v, g, c, step),
        (Optimizer::Ademamix(c), [m, v, slow]) => exec.ademamix_step(w, m, v, slow, g, c, step),
        (Optimizer::ScheduleFreeAdamw(c), [z, v]) => {
            exec.schedulefree_adamw_step(w, z, v, g, c, step)
        }
        (Optimizer::ScheduleFreeSgd(c), [z]) => exec.schedulefree_sgd_step(w, z, g, c, step),
        (config, state) => panic!("{config:?} with {} buffers", state.len()),
    }
}

/// Runs `steps` steps of `config` through the object and through the single-tensor kernels
/// (with the learning rate of the schedule, scaled to the config's), comparing weights and
/// state after every step.
fn object_matches_kernels<W: Element, T: Element, G: Element>(
    name: &str,
    config: Optimizer,
    exec: Executor,
) -> Result<(), String> {
    let mut rng = Rng::new(7);
    let mut w_obj = model::<W>(&mut rng);
    let mut w_hand = w_obj.clone();
    let buffers = config.state_buffers().len();
    let mut state_hand: Vec<Vec<Vec<T>>> = LENGTHS
        .iter()
        .map(|&n| vec![vec![T::ZERO; n]; buffers])
        .collect();
    let mut opt = StatefulOptimizer::<T>::with_executor(config, exec);
    let mut hand_config = config;
    let base_lr = config.lr();
    for step in 1..=8u64 {
        let lr = base_lr * schedule().lr(step);
        opt.set_lr(lr).unwrap();
        hand_config.set_lr(lr).unwrap();
        let g = gradients::<G>(11, step);
        let grads: Vec<&[G]> = g.iter().map(|x| &x[..]).collect();
        let mut ws: Vec<&mut [W]> = w_obj.iter_mut().map(|x| &mut x[..]).collect();
        let report = opt.step(&mut ws, &grads).map_err(|e| e.to_string())?;
        assert!(report.applied && report.grad_norm.is_none());
        for k in 0..LENGTHS.len() {
            kernel_by_hand(
                &exec,
                &hand_config,
                &mut w_hand[k],
                &mut state_hand[k],
                &g[k],
                step,
            )
            .map_err(|e| e.to_string())?;
            let at = |what: &str| format!("{name}, step {step}, tensor {k}: {what}");
            same_bits(&at("weights"), &w_obj[k], &w_hand[k])?;
            let state = opt.state(k).expect("allocated");
            for (b, buffer) in state.iter().enumerate() {
                same_bits(&at(config.state_buffers()[b]), buffer, &state_hand[k][b])?;
            }
        }
        assert_eq!(opt.steps(), step);
    }
    if let Some((bc1, bc2)) = opt.bias_corrections() {
        let (b1, b2) = match config {
            Optimizer::Adam(c) => c.betas(),
            Optimizer::Lamb(c) => c.betas(),
            _ => unreachable!(),
        };
        assert!(
            (bc1 - (1.0 - b1.powi(8))).abs() < 1e-15,
            "{name}: bc1 {bc1}"
        );
        assert!(
            (bc2 - (1.0 - b2.powi(8))).abs() < 1e-15,
            "{name}: bc2 {bc2}"
        );
    }
    Ok(())
}

#[test]
fn every_optimizer_object_gives_the_kernels_bits() {
    for backend in backends() {
        let exec = sequential(backend);
        for (name, config) in configs() {
            let run = || -> Result<(), String> {
                object_matches_kernels::<f32, f32, f32>(name, config, exec)?;
                object_matches_kernels::<bf16, f32, bf16>(name, config, exec)?;
                object_matches_kernels::<f32, bf16, f16>(name, config, exec)?;
                Ok(())
            };
            if let Err(e) = run() {
                panic!("{backend:?}: {e}");
            }
        }
    }
    // The default executor (threads, the detected backend) too.
    for (name, config) in configs() {
        object_matches_kernels::<f32, f32, f32>(name, config, Executor::new().unwrap()).unwrap();
    }
}

/// The mixed-precision options give what `Executor::check_and_step` gives on buffers managed by
/// hand: f32 master weights, bf16 gradients, bf16 model copies, stochastic rounding, a loss
/// scale and clipping; a step with an infinite gradient writes nothing and does not count.
#[test]
fn mixed_precision_options_match_check_and_step() {
    let adam: Optimizer = Adam::adamw(1e-2, 0.01).build().unwrap().into();
    let scale = 1.0 / 256.0;
    for backend in backends() {
        let exec = sequential(backend);
        let mut opt = StatefulOptimizer::<f32>::with_executor(adam, exec)
            .with_max_grad_norm(Some(0.5))
            .unwrap()
            .with_stochastic_rounding(Some(StochasticRounding::new(42)))
            .unwrap();
        opt.set_grad_scale(scale).unwrap();
        let hand_exec = exec
            .with_grad_scale(scale)
            .unwrap()
            .with_stochastic_rounding(Some(StochasticRounding {
                seed: 42,
                index_base: 0,
            }));
        let mut rng = Rng::new(3);
        let mut w_obj = model::<f32>(&mut rng);
        let mut w_hand = w_obj.clone();
        let mut copy_obj: Vec<Vec<bf16>> = LENGTHS.iter().map(|&n| vec![bf16::ZERO; n]).collect();
        let mut copy_hand = copy_obj.clone();
        let mut m: Vec<Vec<f32>> = LENGTHS.iter().map(|&n| vec![0.0; n]).collect();
        let mut v = m.clone();
        let mut hand_step = 0;
        for call in 1..=6u64 {
            let mut g = gradients::<bf16>(5, call);
            for x in g.iter_mut().flatten() {
                *x = bf16::from_f32(x.to_f32() * 256.0);
            }
            if call == 3 {
                g[2][100] = bf16::INFINITY;
            }
            let grads: Vec<&[bf16]> = g.iter().map(|x| &x[..]).collect();
            let before = opt.save();
            let mut ws: Vec<&mut [f32]> = w_obj.iter_mut().map(|x| &mut x[..]).collect();
            let mut cs: Vec<&mut [bf16]> = copy_obj.iter_mut().map(|x| &mut x[..]).collect();
            let report = opt.step_with_copies(&mut ws, &grads, &mut cs).unwrap();

            let mut tensors: Vec<TensorStep<'_, f32, f32, bf16, bf16>> = w_hand
                .iter_mut()
                .zip(m.iter_mut().zip(v.iter_mut()))
                .zip(grads.iter().zip(copy_hand.iter_mut()))
                .map(|((w, (m, v)), (g, c))| {
                    TensorStep::new(&mut w[..], vec![&mut m[..], &mut v[..]], g)
                        .model_copy(&mut c[..])
                })
                .collect();
            let want = hand_exec
                .check_and_step(&mut tensors, &adam, hand_step + 1, Some(0.5))
                .unwrap();
            drop(tensors);
            assert_eq!(report, want, "{backend:?} call {call}");
            if want.applied {
                hand_step += 1;
            } else {
                assert_eq!(call, 3);
                assert_eq!(opt.save(), before, "a skipped step changed the optimizer");
            }
            assert_eq!(opt.steps(), hand_step);
            for k in 0..LENGTHS.len() {
                same_bits("master weights", &w_obj[k], &w_hand[k]).unwrap();
                same_bits("model copy", &copy_obj[k], &copy_hand[k]).unwrap();
                same_bits("m", &opt.state(k).unwrap()[0], &m[k]).unwrap();
                same_bits("v", &opt.state(k).unwrap()[1], &v[k]).unwrap();
            }
        }
        assert_eq!(hand_step, 5);
    }
}

/// Runs steps `from..=to` of `opt` on `w` with the schedule and the test gradients.
fn run_steps<W: Element, T: Element>(
    opt: &mut StatefulOptimizer<T>,
    w: &mut [Vec<W>],
    base_lr: f64,
    from: u64,
    to: u64,
) {
    for step in from..=to {
        assert_eq!(opt.steps() + 1, step);
        opt.set_lr(base_lr * schedule().lr(step)).unwrap();
        let g = gradients::<bf16>(99, step);
        let grads: Vec<&[bf16]> = g.iter().map(|x| &x[..]).collect();
        let mut ws: Vec<&mut [W]> = w.iter_mut().map(|x| &mut x[..]).collect();
        opt.step(&mut ws, &grads).unwrap();
    }
}

fn resume_is_bit_exact<W: Element, T: Element>(
    name: &str,
    config: Optimizer,
    subnormals: Subnormals,
) {
    let base_lr = config.lr();
    let exec = Executor::new().unwrap();
    let fresh = || {
        StatefulOptimizer::<T>::with_executor(config, exec)
            .with_stochastic_rounding(Some(StochasticRounding::new(7)))
            .unwrap()
            .with_skip_non_finite(true)
            .with_subnormals(subnormals)
    };
    let mut rng = Rng::new(1);
    let w0 = model::<W>(&mut rng);

    let mut straight = fresh();
    let mut w_straight = w0.clone();
    run_steps(&mut straight, &mut w_straight, base_lr, 1, 10);

    for stop in [0u64, 1, 4, 9] {
        let mut first = fresh();
        let mut w = w0.clone();
        run_steps(&mut first, &mut w, base_lr, 1, stop);
        let checkpoint = first.save();
        drop(first);
        // Into a fresh optimizer made for the same config, and from the bytes alone, on every
        // backend: all continue with the same bits.
        let mut loaded = fresh();
        loaded.load(&checkpoint).unwrap();
        assert_eq!(loaded.save(), checkpoint, "{name}: save(load(x)) != x");
        let mut candidates = vec![("load", loaded)];
        candidates.push((
            "from_checkpoint",
            StatefulOptimizer::<T>::from_checkpoint(&checkpoint).unwrap(),
        ));
        for backend in backends() {
            let mut o = StatefulOptimizer::<T>::with_executor(config, sequential(backend));
            o.load(&checkpoint).unwrap();
            candidates.push((backend.name(), o));
        }
        for (how, mut opt) in candidates {
            assert_eq!(opt.subnormals(), subnormals, "{name}: resumed by {how}");
            let mut w = w.clone();
            run_steps(&mut opt, &mut w, base_lr, stop + 1, 10);
            for k in 0..LENGTHS.len() {
                if bits(&w[k]) != bits(&w_straight[k]) {
                    panic!("{name}: stopped at {stop}, resumed by {how}: tensor {k} differs");
                }
            }
            assert_eq!(
                opt.save(),
                straight.save(),
                "{name}: stopped at {stop}, resumed by {how}: the state differs"
            );
        }
    }
}

#[test]
fn resuming_from_a_checkpoint_is_bit_exact() {
    for (name, config) in configs() {
        resume_is_bit_exact::<f32, f32>(name, config, Subnormals::Keep);
        resume_is_bit_exact::<bf16, bf16>(name, config, Subnormals::Keep);
        resume_is_bit_exact::<bf16, bf16>(name, config, Subnormals::Flush);
    }
}

/// A CRC-32 written bit by bit from its definition, to check the format's checksum and to mend
/// it after editing a field.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len() - 4;
    let crc = crc32(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// A small stepped optimizer and its checkpoint.
fn small_adam() -> (StatefulOptimizer<f32>, Vec<u8>) {
    let mut opt = StatefulOptimizer::<f32>::new(Adam::builder(1e-2).build().unwrap())
        .unwrap()
        .with_max_grad_norm(Some(2.0))
        .unwrap();
    let (mut a, mut b) = (vec![1.0f32; 5], vec![-1.0f32; 3]);
    for step in 1..=2 {
        let (ga, gb) = (vec![0.1f32 * step as f32; 5], vec![0.3f32; 3]);
        opt.step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gb[..]])
            .unwrap();
    }
    let bytes = opt.save();
    (opt, bytes)
}

fn checkpoint_error(result: Result<(), Error>) -> CheckpointError {
    match result {
        Err(Error::Checkpoint(e)) => e,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn the_format_is_as_documented() {
    let (opt, bytes) = small_adam();
    assert_eq!(&bytes[..8], b"OPTKCKPT");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
    assert_eq!(
        u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
        bytes.len() as u64
    );
    assert_eq!((bytes[20], bytes[21]), (2, 0), "Adam, f32 state");
    let n = bytes.len();
    assert_eq!(
        u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()),
        crc32(&bytes[..n - 4])
    );
    // The state is the last 8 * 2 * 4 bytes before the checksum: m then v of tensor 0, then
    // of tensor 1.
    let state: Vec<f32> = bytes[n - 4 - 64..n - 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let mut want: Vec<f32> = Vec::new();
    for k in 0..2 {
        for buffer in opt.state(k).unwrap() {
            want.extend(buffer.iter());
        }
    }
    assert_eq!(bits(&state), bits(&want));
    // The tensor lengths just before.
    let lengths: Vec<u64> = bytes[n - 4 - 64 - 16..n - 4 - 64]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(lengths, [5, 3]);
}

#[test]
fn damaged_checkpoints_are_refused_and_change_nothing() {
    let (mut opt, good) = small_adam();
    let before = opt.save();
    assert_eq!(before, good);
    let mut refuse = |bytes: &[u8]| -> CheckpointError {
        let e = checkpoint_error(opt.load(bytes));
        assert_eq!(
            opt.save(),
            before,
            "a refused load changed the optimizer ({e})"
        );
        assert!(!e.to_string().is_empty());
        e
    };

    // Truncated at every length.
    for len in 0..good.len() {
        match refuse(&good[..len]) {
            CheckpointError::Truncated { len: l, .. } => assert_eq!(l, len),
            e => panic!("truncated to {len}: {e:?}"),
        }
    }
    // One more byte.
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        refuse(&longer),
        CheckpointError::TrailingBytes { .. }
    ));
    // Every single-bit flip of every byte is caught.
    for i in 0..good.len() {
        for bit in [0, 3, 7] {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            let e = refuse(&bad);
            let expected = match i {
                0..8 => matches!(e, CheckpointError::NotACheckpoint),
                // The version is read after the checksum: a damaged one is damage.
                12..20 => matches!(
                    e,
                    CheckpointError::Truncated { .. } | CheckpointError::TrailingBytes { .. }
                ),
                _ => matches!(e, CheckpointError::ChecksumMismatch { .. }),
            };
            assert!(expected, "byte {i} bit {bit}: {e:?}");
        }
    }
    // Another version, with a valid checksum.
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(
        refuse(&with_checksum(v2)),
        CheckpointError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    // Not a checkpoint at all.
    assert_eq!(
        refuse(b"PK\x03\x04 something else entirely"),
        CheckpointError::NotACheckpoint
    );
    // Edited fields with a mended checksum: inconsistent content.
    let mut dtype = good.clone();
    dtype[21] = 1; // claims f16: the payload no longer fits the lengths
    assert!(matches!(
        refuse(&with_checksum(dtype)),
        CheckpointError::Malformed { .. }
    ));
    let mut dtype = good.clone();
    dtype[21] = 9;
    assert!(matches!(
        refuse(&with_checksum(dtype)),
        CheckpointError::Malformed { .. }
    ));
    let mut lr = good.clone();
    lr[26..34].copy_from_slice(&(-1.0f64).to_bits().to_le_bytes());
    assert!(matches!(
        refuse(&with_checksum(lr)),
        CheckpointError::InvalidConfig { .. }
    ));
    let n = good.len();
    let mut length = good.clone();
    length[n - 4 - 64 - 8..n - 4 - 64].copy_from_slice(&4u64.to_le_bytes());
    assert!(matches!(
        refuse(&with_checksum(length)),
        CheckpointError::Malformed { .. }
    ));
    let mut huge = good.clone();
    huge[n - 4 - 64 - 8..n - 4 - 64].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        refuse(&with_checksum(huge)),
        CheckpointError::Malformed { .. }
    ));

    // Well-formed checkpoints that do not fit this optimizer.
    let momentum = StatefulOptimizer::<f32>::new(Momentum::heavy_ball(0.1, 0.9).build().unwrap())
        .unwrap()
        .save();
    assert_eq!(
        refuse(&momentum),
        CheckpointError::OptimizerMismatch {
            file: "momentum",
            expected: "Adam"
        }
    );
    let mut bf16_state =
        StatefulOptimizer::<bf16>::new(Adam::builder(1e-2).build().unwrap()).unwrap();
    let (mut a, mut b) = (vec![1.0f32; 5], vec![-1.0f32; 3]);
    let (ga, gb) = (vec![0.1f32; 5], vec![0.3f32; 3]);
    bf16_state
        .step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gb[..]])
        .unwrap();
    assert_eq!(
        refuse(&bf16_state.save()),
        CheckpointError::DTypeMismatch {
            file: optkern::DType::BF16,
            expected: optkern::DType::F32
        }
    );
    assert!(matches!(
        StatefulOptimizer::<f32>::from_checkpoint(&bf16_state.save()),
        Err(Error::Checkpoint(CheckpointError::DTypeMismatch { .. }))
    ));
    let other_model = |lengths: &[usize]| {
        let mut o = StatefulOptimizer::<f32>::new(Adam::builder(1e-2).build().unwrap()).unwrap();
        let mut ws: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![1.0; n]).collect();
        let gs: Vec<Vec<f32>> = lengths.iter().map(|&n| vec![0.5; n]).collect();
        let mut w: Vec<&mut [f32]> = ws.iter_mut().map(|x| &mut x[..]).collect();
        let g: Vec<&[f32]> = gs.iter().map(|x| &x[..]).collect();
        o.step(&mut w, &g).unwrap();
        o.save()
    };
    assert_eq!(
        refuse(&other_model(&[5, 4])),
        CheckpointError::TensorLengthMismatch {
            tensor: 1,
            file: 4,
            expected: 3
        }
    );
    assert_eq!(
        refuse(&other_model(&[5])),
        CheckpointError::TensorCountMismatch {
            file: 1,
            expected: 2
        }
    );
    // And the good one still loads.
    opt.load(&good).unwrap();
    assert_eq!(opt.save(), good);
}

#[test]
fn bad_steps_are_refused_and_change_nothing() {
    let (mut opt, good) = small_adam();
    let (mut a, mut b, mut c) = (vec![1.0f32; 5], vec![-1.0f32; 3], vec![0.0f32; 2]);
    let (ga, gb, gc) = (vec![0.1f32; 5], vec![0.3f32; 3], vec![0.3f32; 2]);
    let (a0, b0) = (a.clone(), b.clone());
    let results = [
        opt.step(&mut [&mut a[..], &mut b[..]], &[&ga[..]]),
        opt.step(&mut [&mut a[..]], &[&ga[..]]),
        opt.step(
            &mut [&mut a[..], &mut b[..], &mut c[..]],
            &[&ga[..], &gb[..], &gc[..]],
        ),
        opt.step(&mut [&mut a[..], &mut c[..]], &[&ga[..], &gc[..]]),
        opt.step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gc[..]]),
        opt.step_with_copies(
            &mut [&mut a[..], &mut b[..]],
            &[&ga[..], &gb[..]],
            &mut [&mut vec![bf16::ZERO; 5][..]],
        ),
    ];
    for r in &results {
        assert!(r.is_err(), "{r:?}");
    }
    assert!(matches!(
        results[3],
        Err(Error::ModelChanged {
            tensor: 1,
            len: 2,
            expected: 3
        })
    ));
    assert!(matches!(results[4], Err(Error::InTensor { index: 1, .. })));
    assert_eq!((a, b), (a0, b0));
    assert_eq!(opt.save(), good);
    // A fresh optimizer refused on its first step keeps no state.
    let mut fresh = StatefulOptimizer::<f32>::new(Adam::builder(1e-2).build().unwrap()).unwrap();
    let mut w = [1.0f32; 4];
    assert!(fresh.step(&mut [&mut w[..]], &[&ga[..]]).is_err());
    assert_eq!(fresh.tensor_lengths(), None);
    assert_eq!(fresh.steps(), 0);
    // Invalid settings are refused.
    assert!(fresh.set_lr(-1.0).is_err());
    assert!(fresh.set_grad_scale(f64::NAN).is_err());
    assert_eq!(fresh.lr(), 1e-2);
    assert_eq!(fresh.grad_scale(), 1.0);
    assert!(fresh.clone().with_max_grad_norm(Some(0.0)).is_err());
    assert!(
        fresh
            .clone()
            .with_stochastic_rounding(Some(StochasticRounding {
                seed: 1,
                index_base: 5
            }))
            .is_err()
    );
}

#[test]
fn state_is_lazy_aligned_and_resettable() {
    let config: Optimizer = Adam::builder(1e-3).amsgrad(true).build().unwrap().into();
    let mut opt = StatefulOptimizer::<bf16>::new(config).unwrap();
    assert_eq!(opt.tensor_lengths(), None);
    assert!(opt.state(0).is_none());
    assert_eq!(opt.bias_corrections(), None);
    let mut w = [vec![1.0f32; 100], vec![1.0f32; 3]];
    let g = [vec![0.5f32; 100], vec![0.5f32; 3]];
    let [w0, w1] = &mut w;
    opt.step(&mut [&mut w0[..], &mut w1[..]], &[&g[0][..], &g[1][..]])
        .unwrap();
    assert_eq!(opt.tensor_lengths(), Some(&[100, 3][..]));
    let state = opt.state(0).unwrap();
    assert_eq!(state.len(), 3);
    for buffer in state {
        assert_eq!(buffer.as_ptr() as usize % 64, 0);
        assert_eq!(buffer.len(), 100);
    }
    let zero = zeroed::<f32>(3);
    assert_eq!(zero.as_ptr() as usize % 64, 0);
    let (bc1, bc2) = opt.bias_corrections().unwrap();
    assert_eq!((bc1, bc2), (1.0 - 0.9, 1.0 - 0.999));
    opt.reset();
    assert_eq!((opt.steps(), opt.tensor_lengths()), (0, None));
    let mut other = [0.0f32; 7];
    opt.step(&mut [&mut other[..]], &[&vec![1.0f32; 7][..]])
        .unwrap();
    assert_eq!(opt.tensor_lengths(), Some(&[7][..]));
}

/// The byte offset of the fields after the config record (steps, grad scale, options,
/// max_norm, seed, tensor count, buffers per tensor, lengths), from the record's sizes.
fn after_config(bytes: &[u8]) -> usize {
    let n = u16::from_le_bytes([bytes[22], bytes[23]]) as usize;
    let k = u16::from_le_bytes([bytes[24], bytes[25]]) as usize;
    26 + 8 * n + k
}

#[test]
fn checkpoint_fields_are_cross_checked() {
    let (mut opt, good) = small_adam();
    let before = opt.save();
    let at = after_config(&good);
    let (steps, scale, options, max_norm, seed) = (at, at + 8, at + 16, at + 17, at + 25);
    let edit = |offset: usize, value: &[u8]| {
        let mut bytes = good.clone();
        bytes[offset..offset + value.len()].copy_from_slice(value);
        with_checksum(bytes)
    };
    let mut refuse = |bytes: &[u8], words: &str| {
        let e = checkpoint_error(opt.load(bytes));
        assert_eq!(
            opt.save(),
            before,
            "a refused load changed the optimizer ({e})"
        );
        assert!(e.to_string().contains(words), "{e}");
        e
    };
    // The fields decoded where the format says they are.
    assert_eq!(good[steps..steps + 8], 2u64.to_le_bytes());
    assert_eq!(good[options], 1 | 8, "clipping on, state allocated");
    assert_eq!(good[max_norm..max_norm + 8], 2.0f64.to_bits().to_le_bytes());

    // A step count with no next step.
    refuse(&edit(steps, &u64::MAX.to_le_bytes()), "u64::MAX");
    // Steps taken, but no state: clear the allocated bit and the tensors.
    let fresh = StatefulOptimizer::<f32>::new(Adam::builder(1e-2).build().unwrap())
        .unwrap()
        .save();
    let mut stepped = fresh.clone();
    let at_fresh = after_config(&fresh);
    stepped[at_fresh..at_fresh + 8].copy_from_slice(&3u64.to_le_bytes());
    refuse(&with_checksum(stepped), "no state");
    // A clipping norm or a seed with its option off: saving would not give the file back.
    refuse(&edit(options, &[8]), "clipping is off");
    let mut seeded = good.clone();
    seeded[seed..seed + 8].copy_from_slice(&7u64.to_le_bytes());
    refuse(&with_checksum(seeded), "rounding is off");
    // Options validated as their setters validate, in f32.
    assert!(matches!(
        refuse(&edit(scale, &1e39f64.to_bits().to_le_bytes()), "grad_scale"),
        CheckpointError::InvalidConfig { .. }
    ));
    refuse(
        &edit(max_norm, &1e-50f64.to_bits().to_le_bytes()),
        "max_norm",
    );
    refuse(
        &edit(max_norm, &(-0.0f64).to_bits().to_le_bytes()),
        "max_norm",
    );
    // A version from elsewhere, with a valid checksum, is named; a damaged one is damage.
    assert!(matches!(
        refuse(&edit(8, &7u32.to_le_bytes()), "version"),
        CheckpointError::UnsupportedVersion { found: 7, .. }
    ));
    let mut flipped = good.clone();
    flipped[9] ^= 1;
    assert!(matches!(
        refuse(&flipped, "checksum"),
        CheckpointError::ChecksumMismatch { .. }
    ));
    // A model no memory can hold, for an optimizer whose payload does not bound it (SGD has
    // no state buffers).
    let mut sgd = StatefulOptimizer::<f32>::new(Sgd::new(0.1).unwrap()).unwrap();
    let mut w = [1.0f32; 4];
    sgd.step(&mut [&mut w[..]], &[&[0.5f32; 4][..]]).unwrap();
    let sgd_good = sgd.save();
    let sgd_before = sgd.clone().save();
    let n = sgd_good.len();
    let mut huge = sgd_good.clone();
    huge[n - 12..n - 4].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = checkpoint_error(sgd.load(&with_checksum(huge)));
    assert!(e.to_string().contains("memory"), "{e}");
    assert_eq!(sgd.save(), sgd_before);

    // The valid neighbours load, and give their bytes back.
    let unclipped = {
        let mut bytes = good.clone();
        bytes[options] = 8;
        bytes[max_norm..max_norm + 8].copy_from_slice(&0u64.to_le_bytes());
        with_checksum(bytes)
    };
    for bytes in [edit(steps, &(u64::MAX - 1).to_le_bytes()), unclipped] {
        let loaded = StatefulOptimizer::<f32>::from_checkpoint(&bytes).unwrap();
        assert_eq!(loaded.save(), bytes);
    }
    // An optimizer at the largest step count refuses to step, writing nothing.
    let mut last =
        StatefulOptimizer::<f32>::from_checkpoint(&edit(steps, &(u64::MAX - 1).to_le_bytes()))
            .unwrap();
    let at_last = last.save();
    let (mut a, mut b) = (vec![1.0f32; 5], vec![-1.0f32; 3]);
    let (ga, gb) = (vec![0.1f32; 5], vec![0.3f32; 3]);
    assert!(matches!(
        last.step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gb[..]]),
        Err(Error::StepCountExhausted { steps }) if steps == u64::MAX - 1
    ));
    assert_eq!((a, b), (vec![1.0f32; 5], vec![-1.0f32; 3]));
    assert_eq!(last.save(), at_last);
}

/// Configs grouped by what makes them the same optimizer for a checkpoint: the same kind and
/// the same discrete choices. Configs of one group differ only in their numbers.
fn config_groups() -> Vec<(&'static str, Optimizer)> {
    let mut all = configs();
    all.extend([
        (
            "heavy ball",
            Momentum::heavy_ball(0.2, 0.5)
                .weight_decay(WeightDecay::L2(0.5))
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adam",
            Adam::builder(5e-3)
                .betas(0.8, 0.9)
                .eps(1e-6)
                .build()
                .unwrap()
                .into(),
        ),
        (
            "adam maximize",
            Adam::builder(1e-3).maximize(true).build().unwrap().into(),
        ),
        (
            "rmsprop centered",
            Rmsprop::builder(1e-3)
                .centered(true)
                .build()
                .unwrap()
                .into(),
        ),
        ("rmsprop", Rmsprop::builder(1e-3).build().unwrap().into()),
        (
            "amsgrad",
            Adam::builder(1e-3).amsgrad(true).build().unwrap().into(),
        ),
        (
            "lamb",
            Lamb::builder(3e-2)
                .betas(0.8, 0.9)
                .max_grad_norm(None)
                .build()
                .unwrap()
                .into(),
        ),
    ]);
    all
}

#[test]
fn a_checkpoint_loads_only_into_the_same_optimizer() {
    let groups = config_groups();
    let stepped: Vec<Vec<u8>> = groups
        .iter()
        .map(|(_, config)| {
            let mut opt = StatefulOptimizer::<f32>::new(*config).unwrap();
            let (mut a, mut b) = (vec![1.0f32; 5], vec![-1.0f32; 3]);
            opt.step(
                &mut [&mut a[..], &mut b[..]],
                &[&[0.1f32; 5][..], &[0.3f32; 3][..]],
            )
            .unwrap();
            opt.save()
        })
        .collect();
    let (mut loaded, mut refused) = (0, 0);
    for (i, (group_i, config_i)) in groups.iter().enumerate() {
        for (j, (group_j, config_j)) in groups.iter().enumerate() {
            let mut target = StatefulOptimizer::<f32>::new(*config_j).unwrap();
            let before = target.save();
            let result = target.load(&stepped[i]);
            if group_i == group_j {
                result.unwrap_or_else(|e| panic!("{group_i} ({i}) into {group_j} ({j}): {e}"));
                // The file's config, numbers included.
                assert_eq!(target.config(), config_i);
                assert_eq!(target.save(), stepped[i]);
                loaded += 1;
            } else {
                let e = checkpoint_error(result);
                assert_eq!(target.save(), before, "{group_i} into {group_j}: changed");
                let expected = if config_i.code() == config_j.code() {
                    matches!(e, CheckpointError::ConfigMismatch { .. })
                } else {
                    matches!(e, CheckpointError::OptimizerMismatch { .. })
                };
                assert!(expected, "{group_i} into {group_j}: {e:?}");
                refused += 1;
            }
        }
    }
    assert!(
        loaded > groups.len() && refused > loaded,
        "{loaded} loaded, {refused} refused"
    );
    // The message names the option.
    let amsgrad = StatefulOptimizer::<f32>::new(Adam::builder(1e-3).amsgrad(true).build().unwrap())
        .unwrap()
        .save();
    let mut adam = StatefulOptimizer::<f32>::new(Adam::builder(1e-3).build().unwrap()).unwrap();
    let e = checkpoint_error(adam.load(&amsgrad));
    assert_eq!(
        e,
        CheckpointError::ConfigMismatch {
            optimizer: "Adam",
            option: "amsgrad",
            file: 1,
            expected: 0
        }
    );
    assert!(e.to_string().contains("amsgrad"), "{e}");
}

/// Checkpoints of every optimizer and form, in every state type, with every option, stepped
/// and fresh: the seed corpus of the fuzz targets (`fuzz/corpus/checkpoints`) and the bases of
/// the mutation property below. Named by what they hold.
fn sample_checkpoints() -> Vec<(String, Vec<u8>)> {
    fn stepped<T: Element>(config: Optimizer, variant: usize) -> Vec<u8> {
        let mut opt = StatefulOptimizer::<T>::new(config).unwrap();
        opt = match variant % 4 {
            0 => opt,
            1 => opt.with_max_grad_norm(Some(0.5)).unwrap(),
            2 => opt
                .with_skip_non_finite(true)
                .with_stochastic_rounding(Some(StochasticRounding::new(0x5eed)))
                .unwrap(),
            _ => opt.with_subnormals(Subnormals::Flush),
        };
        if variant % 3 == 1 {
            opt.set_grad_scale(0.25).unwrap();
        }
        let (mut a, mut b) = (vec![bf16::from_f32(0.5); 5], vec![bf16::from_f32(-1.0); 3]);
        for step in 1..=2u8 {
            let ga = [0.1f32 * f32::from(step); 5];
            opt.step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &[-0.3f32; 3][..]])
                .unwrap();
        }
        opt.save()
    }
    let mut out = Vec::new();
    for (k, (name, config)) in configs().into_iter().enumerate() {
        let name = name.replace(' ', "-");
        out.push((format!("{name}-f32"), stepped::<f32>(config, k)));
        out.push((format!("{name}-bf16"), stepped::<bf16>(config, k + 1)));
        out.push((format!("{name}-f16"), stepped::<f16>(config, k + 2)));
        out.push((
            format!("{name}-fresh"),
            StatefulOptimizer::<f32>::new(config).unwrap().save(),
        ));
    }
    out
}

/// The fuzz targets' seed corpus is the current format: every sample checkpoint, as committed.
/// `OPTKERN_WRITE_CORPUS=1` rewrites it.
#[test]
fn the_fuzz_corpus_holds_current_checkpoints() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/checkpoints");
    let write = std::env::var_os("OPTKERN_WRITE_CORPUS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let samples = sample_checkpoints();
    for (name, bytes) in &samples {
        let path = dir.join(format!("{name}.ckpt"));
        if write {
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (OPTKERN_WRITE_CORPUS=1 writes it)", path.display())
        });
        assert!(
            committed == *bytes,
            "{}: not the current checkpoint",
            path.display()
        );
    }
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, samples.len(), "stale files in {}", dir.display());
}

/// Loads `bytes` as each state type: a load either fails with an error and leaves a stepped
/// optimizer exactly as it was, or succeeds, and saving gives `bytes` back.
fn load_or_refuse(bytes: &[u8], into: &mut StatefulOptimizer<f32>) -> Result<bool, TestCaseError> {
    fn fresh<T: Element>(bytes: &[u8]) -> Result<bool, TestCaseError> {
        Ok(match StatefulOptimizer::<T>::from_checkpoint(bytes) {
            Ok(opt) => {
                prop_assert!(opt.save() == bytes, "loaded, but saves other bytes");
                true
            }
            Err(Error::Checkpoint(_)) => false,
            Err(e) => return Err(TestCaseError::fail(format!("not a checkpoint error: {e}"))),
        })
    }
    let loaded = fresh::<f32>(bytes)? | fresh::<bf16>(bytes)? | fresh::<f16>(bytes)?;
    let before = into.save();
    match into.load(bytes) {
        Ok(()) => prop_assert!(into.save() == bytes),
        Err(_) => prop_assert!(
            into.save() == before,
            "a refused load changed the optimizer"
        ),
    }
    Ok(loaded)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(512)))]

    /// A checkpoint with a few bytes changed and its checksum (and, half the time, its length
    /// field) mended: the parser beyond the checksum either refuses it or loads what saves
    /// back to the same bytes; nothing panics.
    #[test]
    fn a_mutated_checkpoint_is_refused_or_round_trips(
        base in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
        mend_length in any::<bool>(),
    ) {
        let samples = samples();
        let (_, good) = &samples[base.index(samples.len())];
        let mut bytes = good.clone();
        // Mostly in the header, where the parser decides; sometimes anywhere.
        let header = bytes.len().min(200);
        for (at, value, anywhere) in edits {
            let i = at.index(if anywhere { bytes.len() - 4 } else { header });
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            let keep = 24 + cut.index(bytes.len() - 24);
            bytes.truncate(keep);
            bytes.extend_from_slice(&[0; 4]);
        }
        if mend_length {
            let len = bytes.len() as u64;
            bytes[12..20].copy_from_slice(&len.to_le_bytes());
        }
        let bytes = with_checksum(bytes);
        let mut into = StatefulOptimizer::<f32>::from_checkpoint(&samples[0].1).unwrap();
        load_or_refuse(&bytes, &mut into)?;
    }
}

/// The sample checkpoints, made once.
fn samples() -> &'static [(String, Vec<u8>)] {
    static SAMPLES: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(sample_checkpoints)
}

#[test]
fn every_sample_checkpoint_round_trips() {
    let mut into = StatefulOptimizer::<f32>::from_checkpoint(&samples()[0].1).unwrap();
    for (name, bytes) in samples() {
        assert!(
            load_or_refuse(bytes, &mut into).unwrap(),
            "{name} does not load"
        );
    }
}

/// The schedule-free weight switch of one mix: every backend, 1 and 4 threads, lengths up to
/// 2100 at misaligned starts and hostile values, the same bits as the scalar backend on one
/// thread; and `x` within its bound of the f64 `y + (1 - 1/b)(z - y)`: PyTorch's lerp in f32
/// carries `16 u (|y| + |z| + |w (z - y)|)` (`u = 2^-24`, the weight rounded to f32 included)
/// before the result's rounding into `W` (half a unit of it).
fn switch_matches_scalar<W: Element, T: Element>(seed: u64) -> Result<(), String> {
    use common::data::Misaligned;
    let mut rng = Rng::new(seed);
    for case in 0..24u64 {
        let len = match case {
            0 => 0,
            1 => 1,
            2 => 2100,
            _ => (rng.next_u64() % 2100) as usize,
        };
        let offset = (rng.next_u64() % 16) as usize;
        let special = case % 3 == 0;
        let y = Misaligned::<W>::new(len, offset, || rng.value(special));
        let z = Misaligned::<T>::new(len, (rng.next_u64() % 16) as usize, || rng.value(special));
        let b = [0.9, 0.5, 0.999, 1e-3][(case % 4) as usize];
        for to_eval in [true, false] {
            let run = |exec: &Executor| {
                let mut w = y.copy();
                if to_eval {
                    exec.schedulefree_eval(w.slice_mut(), z.slice(), b).unwrap();
                } else {
                    exec.schedulefree_train(w.slice_mut(), z.slice(), b)
                        .unwrap();
                }
                w
            };
            let want = run(&sequential(optkern::Backend::Scalar));
            for backend in backends() {
                for (threads, pool) in common::pools() {
                    let got = pool.install(|| run(&common::split_finely(backend)));
                    same_bits(
                        &format!("{backend} {threads} len {len} eval {to_eval}"),
                        got.slice(),
                        want.slice(),
                    )?;
                }
            }
            if !special {
                let weight = if to_eval { 1.0 - 1.0 / b } else { 1.0 - b };
                for ((x, y), z) in want.slice().iter().zip(y.slice()).zip(z.slice()) {
                    let (x, y, z) = (
                        f64::from(x.to_f32()),
                        f64::from(y.to_f32()),
                        f64::from(z.to_f32()),
                    );
                    if !(y.is_finite() && z.is_finite()) {
                        continue;
                    }
                    let exact = y + weight * (z - y);
                    if x.is_infinite() && W::DTYPE == optkern::DType::F16 && exact.abs() > 65504.0 {
                        continue; // beyond f16's range: infinite, as it must be
                    }
                    // Half a unit in the last place of W, relative, and half its smallest
                    // subnormal.
                    let (half_unit, tiny) = match W::DTYPE {
                        optkern::DType::F32 => (2f64.powi(-24), 2f64.powi(-150)),
                        optkern::DType::BF16 => (2f64.powi(-8), 2f64.powi(-134)),
                        optkern::DType::F16 => (2f64.powi(-11), 2f64.powi(-25)),
                    };
                    let lerp =
                        16.0 * 2f64.powi(-24) * (y.abs() + z.abs() + (weight * (z - y)).abs());
                    let bound = lerp * (1.0 + half_unit) + half_unit * exact.abs() + tiny;
                    let error = (x - exact).abs();
                    if error.is_nan() || error > bound {
                        return Err(format!(
                            "x {x} for y {y}, z {z}, b {b}: f64 {exact}, bound {bound}"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_schedulefree_switch_is_bit_exact_on_every_backend() {
    fn each<W: Element>(seed: u64) -> Result<(), String> {
        switch_matches_scalar::<W, f32>(seed)?;
        switch_matches_scalar::<W, bf16>(seed + 1)?;
        switch_matches_scalar::<W, f16>(seed + 2)
    }
    each::<f32>(1).unwrap();
    each::<bf16>(10).unwrap();
    each::<f16>(20).unwrap();
}

#[test]
fn the_stateful_switch_is_the_executors_and_checks_first() {
    let sf = ScheduleFreeAdamw::builder(2.5e-3).build().unwrap();
    let mut opt = StatefulOptimizer::<f32>::new(sf).unwrap();
    let mut rng = Rng::new(7);
    let mut model: Vec<Vec<f32>> = model(&mut rng);
    // Before the first step: nothing to switch (no z yet), nothing written.
    let before = model.clone();
    let mut views: Vec<&mut [f32]> = model.iter_mut().map(|w| &mut w[..]).collect();
    opt.schedulefree_eval(&mut views).unwrap();
    drop(views);
    assert_eq!(bits_of(&model), bits_of(&before));
    for step in 1..=3 {
        let grads: Vec<Vec<f32>> = gradients(11, step);
        let mut views: Vec<&mut [f32]> = model.iter_mut().map(|w| &mut w[..]).collect();
        let gviews: Vec<&[f32]> = grads.iter().map(|g| &g[..]).collect();
        opt.step(&mut views, &gviews).unwrap();
    }
    // The object's switch is the executor's on each tensor with its z.
    let mut by_hand = model.clone();
    for (w, state) in by_hand.iter_mut().zip(0..) {
        let z = &opt.state(state).unwrap()[0];
        Executor::new()
            .unwrap()
            .schedulefree_eval(w, z, 0.9)
            .unwrap();
    }
    let mut views: Vec<&mut [f32]> = model.iter_mut().map(|w| &mut w[..]).collect();
    opt.schedulefree_eval(&mut views).unwrap();
    drop(views);
    assert_eq!(bits_of(&model), bits_of(&by_hand));
    // Refused, writing nothing: a tensor missing, a tensor of another length.
    let kept = model.clone();
    let mut views: Vec<&mut [f32]> = model.iter_mut().skip(1).map(|w| &mut w[..]).collect();
    assert!(matches!(
        opt.schedulefree_train(&mut views),
        Err(Error::TensorCount { .. })
    ));
    drop(views);
    let mut shorter = model.clone();
    shorter.last_mut().unwrap().pop();
    let mut views: Vec<&mut [f32]> = shorter.iter_mut().map(|w| &mut w[..]).collect();
    assert!(matches!(
        opt.schedulefree_train(&mut views),
        Err(Error::ModelChanged { .. })
    ));
    drop(views);
    assert_eq!(bits_of(&model), bits_of(&kept));
    // And back to y for training, within a unit in the last place of where it was.
    let mut views: Vec<&mut [f32]> = model.iter_mut().map(|w| &mut w[..]).collect();
    opt.schedulefree_train(&mut views).unwrap();
    // Not a schedule-free optimizer: refused.
    let adam = StatefulOptimizer::<f32>::new(Adam::builder(1e-3).build().unwrap()).unwrap();
    let err = adam.schedulefree_eval(&mut views).unwrap_err();
    assert!(err.to_string().contains("schedule-free"), "{err}");
    // The executor's checks: lengths and the interpolation.
    let exec = Executor::new().unwrap();
    let (mut w, z) = (vec![1.0f32; 8], vec![0.0f32; 7]);
    assert!(exec.schedulefree_eval(&mut w, &z, 0.9).is_err());
    assert!(exec.schedulefree_eval(&mut w[..7], &z, 0.0).is_err());
    assert!(exec.schedulefree_eval(&mut w[..7], &z, 1.0).is_err());
    assert_eq!(w, vec![1.0f32; 8]);
}

fn bits_of(model: &[Vec<f32>]) -> Vec<Vec<u32>> {
    model.iter().map(|w| bits(w)).collect()
}
