//! Adamax (PyTorch's `torch.optim.Adamax`).

use super::*;
use optkern::Adamax;

pub struct AdamaxCase;

impl Case for AdamaxCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Adamax",
        random,
        refused: || {
            vec![
                refuse(Adamax::builder(2e-3).eps(0.0).build(), "eps"),
                refuse(Adamax::builder(2e-3).betas(0.9, 1.0).build(), "beta2"),
                refuse(Adamax::builder(f64::NAN).build(), "lr"),
                refuse(
                    Adamax::builder(2e-3)
                        .weight_decay(WeightDecay::L2(-1.0))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(&[40, 40, 37, 40], &["adamax_step", "u", "37"], |e, b| {
                    adamax(e, b, 1)
                }),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| adamax(e, b, 1)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| adamax(e, b, 0)),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["adamax"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (any_valid::adam_family(), any::<bool>())
            .prop_map(|((lr, b1, b2, eps, wd), maximize)| config((lr, b1, b2, eps, wd, maximize)))
            .boxed()
    }

    crate::own_call!(Adamax, |exec, w, state, g, c, step| {
        let [m, u] = state.as_mut_slice() else {
            unreachable!("Adamax has two state buffers")
        };
        exec.adamax_step(w, m, u, g, c, step)
    });
}

/// Adamax at lr 2e-3 through `adamax_step`.
fn adamax(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Adamax::builder(2e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [m, u] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.adamax_step(w, m, u, g, &config, step)
}

fn config((lr, b1, b2, eps, wd, maximize): (f64, f64, f64, f64, WeightDecay, bool)) -> Optimizer {
    crate::built_with!(Adamax::builder(lr).betas(b1, b2).eps(eps), wd, maximize)
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

/// Every option, learning rates up to 0.7 and `eps` up to 0.5, steps from 1 to a million.
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.0f64), 0.0f64..0.999],
            prop_oneof![Just(0.0f64), 0.0f64..0.9999],
            prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            reference_weight_decay(),
            any::<bool>(),
        ),
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        config,
    )
}

/// Adamax, from Kingma & Ba (2015), section 7.1, with PyTorch's placement of `eps` (inside
/// the max) and its L2 weight decay (or decoupled decay).
///
/// The bound, with `u = 2^-24` and `K = 16` (as `tests/reference_optimizers.rs` derives it):
/// the first moment `beta1*m + (1-beta1)*g` as PyTorch's lerp carries `K*u*(|beta1*m| +
/// (1-beta1)*|g| + |g - m|)` (the weight `1 - beta1` rounded to f32); `u = max(beta2*u,
/// |g| + eps)` carries `K*u*(beta2*u + |g| + eps)` (each operand is one or two roundings,
/// `eps` itself rounded to f32); the weight `w - s*m/u` carries `K*u*|w|` plus
/// `s*(err(m) + |m/u|*err(u))/u` and `K*u*s*|m/u|` for the step size and the division.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Adamax(c) = config else {
        unreachable!("the Adamax case")
    };
    let (b1, b2) = c.betas();
    let (lr, eps) = (c.lr(), c.eps());
    let (m, u) = (state[0], state[1]);
    let (ge, g_mag, w_dec) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let m_new = b1 * m + (1.0 - b1) * ge;
    let m_err = K * U * ((b1 * m).abs() + (1.0 - b1) * g_mag + (ge - m).abs());
    let u_new = (b2 * u).max(ge.abs() + eps);
    let u_err = K * U * (b2 * u + g_mag + eps);
    let s = lr / (1.0 - b1.powf(step as f64));
    let q = m_new / u_new;
    let w_new = w_dec - s * q;
    let w_err = K * U * (w.abs() + s * q.abs()) + s * (m_err + q.abs() * u_err) / u_new;
    want(w_new, w_err, vec![(m_new, m_err), (u_new, u_err)])
}

/// torch.optim.Adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
/// maximize=False): L2 weight decay, eps inside the max.
fn golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
    let config = Adamax::builder(h.num("lr", Some(2e-3))?)
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-8))?)
        .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
        .maximize(h.bool("maximize", false)?)
        .build();
    Mapped::new(built(config)?, &["exp_avg", "exp_inf"])
}
