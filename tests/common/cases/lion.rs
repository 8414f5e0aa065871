//! Lion (Chen et al., 2023), as lion-pytorch computes it.

use super::*;
use optkern::Lion;

pub struct LionCase;

impl Case for LionCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Lion",
        random,
        refused: || {
            vec![
                refuse(Lion::builder(1e-4).betas(0.9, 1.5).build(), "beta2"),
                refuse(
                    Lion::builder(1e-4)
                        .weight_decay(WeightDecay::Decoupled(-0.1))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[25, 25, 26], &["lion_step", "gradient", "26"], |e, b| {
                    lion(e, b, 1)
                }),
                bad(&[25, 20, 25], &["m", "20"], |e, b| lion(e, b, 1)),
                bad(&[25, 25, 25], &["step 0"], |e, b| lion(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["lion"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            any_valid::lr(),
            any_valid::beta(),
            any_valid::beta(),
            any_valid::weight_decay(),
            any::<bool>(),
        )
            .prop_map(config)
            .boxed()
    }

    crate::own_call!(Lion, |exec, w, state, g, c, step| {
        exec.lion_step(w, state[0], g, c, step)
    });
}

/// Lion at lr 1e-4 through `lion_step`.
fn lion(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Lion::builder(1e-4).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    exec.lion_step(w, s[0], g, &config, step)
}

fn config((lr, b1, b2, wd, maximize): (f64, f64, f64, WeightDecay, bool)) -> Optimizer {
    crate::built_with!(Lion::builder(lr).betas(b1, b2), wd, maximize)
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        beta(rng),
        beta(rng),
        pick(rng, &[WeightDecay::None, WeightDecay::Decoupled(0.1)]),
        flag(rng),
    ))
}

fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            (-6.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
            0.0f64..0.999,
            0.0f64..0.999,
            reference_weight_decay(),
            any::<bool>(),
        ),
        Just(1),
        config,
    )
}

/// `c = beta1*m + (1-beta1)*g; w -= lr*sign(c); m = beta2*m + (1-beta2)*g`.
///
/// The bound (`K = 16`): `c` and the new `m` carry `K*u` times their terms' magnitudes; the
/// weight `K*u*(|w| + lr)`. Where `|c|` is within its bound of zero, rounding cannot resolve
/// its sign, and any of the three outcomes (`-lr`, `0`, `+lr`) is right.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, _step: u64) -> Want {
    let Optimizer::Lion(lion) = config else {
        unreachable!("the Lion case")
    };
    let ((b1, b2), lr, m) = (lion.betas(), lion.lr(), state[0]);
    let (ge, gm, wd) = gradient_in(lion.weight_decay(), lion.maximize(), lr, w, g);
    let c = b1 * m + (1.0 - b1) * ge;
    let c_err = K * U * ((b1 * m).abs() + (1.0 - b1) * gm);
    let w_new = if c.abs() > c_err {
        vec![wd - lr * c.signum()]
    } else {
        vec![wd - lr, wd, wd + lr]
    };
    let m_new = b2 * m + (1.0 - b2) * ge;
    Want {
        w: w_new,
        w_err: K * U * (w.abs() + lr),
        state: vec![(m_new, K * U * ((b2 * m).abs() + (1.0 - b2) * gm))],
    }
}

/// lion_pytorch.Lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0): decoupled decay.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.99))?;
    let config = Lion::builder(h.num("lr", Some(1e-4))?)
        .betas(b1, b2)
        .weight_decay(decay(h.num("weight_decay", Some(0.0))?, true))
        .build();
    if h.bool("decoupled_weight_decay", false)? {
        return Err("lion-pytorch's decoupled_weight_decay=True is not modelled".into());
    }
    h.ignore(&["use_triton"]);
    Mapped::new(built(config)?, &["exp_avg"])
}
