//! ASGD (PyTorch's `torch.optim.ASGD`).

use super::*;
use optkern::Asgd;

pub struct AsgdCase;

impl Case for AsgdCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "ASGD",
        random,
        refused: || {
            vec![
                refuse(Asgd::builder(1e-2).lambd(-1e-4).build(), "lambd"),
                refuse(Asgd::builder(1e-2).lambd(1e39).build(), "lambd"),
                refuse(Asgd::builder(1e-2).lambd(200.0).build(), "lambd"),
                refuse(Asgd::builder(1e-2).alpha(f64::NAN).build(), "alpha"),
                refuse(Asgd::builder(1e-2).t0(-1.0).build(), "t0"),
                refuse(Asgd::builder(1e-2).t0(f64::INFINITY).build(), "t0"),
                refuse(
                    Asgd::builder(1e-2)
                        .weight_decay(WeightDecay::Decoupled(1e-3))
                        .build(),
                    "weight_decay",
                ),
                refuse(Asgd::builder(-1e-2).build(), "lr"),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[40, 37, 40], &["asgd_step", "ax", "37"], |e, b| {
                    asgd(e, b, 1)
                }),
                bad(&[40, 40, 3], &["gradient", "3"], |e, b| asgd(e, b, 1)),
                bad(&[40, 40, 40], &["step 0"], |e, b| asgd(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["asgd"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            any_valid::lr(),
            prop_oneof![Just(0.0f64), Just(1e-4), 0.0f64..0.1],
            prop_oneof![Just(0.75f64), 0.0f64..2.0],
            prop_oneof![Just(0.0f64), Just(2.0), Just(1e6), 0.0f64..100.0],
            any_valid::weight_decay(),
            any::<bool>(),
        )
            .prop_map(config)
            .boxed()
    }

    crate::own_call!(Asgd, |exec, w, state, g, c, step| {
        let [ax] = state.as_mut_slice() else {
            unreachable!("ASGD has one state buffer")
        };
        exec.asgd_step(w, ax, g, c, step)
    });
}

/// ASGD at lr 1e-2 through `asgd_step`.
fn asgd(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Asgd::builder(1e-2).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [ax] = s.as_mut_slice() else {
        unreachable!("one state buffer")
    };
    exec.asgd_step(w, ax, g, &config, step)
}

/// Decoupled decay, which ASGD refuses, is drawn as L2 decay.
fn config(
    (lr, lambd, alpha, t0, wd, maximize): (f64, f64, f64, f64, WeightDecay, bool),
) -> Optimizer {
    let wd = match wd {
        WeightDecay::Decoupled(wd) => WeightDecay::L2(wd),
        wd => wd,
    };
    crate::built_with!(
        Asgd::builder(lr).lambd(lambd).alpha(alpha).t0(t0),
        wd,
        maximize
    )
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        pick(rng, &[0.0, 1e-4, 0.1]),
        pick(rng, &[0.75, 0.0, 1.5]),
        pick(rng, &[0.0, 2.0, 1e6]),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, averaging from step 1 (t0 = 0) or later, steps up to a million.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), Just(1e-4), 0.0f64..0.1],
            prop_oneof![Just(0.75f64), 0.0f64..2.0],
            prop_oneof![Just(0.0f64), Just(2.0), 0.0f64..1000.0],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![1u64..5, 5u64..1000, 1000u64..1_000_000],
        config,
    )
}

/// ASGD as PyTorch defines it: `eta_t = lr / (1 + lambd*lr*(t-1))^alpha`, `mu_t = 1/max(1,
/// t-1-t0)` (each as `f32`, whether `mu` is exactly 1 deciding the copy), the weight shrunk
/// by `1 - lambd*eta` and moved by `-eta*g`, the average moved by `mu` towards it.
///
/// The bound (`K = 16`): the weight carries `K*u*(|w| + eta*|g|)` (the coefficients rounded to
/// `f32` as the kernel keeps them, the product, the fma); the average `K*u*(|ax| + mu*|w -
/// ax|)` and `mu` times the weight's error (a copy: the weight's).
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Asgd(c) = config else {
        unreachable!("the ASGD case")
    };
    let (lr, lambd) = (c.lr(), c.lambd());
    let t = (step - 1) as f64;
    let eta = lr / (1.0 + lambd * lr * t).powf(c.alpha());
    let mu = 1.0 / (t - c.t0()).max(1.0);
    let ax = state[0];
    let (ge, gm, _) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let w_new = w * (1.0 - lambd * eta) - eta * ge;
    let w_err = K * U * (w.abs() + eta * gm);
    let (ax_new, ax_err) = if mu as f32 == 1.0 {
        (w_new, w_err)
    } else {
        (
            ax + (w_new - ax) * mu,
            K * U * (ax.abs() + mu * (w_new - ax).abs()) + mu * w_err,
        )
    };
    want(w_new, w_err, vec![(ax_new, ax_err)])
}

/// torch.optim.ASGD(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
/// maximize=False); its state's `eta` and `mu` after `t` steps are the crate's `Asgd::eta`
/// and `Asgd::mu` of step `t + 1`.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let config = Asgd::builder(h.num("lr", Some(1e-2))?)
        .lambd(h.num("lambd", Some(1e-4))?)
        .alpha(h.num("alpha", Some(0.75))?)
        .t0(h.num("t0", Some(1e6))?)
        .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
        .maximize(h.bool("maximize", false)?)
        .build();
    let mut mapped = Mapped::new(built(config)?, &["ax"])?;
    mapped.scalars = vec![
        ("eta", |config, steps| match config {
            Optimizer::Asgd(c) => f64::from(c.eta(steps + 1)),
            _ => unreachable!("an ASGD config"),
        }),
        ("mu", |config, steps| match config {
            Optimizer::Asgd(c) => f64::from(c.mu(steps + 1)),
            _ => unreachable!("an ASGD config"),
        }),
    ];
    Ok(mapped)
}
