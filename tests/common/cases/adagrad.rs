//! Adagrad, with learning-rate decay and an initial accumulator value.

use super::*;
use optkern::Adagrad;

pub struct AdagradCase;

impl Case for AdagradCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Adagrad",
        random,
        refused: || {
            vec![
                refuse(Adagrad::builder(1e-2).lr_decay(-1.0).build(), "lr_decay"),
                refuse(
                    Adagrad::builder(1e-2)
                        .initial_accumulator_value(f64::NAN)
                        .build(),
                    "initial_accumulator_value",
                ),
                refuse(Adagrad::builder(1e-2).eps(0.0).build(), "eps"),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[25, 25, 25], &["step 0"], |e, b| adagrad(e, b, 0)),
                bad(&[25, 24, 25], &["adagrad_step", "sum", "24"], |e, b| {
                    adagrad(e, b, 2)
                }),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["adagrad"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let decay = prop_oneof![Just(0.0f64), (-6.0f64..0.0).prop_map(|e| 10f64.powf(e))];
        let initial = prop_oneof![Just(0.0f64), 0.0f64..1.0];
        (
            any_valid::lr(),
            decay,
            any_valid::weight_decay(),
            initial,
            any_valid::eps(),
            any::<bool>(),
        )
            .prop_map(config)
            .boxed()
    }

    crate::own_call!(Adagrad, |exec, w, state, g, c, step| {
        exec.adagrad_step(w, state[0], g, c, step)
    });
}

fn config(
    (lr, lr_decay, wd, initial, eps, maximize): (f64, f64, WeightDecay, f64, f64, bool),
) -> Optimizer {
    crate::built_with!(
        Adagrad::builder(lr)
            .lr_decay(lr_decay)
            .initial_accumulator_value(initial)
            .eps(eps),
        wd,
        maximize
    )
}

/// Adagrad at lr 1e-2 through `adagrad_step`.
fn adagrad(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Adagrad::builder(1e-2).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    exec.adagrad_step(w, s[0], g, &config, step)
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        pick(rng, &[0.0, 1e-3]),
        weight_decay(rng),
        pick(rng, &[0.0, 0.1]),
        1e-10,
        flag(rng),
    ))
}

fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
            prop_oneof![Just(0.0f64), 0.0f64..0.1],
            reference_weight_decay(),
            prop_oneof![Just(0.0f64), 0.0f64..1.0],
            (-12.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..100_000],
        config,
    )
}

/// Adagrad as PyTorch computes it: the learning rate decayed to `lr / (1 + (t-1)*lr_decay)`,
/// the accumulator starting at `initial_accumulator_value` on step 1.
///
/// The bound (`K = 16`): the sum carries `K*u*(s + M_g^2)`; the weight `K*u*(|w| +
/// clr*(M_g + |g|)/std)` (the quotient's error is relative to its magnitude terms, the root of
/// a sum of non-negative terms being well conditioned).
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Adagrad(c) = config else {
        unreachable!("the Adagrad case")
    };
    let lr = c.lr();
    let clr = lr / (1.0 + (step - 1) as f64 * c.lr_decay());
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let start = if step == 1 {
        c.initial_accumulator_value()
    } else {
        state[0]
    };
    let s_new = start + ge * ge;
    let s_mag = start + gm * gm;
    let std = s_new.sqrt() + c.eps();
    let w_new = wd - clr * ge / std;
    let w_err = K * U * (w.abs() + clr * (gm + ge.abs()) / std);
    want(w_new, w_err, vec![(s_new, K * U * s_mag)])
}

/// torch.optim.Adagrad(lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
/// eps=1e-10, maximize=False).
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let config = Adagrad::builder(h.num("lr", Some(1e-2))?)
        .lr_decay(h.num("lr_decay", Some(0.0))?)
        .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
        .initial_accumulator_value(h.num("initial_accumulator_value", Some(0.0))?)
        .eps(h.num("eps", Some(1e-10))?)
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["sum"])
}
