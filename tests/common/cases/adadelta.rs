//! Adadelta (PyTorch's `torch.optim.Adadelta`).

use super::*;
use optkern::Adadelta;

pub struct AdadeltaCase;

impl Case for AdadeltaCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Adadelta",
        random,
        refused: || {
            vec![
                refuse(Adadelta::builder(1.0).eps(0.0).build(), "eps"),
                refuse(Adadelta::builder(1.0).eps(1e-50).build(), "eps"),
                refuse(Adadelta::builder(1.0).rho(1.5).build(), "rho"),
                refuse(Adadelta::builder(1.0).rho(-0.1).build(), "rho"),
                refuse(Adadelta::builder(f64::NAN).build(), "lr"),
                refuse(
                    Adadelta::builder(1.0)
                        .weight_decay(WeightDecay::L2(-1.0))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 40, 37, 40],
                    &["adadelta_step", "acc_delta", "37"],
                    |e, b| adadelta(e, b, 1),
                ),
                bad(&[40, 39, 40, 40], &["square_avg", "39"], |e, b| {
                    adadelta(e, b, 1)
                }),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| {
                    adadelta(e, b, 1)
                }),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| adadelta(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["adadelta"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let rho = prop_oneof![Just(0.0f64), Just(0.9), Just(1.0), 0.0f64..=1.0];
        (
            any_valid::lr(),
            rho,
            any_valid::eps(),
            any_valid::weight_decay(),
            any::<bool>(),
        )
            .prop_map(config)
            .boxed()
    }

    crate::own_call!(Adadelta, |exec, w, state, g, c, step| {
        let [sq, acc] = state.as_mut_slice() else {
            unreachable!("Adadelta has two state buffers")
        };
        exec.adadelta_step(w, sq, acc, g, c, step)
    });
}

/// Adadelta at lr 1 through `adadelta_step`.
fn adadelta(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Adadelta::builder(1.0).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [sq, acc] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.adadelta_step(w, sq, acc, g, &config, step)
}

fn config((lr, rho, eps, wd, maximize): (f64, f64, f64, WeightDecay, bool)) -> Optimizer {
    crate::built_with!(Adadelta::builder(lr).rho(rho).eps(eps), wd, maximize)
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        pick(rng, &[0.0, 1e-2, 0.1, 1.0]),
        pick(rng, &[0.0, 0.5, 0.9, 0.95, 1.0]),
        pick(rng, &[1e-6, 1e-3, 0.5]),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, `rho` from 0 to 1 and `eps` from 1e-10 to 0.5.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..0.0).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..=1.0],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..1_000_000],
        config,
    )
}

/// Adadelta, from Zeiler (2012), with PyTorch's `eps` inside both roots and its L2 weight
/// decay (or decoupled decay).
///
/// The bound, with `u = 2^-24` and `K = 16` (as `tests/reference_optimizers.rs` derives it):
/// the square average carries `K*u` times its terms' magnitudes (`rho*sq + (1-rho)*|g|^2`, the
/// gradient's own rounding included); its root `d = sqrt(sq + eps)` carries `K*u*d` plus the
/// average's error over `2d`; the other root `r = sqrt(acc + eps)` (of a stored, exact `acc`)
/// `K*u*r`; the quotient `q = r/d` carries `(err(r) + q*err(d)) / (d - err(d))` (with `d - err(d)`
/// no smaller than `d/2`) and its own rounding; `delta = q*g` carries `err(q)*|g| + 2*K*u*|q*g|`;
/// the new `acc` carries `K*u` times its terms plus `(1-rho)*(2*|delta| + err(delta))*err(delta)`;
/// the weight `K*u*(|w| + lr*|delta|) + lr*err(delta)`.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, _step: u64) -> Want {
    let Optimizer::Adadelta(c) = config else {
        unreachable!("the Adadelta case")
    };
    let (rho, lr, eps) = (c.rho(), c.lr(), c.eps());
    let (sq, acc) = (state[0], state[1]);
    let (ge, gm, w_dec) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let sq_new = rho * sq + (1.0 - rho) * ge * ge;
    let sq_err = K * U * (rho * sq + (1.0 - rho) * gm * gm);
    let d = (sq_new + eps).sqrt();
    let d_err = K * U * d + sq_err / (2.0 * d);
    let r = (acc + eps).sqrt();
    let r_err = K * U * r;
    let q = r / d;
    let q_err = (r_err + q * d_err) / (d - d_err).max(d * 0.5) + K * U * q;
    let delta = q * ge;
    let delta_err = q_err * gm + 2.0 * K * U * q * gm;
    let acc_new = rho * acc + (1.0 - rho) * delta * delta;
    let acc_err = K * U * (rho * acc + (1.0 - rho) * delta * delta)
        + (1.0 - rho) * (2.0 * delta.abs() + delta_err) * delta_err;
    let w_err = K * U * (w.abs() + lr * delta.abs()) + lr * delta_err;
    want(
        w_dec - lr * delta,
        w_err,
        vec![(sq_new, sq_err), (acc_new, acc_err)],
    )
}

/// torch.optim.Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False): L2
/// weight decay, eps inside both roots.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let config = Adadelta::builder(h.num("lr", Some(1.0))?)
        .rho(h.num("rho", Some(0.9))?)
        .eps(h.num("eps", Some(1e-6))?)
        .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["square_avg", "acc_delta"])
}
