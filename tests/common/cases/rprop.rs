//! Rprop (PyTorch's `torch.optim.Rprop`).

use super::*;
use optkern::Rprop;

pub struct RpropCase;

impl Case for RpropCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Rprop",
        random,
        refused: || {
            vec![
                refuse(Rprop::builder(1e-2).etas(0.0, 1.2).build(), "eta_minus"),
                refuse(Rprop::builder(1e-2).etas(1.0, 1.2).build(), "eta_minus"),
                refuse(
                    Rprop::builder(1e-2).etas(1.0 - 1e-9, 1.2).build(),
                    "eta_minus",
                ),
                refuse(Rprop::builder(1e-2).etas(0.5, 1.0).build(), "eta_plus"),
                refuse(
                    Rprop::builder(1e-2).etas(0.5, 1.0 + 1e-9).build(),
                    "eta_plus",
                ),
                refuse(
                    Rprop::builder(1e-2).etas(0.5, f64::INFINITY).build(),
                    "eta_plus",
                ),
                refuse(
                    Rprop::builder(1e-2).step_sizes(-1.0, 50.0).build(),
                    "step_min",
                ),
                refuse(
                    Rprop::builder(1e-2).step_sizes(1.0, 0.5).build(),
                    "step_min",
                ),
                refuse(
                    Rprop::builder(1e-2).step_sizes(1e-6, f64::NAN).build(),
                    "step_max",
                ),
                refuse(
                    Rprop::builder(1e-2)
                        .weight_decay(WeightDecay::L2(1e-3))
                        .build(),
                    "weight_decay",
                ),
                refuse(Rprop::builder(f64::INFINITY).build(), "lr"),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 40, 37, 40],
                    &["rprop_step", "step_size", "37"],
                    |e, b| rprop(e, b, 1),
                ),
                bad(&[40, 39, 40, 40], &["prev", "39"], |e, b| rprop(e, b, 2)),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| rprop(e, b, 1)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| rprop(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["rprop"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            any_valid::lr(),
            prop_oneof![Just(0.5f64), 0.01f64..0.99],
            prop_oneof![Just(1.2f64), 1.01f64..10.0],
            prop_oneof![
                Just(0.0f64),
                Just(1e-6),
                (-8.0f64..-1.0).prop_map(|e| 10f64.powf(e))
            ],
            prop_oneof![Just(1.0f64), 1.0f64..1e4],
            any::<bool>(),
        )
            .prop_map(|(lr, minus, plus, min, ratio, maximize)| {
                config((lr, minus, plus, min, min.max(1e-6) * ratio, maximize))
            })
            .boxed()
    }

    crate::own_call!(Rprop, |exec, w, state, g, c, step| {
        let [prev, size] = state.as_mut_slice() else {
            unreachable!("Rprop has two state buffers")
        };
        exec.rprop_step(w, prev, size, g, c, step)
    });
}

/// Rprop at lr 1e-2 through `rprop_step`.
fn rprop(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Rprop::builder(1e-2).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [prev, size] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.rprop_step(w, prev, size, g, &config, step)
}

fn config((lr, minus, plus, min, max, maximize): (f64, f64, f64, f64, f64, bool)) -> Optimizer {
    Rprop::builder(lr)
        .etas(minus, plus)
        .step_sizes(min, max)
        .maximize(maximize)
        .build()
        .unwrap()
        .into()
}

fn random(rng: &mut Rng) -> Optimizer {
    let min = pick(rng, &[0.0, 1e-6, 1e-3]);
    config((
        pick(rng, &[0.0, 1e-3, 0.01, 0.1]),
        pick(rng, &[0.5, 0.3, 0.9]),
        pick(rng, &[1.2, 1.5, 3.0]),
        min,
        pick(rng, &[50.0f64, 0.2, 1e-3]).max(min),
        flag(rng),
    ))
}

/// Every option, both bounds of the step size, steps from 1 (where the state is not read).
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..0.0).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.5f64), 0.01f64..0.99],
            prop_oneof![Just(1.2f64), 1.01f64..10.0],
            prop_oneof![Just(0.0f64), (-8.0f64..-1.0).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(50.0f64), (-1.0f64..3.0).prop_map(|e| 10f64.powf(e))],
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..1000],
        |(lr, minus, plus, min, max, maximize)| {
            config((lr, minus, plus, min, max.max(min), maximize))
        },
    )
}

/// Rprop from Riedmiller & Braun (1993) in PyTorch's form: the step size grows by `eta_plus`
/// where `g * prev > 0`, shrinks by `eta_minus` where it is `< 0` (and that gradient is then
/// forgotten), stays where it is 0, clamped to the bounds; the weight moves by the step size
/// against the gradient's sign.
///
/// The bound (`K = 16`): the product `g * prev` of the references' inputs (magnitudes from
/// `1e-15` to `1e15`) neither underflows nor overflows in `f32`, so its sign, the branch, is
/// exact; the new step size carries one rounding (and the bounds' own rounding to `f32`),
/// `K*u*|step|`; the weight `K*u*(|w| + |step|)` and the step size's error.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Rprop(c) = config else {
        unreachable!("the Rprop case")
    };
    let ((minus, plus), (lo, hi)) = (c.etas(), c.step_sizes());
    let (prev, size) = if step == 1 {
        (0.0, c.lr())
    } else {
        (state[0], state[1])
    };
    let g = if c.maximize() { -g } else { g };
    let p = g * prev;
    let f = if p > 0.0 {
        plus
    } else if p < 0.0 {
        minus
    } else {
        1.0
    };
    let size_new = (size * f).clamp(lo, hi);
    let size_err = K * U * size_new;
    let g_kept = if p < 0.0 { 0.0 } else { g };
    let w_new = w - g_kept.signum() * if g_kept == 0.0 { 0.0 } else { size_new };
    let w_err = K * U * (w.abs() + size_new) + size_err;
    want(
        w_new,
        w_err,
        vec![(g_kept, K * U * g_kept.abs()), (size_new, size_err)],
    )
}

/// torch.optim.Rprop(lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), maximize=False).
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (minus, plus) = h.pair("etas", (0.5, 1.2))?;
    let (min, max) = h.pair("step_sizes", (1e-6, 50.0))?;
    let config = Rprop::builder(h.num("lr", Some(1e-2))?)
        .etas(minus, plus)
        .step_sizes(min, max)
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["prev", "step_size"])
}
