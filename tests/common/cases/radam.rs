//! RAdam and RAdamW (PyTorch's `torch.optim.RAdam`, `decoupled_weight_decay` for RAdamW).

use super::*;
use optkern::Radam;

pub struct RadamCase;

impl Case for RadamCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "RAdam",
        random,
        refused: || {
            vec![
                refuse(Radam::builder(1e-3).eps(-1e-8).build(), "eps"),
                refuse(Radam::builder(1e-3).betas(0.9, 1.0).build(), "beta2"),
                refuse(Radam::builder(1e-3).betas(f64::NAN, 0.999).build(), "beta1"),
                refuse(Radam::builder(-1e-3).build(), "lr"),
                refuse(Radam::builder(1e38).build(), "lr / (1 - beta1)"),
                refuse(
                    Radam::builder(1e-3)
                        .weight_decay(WeightDecay::L2(f64::INFINITY))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[40, 40, 37, 40], &["radam_step", "v", "37"], |e, b| {
                    radam(e, b, 1)
                }),
                bad(&[41, 40, 40, 40], &["m", "41"], |e, b| radam(e, b, 1)),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| radam(e, b, 7)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| radam(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["radam"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (any_valid::adam_family(), any::<bool>())
            .prop_map(|((lr, b1, b2, eps, wd), maximize)| config((lr, b1, b2, eps, wd, maximize)))
            .boxed()
    }

    crate::own_call!(Radam, |exec, w, state, g, c, step| {
        let [m, v] = state.as_mut_slice() else {
            unreachable!("RAdam has two state buffers")
        };
        exec.radam_step(w, m, v, g, c, step)
    });
}

/// RAdam at lr 1e-3 through `radam_step`.
fn radam(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Radam::builder(1e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, v] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.radam_step(w, m, v, g, &config, step)
}

fn config((lr, b1, b2, eps, wd, maximize): (f64, f64, f64, f64, WeightDecay, bool)) -> Optimizer {
    crate::built_with!(Radam::builder(lr).betas(b1, b2).eps(eps), wd, maximize)
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        beta(rng),
        beta(rng),
        pick(rng, &[1e-8, 1e-3, 0.5]),
        weight_decay(rng),
        flag(rng),
    ))
}

/// Every option, learning rates up to 0.7 and `eps` up to 0.5, steps from 1 to a million
/// (both branches: the first five steps are never rectified).
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), 0.0f64..0.999],
            prop_oneof![Just(0.0f64), Just(0.999), 0.0f64..0.9999],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![1u64..=5, 6u64..50, 50u64..1_000_000],
        config,
    )
}

/// RAdam from Liu et al. (2020), with PyTorch's switch (`rho_t > 5`) and placement of `eps`
/// (on the uncorrected root), and its L2 weight decay (or RAdamW's decoupled decay).
///
/// The bound (`K = 16`), as Adam's: the first moment as PyTorch's lerp carries
/// `K*u*(|beta1*m| + (1-beta1)*|g| + |g - m|)`, the second `K*u*(beta2*v + (1-beta2)*g^2)`.
/// Rectified, the quotient `q = m/d` with `d = sqrt(v) + eps` carries `(err(m) + |q|*err(d))/d` (`err(d)` the
/// root's error, `err(v)/(2 sqrt(v))` or `sqrt(err(v))` at `v = 0`, plus its own rounding),
/// and the weight `K*u*(|w| + s*|q|) + s*err(q)`; otherwise the weight `K*u*(|w| + s*|m|) +
/// s*err(m)`, `s` the step size.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Radam(c) = config else {
        unreachable!("the RAdam case")
    };
    let ((b1, b2), lr, eps) = (c.betas(), c.lr(), c.eps());
    let (m, v) = (state[0], state[1]);
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let (bc1, bc2) = (1.0 - b1.powf(step as f64), 1.0 - b2.powf(step as f64));
    let rho_inf = 2.0 / (1.0 - b2) - 1.0;
    let rho_t = rho_inf - 2.0 * step as f64 * b2.powf(step as f64) / bc2;
    let m_new = b1 * m + (1.0 - b1) * ge;
    let m_err = K * U * ((b1 * m).abs() + (1.0 - b1) * gm + (ge - m).abs());
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    let v_err = K * U * (b2 * v + (1.0 - b2) * gm * gm);
    let state = vec![(m_new, m_err), (v_new, v_err)];
    if rho_t > 5.0 {
        let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            .sqrt();
        let s = lr * r * bc2.sqrt() / bc1;
        let denom = v_new.sqrt() + eps;
        let sqrt_err = if v_new > 0.0 {
            v_err / (2.0 * v_new.sqrt())
        } else {
            v_err.sqrt()
        };
        let d_err = sqrt_err + K * U * denom;
        let q = m_new / denom;
        let q_err = (m_err + q.abs() * d_err) / denom;
        let w_err = K * U * (w.abs() + s * q.abs()) + s * q_err;
        want(wd - s * q, w_err, state)
    } else {
        let s = lr / bc1;
        let w_err = K * U * (w.abs() + s * m_new.abs()) + s * m_err;
        want(wd - s * m_new, w_err, state)
    }
}

/// torch.optim.RAdam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
/// decoupled_weight_decay=False, maximize=False).
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
    let wd = h.num("weight_decay", Some(0.0))?;
    let decoupled = h.bool("decoupled_weight_decay", false)?;
    let config = Radam::builder(h.num("lr", Some(1e-3))?)
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-8))?)
        .weight_decay(decay(wd, decoupled))
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["exp_avg", "exp_avg_sq"])
}
