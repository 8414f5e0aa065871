//! AdEMAMix (`pytorch_optimizer`'s `AdEMAMix`).

use super::*;
use optkern::Ademamix;

pub struct AdemamixCase;

impl Case for AdemamixCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "AdEMAMix",
        random,
        refused: || {
            vec![
                refuse(Ademamix::builder(1e-3).beta3(1.0).build(), "beta3"),
                refuse(Ademamix::builder(1e-3).alpha(-1.0).build(), "alpha"),
                refuse(Ademamix::builder(1e-3).alpha(1e39).build(), "alpha"),
                refuse(Ademamix::builder(1e9).alpha(1e30).build(), "lr * alpha"),
                refuse(
                    Ademamix::builder(1e-3).t_alpha_beta3(Some(0.0)).build(),
                    "t_alpha_beta3",
                ),
                refuse(
                    Ademamix::builder(1e-3)
                        .t_alpha_beta3(Some(f64::INFINITY))
                        .build(),
                    "t_alpha_beta3",
                ),
                refuse(
                    Ademamix::builder(1e-3)
                        .betas(0.0, 0.999)
                        .t_alpha_beta3(Some(100.0))
                        .build(),
                    "beta1",
                ),
                refuse(Ademamix::builder(1e-3).eps(0.0).build(), "eps"),
                refuse(Ademamix::builder(1e38).build(), "lr / (1 - beta1)"),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 40, 40, 37, 40],
                    &["ademamix_step", "slow", "37"],
                    |e, b| ademamix(e, b, 1),
                ),
                bad(&[40, 40, 40, 40, 3], &["gradient", "3"], |e, b| {
                    ademamix(e, b, 1)
                }),
                bad(&[40, 40, 40, 40, 40], &["step 0"], |e, b| ademamix(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["ademamix"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let positive_beta = prop_oneof![Just(0.9f64), Just(0.9999), 1e-3f64..1.0];
        (
            any_valid::adam_family(),
            positive_beta.clone(),
            positive_beta,
            prop_oneof![Just(0.0f64), Just(5.0), 0.0f64..20.0],
            prop_oneof![Just(None), (1.0f64..1e6).prop_map(Some)],
            any::<bool>(),
        )
            .prop_map(|((lr, _, b2, eps, wd), b1, b3, alpha, t, maximize)| {
                config((lr, b1, b2, b3, alpha, t, eps, wd, maximize))
            })
            .boxed()
    }

    crate::own_call!(Ademamix, |exec, w, state, g, c, step| {
        let [m, v, slow] = state.as_mut_slice() else {
            unreachable!("AdEMAMix has three state buffers")
        };
        exec.ademamix_step(w, m, v, slow, g, c, step)
    });
}

/// AdEMAMix at lr 1e-3 through `ademamix_step`.
fn ademamix(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Ademamix::builder(1e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, v, slow] = s.as_mut_slice() else {
        unreachable!("three state buffers")
    };
    exec.ademamix_step(w, m, v, slow, g, &config, step)
}

type Options = (f64, f64, f64, f64, f64, Option<f64>, f64, WeightDecay, bool);

fn config((lr, b1, b2, b3, alpha, t, eps, wd, maximize): Options) -> Optimizer {
    crate::built_with!(
        Ademamix::builder(lr)
            .betas(b1, b2)
            .beta3(b3)
            .alpha(alpha)
            .t_alpha_beta3(t)
            .eps(eps),
        wd,
        maximize
    )
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        pick(rng, &[0.5, 0.9, 0.99]),
        beta(rng),
        pick(rng, &[0.9, 0.999, 0.9999]),
        pick(rng, &[0.0, 5.0, 10.0]),
        pick(rng, &[None, Some(10.0), Some(1e4)]),
        pick(rng, &[1e-8, 1e-3, 0.5]),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, with and without the warm-up, steps from 1 to a million.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.9f64), 0.01f64..0.999],
            prop_oneof![Just(0.0f64), 0.0f64..0.9999],
            prop_oneof![Just(0.9999f64), 0.01f64..0.99999],
            prop_oneof![Just(0.0f64), Just(5.0), 0.0f64..20.0],
            prop_oneof![Just(None), (1.0f64..1e5).prop_map(Some)],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        config,
    )
}

/// AdEMAMix from Pagliardini et al. (2024) as `pytorch_optimizer` computes it (the warm-up of
/// `alpha` and `beta3`, here with the platform's `ln` and `exp`; the slow average not
/// bias-corrected).
///
/// The bound (`K = 16`), as NAdam's: both averages as PyTorch's lerp, `K*u*(|beta*a| +
/// (1-beta)*|g| + |g - a|)`; the second moment `K*u*(beta2*v + (1-beta2)*g^2)` and the
/// denominator from it; the numerator `n = a*m + b*slow` (`a = lr/(1-beta1^t)`, `b =
/// lr*alpha_t`, rounded to f32) `K*u*(a*|m| + b*|slow|) + a*err(m) + b*err(slow)`; the
/// quotient `(err(n) + |q|*err(d))/d`, the weight `K*u*(|w| + |q|)` more.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Ademamix(c) = config else {
        unreachable!("the AdEMAMix case")
    };
    let ((b1, b2), lr, eps) = (c.betas(), c.lr(), c.eps());
    let t = step as f64;
    let (alpha, b3) = match c.t_alpha_beta3() {
        None => (c.alpha(), c.beta3()),
        Some(big_t) => {
            let (l1, l3) = (b1.ln(), c.beta3().ln());
            let x = t / big_t;
            (
                (t * c.alpha() / big_t).min(c.alpha()),
                (l1 * l3 / ((1.0 - x) * l3 + x * l1)).exp().min(c.beta3()),
            )
        }
    };
    let (m, v, slow) = (state[0], state[1], state[2]);
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let lerp = |beta: f64, avg: f64| {
        (
            beta * avg + (1.0 - beta) * ge,
            K * U * ((beta * avg).abs() + (1.0 - beta) * gm + (ge - avg).abs()),
        )
    };
    let (m_new, m_err) = lerp(b1, m);
    let (slow_new, slow_err) = lerp(b3, slow);
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    let v_err = K * U * (b2 * v + (1.0 - b2) * gm * gm);
    let k = 1.0 / (1.0 - b2.powf(t)).sqrt();
    let denom = v_new.sqrt() * k + eps;
    let sqrt_err = if v_new > 0.0 {
        v_err / (2.0 * v_new.sqrt())
    } else {
        v_err.sqrt()
    };
    let d_err = sqrt_err * k + K * U * denom;
    let (a, b) = (lr / (1.0 - b1.powf(t)), lr * alpha);
    let num = a * m_new + b * slow_new;
    let n_err = K * U * (a * m_new.abs() + b * slow_new.abs()) + a * m_err + b * slow_err;
    let q = num / denom;
    let w_err = K * U * (w.abs() + q.abs()) + (n_err + q.abs() * d_err) / denom;
    want(
        wd - q,
        w_err,
        vec![(m_new, m_err), (v_new, v_err), (slow_new, slow_err)],
    )
}

/// pytorch_optimizer.AdEMAMix(lr=1e-3, betas=(0.9, 0.999, 0.9999), weight_decay=0,
/// weight_decouple=False, fixed_decay=False, alpha=5.0, t_alpha_beta3=None, eps=1e-8).
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let [b1, b2, b3] = h.list("betas", [0.9, 0.999, 0.9999])?;
    let wd = h.num("weight_decay", Some(0.0))?;
    let decoupled = h.bool("weight_decouple", false)?;
    h.only_defaults(&[("fixed_decay", serde_json::Value::Bool(false))])?;
    let config = Ademamix::builder(h.num("lr", Some(1e-3))?)
        .betas(b1, b2)
        .beta3(b3)
        .alpha(h.num("alpha", Some(5.0))?)
        .t_alpha_beta3(h.optional("t_alpha_beta3")?)
        .eps(h.num("eps", Some(1e-8))?)
        .weight_decay(decay(wd, decoupled))
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["exp_avg", "exp_avg_sq", "exp_avg_slow"])
}
