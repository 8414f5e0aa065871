//! ADOPT (`pytorch_optimizer`'s `ADOPT`).

use super::*;
use optkern::Adopt;

pub struct AdoptCase;

impl Case for AdoptCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "ADOPT",
        random,
        refused: || {
            vec![
                refuse(Adopt::builder(1e-3).eps(0.0).build(), "eps"),
                refuse(Adopt::builder(1e-3).betas(0.9, 1.0).build(), "beta2"),
                refuse(Adopt::builder(1e-3).betas(-0.5, 0.9).build(), "beta1"),
                refuse(Adopt::builder(f64::NAN).build(), "lr"),
                refuse(
                    Adopt::builder(1e-3)
                        .weight_decay(WeightDecay::Decoupled(-1.0))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[40, 40, 37, 40], &["adopt_step", "v", "37"], |e, b| {
                    adopt(e, b, 2)
                }),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| adopt(e, b, 1)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| adopt(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["adopt"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (any_valid::adam_family(), any::<bool>(), any::<bool>())
            .prop_map(|((lr, b1, b2, eps, wd), clip, maximize)| {
                config((lr, b1, b2, eps, clip, wd, maximize))
            })
            .boxed()
    }

    crate::own_call!(Adopt, |exec, w, state, g, c, step| {
        let [m, v] = state.as_mut_slice() else {
            unreachable!("ADOPT has two state buffers")
        };
        exec.adopt_step(w, m, v, g, c, step)
    });
}

/// ADOPT at lr 1e-3 through `adopt_step`.
fn adopt(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Adopt::builder(1e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, v] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.adopt_step(w, m, v, g, &config, step)
}

type Options = (f64, f64, f64, f64, bool, WeightDecay, bool);

fn config((lr, b1, b2, eps, clip, wd, maximize): Options) -> Optimizer {
    crate::built_with!(
        Adopt::builder(lr).betas(b1, b2).eps(eps).clip(clip),
        wd,
        maximize
    )
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        beta(rng),
        beta(rng),
        pick(rng, &[1e-6, 1e-3, 0.5]),
        flag(rng),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, steps from 1 (where only `v` is set) to a million.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), 0.0f64..0.999],
            prop_oneof![Just(0.0f64), Just(0.9999), 0.0f64..0.9999],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            any::<bool>(),
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        config,
    )
}

/// ADOPT from Taniguchi et al. (2024) as `pytorch_optimizer` computes it: step 1 sets `v =
/// g^2`; later steps normalize `g` by `max(sqrt(v), eps)` (the `v` of the step before), clip
/// it to `t^0.25` (here with the platform's `powf`), average it into `m` and move the weight by
/// `lr * m`, then update `v`.
///
/// The bound (`K = 16`): the normalized gradient `n` carries `K*u*(|g|/d + |n|)` (the
/// gradient as read, the root, the division; the clip is 1-Lipschitz, and its bound's own
/// rounding adds `K*u*|n|`); `m` as PyTorch's lerp `K*u*(|beta1*m| + (1-beta1)*|n| + |n -
/// m|)` plus `(1-beta1)` times the error of `n`; the weight `K*u*(|w| + lr*|m|) +
/// lr*err(m)`; `v` `K*u*(beta2*v + (1-beta2)*g^2)`.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Adopt(c) = config else {
        unreachable!("the ADOPT case")
    };
    let ((b1, b2), lr, eps) = (c.betas(), c.lr(), c.eps());
    let (m, v) = (state[0], state[1]);
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let v_err = |v_mag: f64| K * U * v_mag;
    if step == 1 {
        return want(
            wd,
            K * U * w.abs(),
            vec![(m, 0.0), (ge * ge, v_err(gm * gm))],
        );
    }
    let denom = v.sqrt().max(eps);
    let n = ge / denom;
    let n = if c.clip() {
        let bound = (step as f64).powf(0.25);
        n.clamp(-bound, bound)
    } else {
        n
    };
    let n_err = K * U * (gm / denom + 2.0 * n.abs());
    let m_new = b1 * m + (1.0 - b1) * n;
    let m_err =
        K * U * ((b1 * m).abs() + (1.0 - b1) * n.abs() + (n - m).abs()) + (1.0 - b1) * n_err;
    let w_new = wd - lr * m_new;
    let w_err = K * U * (w.abs() + lr * m_new.abs()) + lr * m_err;
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    want(
        w_new,
        w_err,
        vec![
            (m_new, m_err),
            (v_new, v_err(b2 * v + (1.0 - b2) * gm * gm)),
        ],
    )
}

/// pytorch_optimizer.ADOPT(lr=1e-3, betas=(0.9, 0.9999), weight_decay=0,
/// weight_decouple=False, fixed_decay=False, eps=1e-6, maximize=False), the default clip.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.9999))?;
    let wd = h.num("weight_decay", Some(0.0))?;
    let decoupled = h.bool("weight_decouple", false)?;
    h.only_defaults(&[("fixed_decay", serde_json::Value::Bool(false))])?;
    let config = Adopt::builder(h.num("lr", Some(1e-3))?)
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-6))?)
        .weight_decay(decay(wd, decoupled))
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["exp_avg", "exp_avg_sq"])
}
