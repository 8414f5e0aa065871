//! NAdam and NAdamW (PyTorch's `torch.optim.NAdam`, `decoupled_weight_decay` for NAdamW).

use super::*;
use optkern::Nadam;

pub struct NadamCase;

impl Case for NadamCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "NAdam",
        random,
        refused: || {
            vec![
                refuse(Nadam::builder(2e-3).eps(0.0).build(), "eps"),
                refuse(Nadam::builder(2e-3).betas(1.0, 0.999).build(), "beta1"),
                refuse(Nadam::builder(2e-3).betas(0.9, -0.1).build(), "beta2"),
                refuse(
                    Nadam::builder(2e-3).momentum_decay(-1e-3).build(),
                    "momentum_decay",
                ),
                refuse(
                    Nadam::builder(2e-3).momentum_decay(f64::INFINITY).build(),
                    "momentum_decay",
                ),
                refuse(
                    Nadam::builder(2e-3).momentum_decay(1e39).build(),
                    "momentum_decay",
                ),
                refuse(Nadam::builder(f64::NAN).build(), "lr"),
                refuse(Nadam::builder(1e38).build(), "lr / (1 - beta1)"),
                refuse(
                    Nadam::builder(2e-3)
                        .weight_decay(WeightDecay::Decoupled(1e4))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[40, 40, 37, 40], &["nadam_step", "v", "37"], |e, b| {
                    nadam(e, b, 1)
                }),
                bad(&[40, 39, 40, 40], &["m", "39"], |e, b| nadam(e, b, 1)),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| nadam(e, b, 1)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| nadam(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["nadam"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let decay = prop_oneof![
            Just(0.0f64),
            Just(4e-3),
            (-6.0f64..1.0).prop_map(|e| 10f64.powf(e))
        ];
        (any_valid::adam_family(), decay, any::<bool>())
            .prop_map(|((lr, b1, b2, eps, wd), psi, maximize)| {
                config((lr, b1, b2, eps, psi, wd, maximize))
            })
            .boxed()
    }

    crate::own_call!(Nadam, |exec, w, state, g, c, step| {
        let [m, v] = state.as_mut_slice() else {
            unreachable!("NAdam has two state buffers")
        };
        exec.nadam_step(w, m, v, g, c, step)
    });
}

/// NAdam at lr 2e-3 through `nadam_step`.
fn nadam(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Nadam::builder(2e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, v] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.nadam_step(w, m, v, g, &config, step)
}

type Options = (f64, f64, f64, f64, f64, WeightDecay, bool);

fn config((lr, b1, b2, eps, psi, wd, maximize): Options) -> Optimizer {
    crate::built_with!(
        Nadam::builder(lr)
            .betas(b1, b2)
            .eps(eps)
            .momentum_decay(psi),
        wd,
        maximize
    )
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        beta(rng),
        beta(rng),
        pick(rng, &[1e-8, 1e-3, 0.5]),
        pick(rng, &[0.0, 4e-3, 0.1]),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, learning rates up to 0.7, `eps` up to 0.5, the momentum decay from 0 to 1,
/// steps from 1 to a million.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), Just(0.9), 0.0f64..0.999],
            prop_oneof![Just(0.0f64), 0.0f64..0.9999],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), Just(4e-3), 0.0f64..1.0],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        config,
    )
}

/// The momentum schedule of Dozat (2016) as PyTorch writes it, `mu_t = beta1 * (1 - 0.5 *
/// 0.96^(t psi))`, with the platform's `powf`, and the product `mu_1 ... mu_t` multiplied out
/// until it is below `1e-30` (where `1 - P` no longer differs from 1 at the precision of the
/// bound).
fn schedule(beta1: f64, psi: f64, step: u64) -> (f64, f64, f64) {
    let mu = |t: u64| beta1 * (1.0 - 0.5 * 0.96f64.powf(t as f64 * psi));
    let mut product = 1.0f64;
    for t in 1..=step {
        product *= mu(t);
        if product < 1e-30 {
            break;
        }
    }
    (mu(step), mu(step + 1), product)
}

/// NAdam from Dozat (2016) with PyTorch's momentum schedule, its placement of `eps` (outside
/// the corrected root) and its L2 weight decay (or NAdamW's decoupled decay).
///
/// The bound (`K = 16`), as Adam's: the first moment as PyTorch's lerp carries
/// `K*u*(|beta1*m| + (1-beta1)*|g| + |g - m|)`, the second `K*u*(beta2*v + (1-beta2)*g^2)`,
/// the denominator `d = sqrt(v)/sqrt(1-beta2^t) + eps` the error of the root (`err(v)/(2 sqrt(v))`, or
/// `sqrt(err(v))` at `v = 0`) scaled, plus its own roundings; the numerator `n = a*g + b*m`
/// (the step sizes `a`, `b` rounded to f32) carries `K*u*(a*|g| + b*|m|) + b*err(m)`; the
/// quotient `q = n/d` carries `(err(n) + |q|*err(d))/d`, and the weight `K*u*(|w| + |q|)` more.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Nadam(c) = config else {
        unreachable!("the NAdam case")
    };
    let ((b1, b2), lr, eps) = (c.betas(), c.lr(), c.eps());
    let (m, v) = (state[0], state[1]);
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let (mu, mu_next, product) = schedule(b1, c.momentum_decay(), step);
    let a = lr * (1.0 - mu) / (1.0 - product);
    let b = lr * mu_next / (1.0 - product * mu_next);
    let k = 1.0 / (1.0 - b2.powf(step as f64)).sqrt();
    let m_new = b1 * m + (1.0 - b1) * ge;
    let m_err = K * U * ((b1 * m).abs() + (1.0 - b1) * gm + (ge - m).abs());
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    let v_err = K * U * (b2 * v + (1.0 - b2) * gm * gm);
    let denom = v_new.sqrt() * k + eps;
    let sqrt_err = if v_new > 0.0 {
        v_err / (2.0 * v_new.sqrt())
    } else {
        v_err.sqrt()
    };
    let d_err = sqrt_err * k + K * U * denom;
    let num = a * ge + b * m_new;
    let n_err = K * U * (a * gm + b * m_new.abs()) + b * m_err;
    let q = num / denom;
    let w_err = K * U * (w.abs() + q.abs()) + (n_err + q.abs() * d_err) / denom;
    want(wd - q, w_err, vec![(m_new, m_err), (v_new, v_err)])
}

/// torch.optim.NAdam(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
/// momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False); its state's
/// `mu_product` is the crate's `Nadam::mu_product` of the step.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
    let wd = h.num("weight_decay", Some(0.0))?;
    let decoupled = h.bool("decoupled_weight_decay", false)?;
    let config = Nadam::builder(h.num("lr", Some(2e-3))?)
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-8))?)
        .momentum_decay(h.num("momentum_decay", Some(4e-3))?)
        .weight_decay(decay(wd, decoupled))
        .maximize(h.bool("maximize", false)?)
        .build();
    let mut mapped = Mapped::new(built(config)?, &["exp_avg", "exp_avg_sq"])?;
    mapped.scalars = vec![("mu_product", |config, step| {
        let Optimizer::Nadam(c) = config else {
            unreachable!("a NAdam config")
        };
        c.mu_product(step)
    })];
    Ok(mapped)
}
