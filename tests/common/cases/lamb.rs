//! LAMB (You et al., 2020), as timm computes it: the trust ratio per tensor, clipping by
//! `max_grad_norm`.

use super::*;
use optkern::Lamb;

pub struct LambCase;

impl Case for LambCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "LAMB",
        random: |rng| lamb(rng).into(),
        refused: || {
            vec![refuse(
                Lamb::builder(1e-3).max_grad_norm(Some(0.0)).build(),
                "max_grad_norm",
            )]
        },
        bad_calls: || {
            vec![
                bad(&[40, 39, 40, 40], &["lamb_step", "m", "39"], |e, b| {
                    lamb_call(e, b, 1)
                }),
                bad(&[40, 40, 38, 40], &["v", "38"], |e, b| lamb_call(e, b, 1)),
                bad(&[40, 40, 40, 41], &["gradient", "41"], |e, b| {
                    lamb_call(e, b, 1)
                }),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| lamb_call(e, b, 0)),
            ]
        },
        reference: None,
        golden: maps(&["lamb"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let max_grad_norm =
            prop_oneof![Just(None), (-3.0f64..6.0).prop_map(|e| Some(10f64.powf(e)))];
        (
            any_valid::adam_family(),
            (
                any::<bool>(),
                any::<bool>(),
                max_grad_norm,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (lr, b1, b2, eps, wd),
                    (
                        bias_correction,
                        grad_averaging,
                        max_grad_norm,
                        trust_clip,
                        always_adapt,
                        maximize,
                    ),
                )| {
                    crate::built_with!(
                        Lamb::builder(lr)
                            .betas(b1, b2)
                            .eps(eps)
                            .bias_correction(bias_correction)
                            .grad_averaging(grad_averaging)
                            .max_grad_norm(max_grad_norm)
                            .trust_clip(trust_clip)
                            .always_adapt(always_adapt),
                        wd,
                        maximize
                    )
                },
            )
            .boxed()
    }

    crate::own_call!(Lamb, |exec, w, state, g, c, step| {
        let [m, v] = state.as_mut_slice() else {
            unreachable!("LAMB has two state buffers")
        };
        exec.lamb_step(w, m, v, g, c, step)
    });
}

/// LAMB at lr 1e-3 through `lamb_step`.
fn lamb_call(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Lamb::builder(1e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, v] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.lamb_step(w, m, v, g, &config, step)
}

/// A random LAMB config (also used directly by the many-tensor suite).
pub fn lamb(rng: &mut Rng) -> Lamb {
    let wd = pick(rng, &[0.0, 0.01, 0.1]);
    let builder = if flag(rng) {
        Lamb::builder(lr(rng)).weight_decay(WeightDecay::Decoupled(wd))
    } else {
        Lamb::builder(lr(rng)).weight_decay(WeightDecay::L2(wd))
    };
    builder
        .betas(beta(rng), beta(rng))
        .eps(pick(rng, &[1e-6, 1e-3]))
        .bias_correction(flag(rng))
        .grad_averaging(flag(rng))
        .max_grad_norm(pick(rng, &[None, Some(1.0), Some(1e-3), Some(1e6)]))
        .trust_clip(flag(rng))
        .always_adapt(flag(rng))
        .maximize(flag(rng))
        .build()
        .unwrap()
}

/// timm.optim.Lamb(lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6,
/// weight_decay=0.01, grad_averaging=True, max_grad_norm=1.0, trust_clip=False,
/// always_adapt=False, caution=False, decoupled_decay=False).
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
    let wd = h.num("weight_decay", Some(0.01))?;
    let decoupled = h.bool("decoupled_decay", false)?;
    let builder = Lamb::builder(h.num("lr", Some(1e-3))?).weight_decay(if decoupled {
        WeightDecay::Decoupled(wd)
    } else {
        WeightDecay::L2(wd)
    });
    // max_grad_norm: absent means timm's default 1.0, null turns clipping off.
    h.ignore(&["max_grad_norm"]);
    let max_grad_norm = match h.map.get("max_grad_norm") {
        None => Some(1.0),
        Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or(format!("max_grad_norm = {v} is not a number"))?,
        ),
    };
    let builder = builder
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-6))?)
        .bias_correction(h.bool("bias_correction", true)?)
        .grad_averaging(h.bool("grad_averaging", true)?)
        .max_grad_norm(max_grad_norm)
        .trust_clip(h.bool("trust_clip", false)?)
        .always_adapt(h.bool("always_adapt", false)?);
    h.only_defaults(&[("caution", serde_json::Value::Bool(false))])?;
    Mapped::new(built(builder.build())?, &["exp_avg", "exp_avg_sq"])
}
