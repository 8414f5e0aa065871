//! Plain SGD.

use super::*;
use optkern::Sgd;

pub struct SgdCase;

impl Case for SgdCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "SGD",
        random,
        refused: || {
            vec![
                refuse(Sgd::builder(-1.0).build(), "lr"),
                refuse(
                    Sgd::builder(0.1)
                        .weight_decay(WeightDecay::L2(f64::INFINITY))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[20, 21], &["sgd_step", "gradient", "21", "20"], |e, b| {
                    sgd(e, b, 1)
                }),
                bad(&[20, 20], &["step 0"], |e, b| sgd(e, b, 0)),
            ]
        },
        reference: Some(Reference {
            span: 20.0,
            ..Reference::new(reference_configs, reference).unwrap()
        }),
        golden: None,
    };
    const PROPERTY_CASES: u32 = 256;

    fn configs() -> BoxedStrategy<Optimizer> {
        (any_valid::lr(), any_valid::weight_decay(), any::<bool>())
            .prop_map(|(lr, wd, maximize)| config(lr, wd, maximize))
            .boxed()
    }

    crate::own_call!(Sgd, |exec, w, _state, g, c, step| {
        exec.sgd_step(w, g, c, step)
    });
}

/// SGD at lr 0.1 through `sgd_step`.
fn sgd(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let (w, _, g) = parts(buffers);
    exec.sgd_step(w, g, &Sgd::new(0.1).unwrap(), step)
}

fn config(lr: f64, wd: WeightDecay, maximize: bool) -> Optimizer {
    crate::built_with!(Sgd::builder(lr), wd, maximize)
}

fn random(rng: &mut Rng) -> Optimizer {
    config(lr(rng), weight_decay(rng), flag(rng))
}

fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    (
        (-5.0f64..0.0).prop_map(|e| 10f64.powf(e)),
        reference_weight_decay(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(lr, wd, maximize, seed)| (config(lr, wd, maximize), 1, seed))
        .boxed()
}

/// `w -= lr*g` (with the gradient negated to maximize and L2 decay added, or the weight
/// decayed by `1 - lr*wd` first). The bound, `K = 8` as for momentum (a handful of correctly
/// rounded operations and the rounded coefficient `1 - lr*wd`): `K*u*(|w| + lr*M_g)`, `M_g`
/// the gradient's magnitude sum.
fn reference(config: &Optimizer, w: f64, _state: &[f64], g: f64, _step: u64) -> Want {
    let Optimizer::Sgd(c) = config else {
        unreachable!("the SGD case")
    };
    let lr = c.lr();
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    want(wd - lr * ge, 8.0 * U * (w.abs() + lr * gm), vec![])
}

// The golden `sgd` and `keras_sgd` cases (plain when their momentum is 0) are the momentum
// case's: one library class covers both.
