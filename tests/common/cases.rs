//! One case per optimizer: everything the shared suites need to test it.
//!
//! Each [`OptimizerCase`] gives the optimizer's random configs (every option drawn), the
//! configs its builder must refuse, and, where the case carries one, an independent `f64`
//! reference of one step with its stated error bound. The suites loop over [`CASES`]:
//! `tests/optimizers.rs` (bit-exact against the scalar oracle on every backend and the 27
//! element-type mixes, the `f64` reference, the refused configs, checkpoints and resuming),
//! `tests/mixed_precision.rs` (many tensors, model copies, stochastic rounding, the checked
//! step). A new optimizer gets all of them by adding its case here.

use optkern::{
    Adagrad, Adam, Adamax, EpsilonPlacement, Error, Lamb, Lion, Momentum, MomentumForm, Optimizer,
    Rmsprop, Sgd, WeightDecay,
};

use super::data::Rng;
use super::reference::U;

/// An optimizer's test case.
pub struct OptimizerCase {
    /// The optimizer's name ([`Optimizer::name`]).
    pub name: &'static str,
    /// A random config, every option drawn.
    pub random: fn(&mut Rng) -> Optimizer,
    /// Configs its builder refuses, each with a word the error message must contain.
    pub refused: fn() -> Vec<Refused>,
    /// An `f64` reference of one step, if the case carries one (the older optimizers have
    /// theirs in `tests/reference_optimizers.rs`).
    pub reference: Option<Reference>,
}

/// A config the builder must refuse, and a word its error message must contain.
pub type Refused = (Result<Optimizer, Error>, &'static str);

/// One step of an optimizer on one element in `f64`, from the published formula: given the
/// config, the weight, the state (in the order of `state_buffers`), the gradient and the step,
/// the new weight and state, and the bound on the error of an `f32` computation of each
/// (before the final rounding into storage).
pub type Reference = fn(&Optimizer, f64, &[f64], f64, u64) -> (f64, Vec<f64>, f64, Vec<f64>);

/// Every optimizer of the crate, in the order of their checkpoint codes.
pub const CASES: &[OptimizerCase] = &[
    OptimizerCase {
        name: "SGD",
        random: sgd,
        refused: || {
            vec![
                (Sgd::builder(-1.0).build().map(Into::into), "lr"),
                (
                    Sgd::builder(0.1)
                        .weight_decay(WeightDecay::L2(f64::INFINITY))
                        .build()
                        .map(Into::into),
                    "weight_decay",
                ),
            ]
        },
        reference: None,
    },
    OptimizerCase {
        name: "momentum",
        random: momentum,
        refused: || {
            vec![
                (
                    Momentum::heavy_ball(0.1, 1.0).build().map(Into::into),
                    "momentum",
                ),
                (
                    Momentum::lr_in_velocity(0.1, 0.9)
                        .dampening(0.1)
                        .build()
                        .map(Into::into),
                    "dampening",
                ),
            ]
        },
        reference: None,
    },
    OptimizerCase {
        name: "Adam",
        random: adam,
        refused: || {
            vec![
                (Adam::builder(1e-3).eps(0.0).build().map(Into::into), "eps"),
                (
                    Adam::builder(1e-3).betas(1.0, 0.9).build().map(Into::into),
                    "beta1",
                ),
            ]
        },
        reference: None,
    },
    OptimizerCase {
        name: "RMSprop",
        random: rmsprop,
        refused: || {
            vec![(
                Rmsprop::builder(1e-2).alpha(1.0).build().map(Into::into),
                "alpha",
            )]
        },
        reference: None,
    },
    OptimizerCase {
        name: "Adagrad",
        random: adagrad,
        refused: || {
            vec![(
                Adagrad::builder(1e-2)
                    .lr_decay(-1.0)
                    .build()
                    .map(Into::into),
                "lr_decay",
            )]
        },
        reference: None,
    },
    OptimizerCase {
        name: "Lion",
        random: lion,
        refused: || {
            vec![(
                Lion::builder(1e-4).betas(0.9, 1.5).build().map(Into::into),
                "beta2",
            )]
        },
        reference: None,
    },
    OptimizerCase {
        name: "LAMB",
        random: |rng| lamb(rng).into(),
        refused: || {
            vec![(
                Lamb::builder(1e-3)
                    .max_grad_norm(Some(0.0))
                    .build()
                    .map(Into::into),
                "max_grad_norm",
            )]
        },
        reference: None,
    },
    OptimizerCase {
        name: "Adamax",
        random: adamax,
        refused: || {
            vec![
                (
                    Adamax::builder(2e-3).eps(0.0).build().map(Into::into),
                    "eps",
                ),
                (
                    Adamax::builder(2e-3)
                        .betas(0.9, 1.0)
                        .build()
                        .map(Into::into),
                    "beta2",
                ),
                (Adamax::builder(f64::NAN).build().map(Into::into), "lr"),
                (
                    Adamax::builder(2e-3)
                        .weight_decay(WeightDecay::L2(-1.0))
                        .build()
                        .map(Into::into),
                    "weight_decay",
                ),
            ]
        },
        reference: Some(adamax_reference),
    },
];

/// A random config of case `kind % CASES.len()`.
pub fn random_config(kind: u64, rng: &mut Rng) -> Optimizer {
    (CASES[(kind % CASES.len() as u64) as usize].random)(rng)
}

/// Whether a state buffer holds magnitudes only (second moments, sums, infinity norms).
pub fn non_negative(name: &str) -> bool {
    matches!(name, "v" | "v_max" | "square_avg" | "sum" | "u")
}

// ---- random configs ----

pub fn pick<T: Copy>(rng: &mut Rng, options: &[T]) -> T {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

pub fn lr(rng: &mut Rng) -> f64 {
    pick(rng, &[0.0, 1e-4, 1e-3, 0.01, 0.1, 0.7])
}

pub fn beta(rng: &mut Rng) -> f64 {
    let any = rng.unit() * 0.999;
    pick(rng, &[0.0, 0.5, 0.9, 0.99, 0.999, any])
}

pub fn weight_decay(rng: &mut Rng) -> WeightDecay {
    let wd = pick(rng, &[1e-4, 0.01, 0.3]);
    pick(
        rng,
        &[
            WeightDecay::None,
            WeightDecay::L2(wd),
            WeightDecay::Decoupled(wd),
        ],
    )
}

pub fn flag(rng: &mut Rng) -> bool {
    rng.next_u64() & 1 == 1
}

fn sgd(rng: &mut Rng) -> Optimizer {
    Sgd::builder(lr(rng))
        .weight_decay(weight_decay(rng))
        .maximize(flag(rng))
        .build()
        .unwrap()
        .into()
}

fn momentum(rng: &mut Rng) -> Optimizer {
    let (lr, mu) = (lr(rng), pick(rng, &[0.5, 0.9, 0.99]));
    let builder = match rng.next_u64() % 3 {
        0 => Momentum::heavy_ball(lr, mu).dampening(pick(rng, &[0.0, 0.1])),
        1 => Momentum::lr_in_velocity(lr, mu),
        _ => Momentum::moving_average(lr, mu),
    };
    let nesterov = flag(rng);
    let built = builder
        .nesterov(nesterov)
        .weight_decay(weight_decay(rng))
        .maximize(flag(rng))
        .build();
    built
        .or_else(|_| builder.nesterov(false).build())
        .unwrap()
        .into()
}

fn adam(rng: &mut Rng) -> Optimizer {
    Adam::builder(lr(rng))
        .betas(beta(rng), beta(rng))
        .eps(pick(rng, &[1e-8, 1e-3]))
        .weight_decay(weight_decay(rng))
        .amsgrad(flag(rng))
        .maximize(flag(rng))
        .bias_correction(flag(rng))
        .epsilon_placement(pick(
            rng,
            &[EpsilonPlacement::Corrected, EpsilonPlacement::Hat],
        ))
        .build()
        .unwrap()
        .into()
}

fn rmsprop(rng: &mut Rng) -> Optimizer {
    Rmsprop::builder(lr(rng))
        .alpha(beta(rng))
        .eps(pick(rng, &[1e-8, 1e-3]))
        .eps_inside_sqrt(flag(rng))
        .weight_decay(weight_decay(rng))
        .momentum(pick(rng, &[0.0, 0.9]))
        .momentum_form(pick(
            rng,
            &[MomentumForm::HeavyBall, MomentumForm::LrInVelocity],
        ))
        .centered(flag(rng))
        .maximize(flag(rng))
        .build()
        .unwrap()
        .into()
}

fn adagrad(rng: &mut Rng) -> Optimizer {
    Adagrad::builder(lr(rng))
        .lr_decay(pick(rng, &[0.0, 1e-3]))
        .weight_decay(weight_decay(rng))
        .initial_accumulator_value(pick(rng, &[0.0, 0.1]))
        .eps(1e-10)
        .maximize(flag(rng))
        .build()
        .unwrap()
        .into()
}

fn lion(rng: &mut Rng) -> Optimizer {
    Lion::builder(lr(rng))
        .betas(beta(rng), beta(rng))
        .weight_decay(pick(rng, &[WeightDecay::None, WeightDecay::Decoupled(0.1)]))
        .maximize(flag(rng))
        .build()
        .unwrap()
        .into()
}

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

fn adamax(rng: &mut Rng) -> Optimizer {
    Adamax::builder(lr(rng))
        .betas(beta(rng), beta(rng))
        .eps(pick(rng, &[1e-8, 1e-3, 0.5]))
        .weight_decay(weight_decay(rng))
        .maximize(flag(rng))
        .build()
        .unwrap()
        .into()
}

// ---- f64 references ----

/// Adamax, from Kingma & Ba (2015), section 7.1, with PyTorch's placement of `eps` (inside
/// the max) and its L2 weight decay (or decoupled decay).
///
/// The bound, with `u = 2^-24` and `K = 16` (as `tests/reference_optimizers.rs` derives it):
/// the first moment `beta1*m + (1-beta1)*g` as PyTorch's lerp carries `K*u*(|beta1*m| +
/// (1-beta1)*|g| + |g - m|)` (the weight `1 - beta1` rounded to f32); `u = max(beta2*u,
/// |g| + eps)` carries `K*u*(beta2*u + |g| + eps)` (each operand is one or two roundings,
/// `eps` itself rounded to f32); the weight `w - s*m/u` carries `K*u*|w|` plus
/// `s*(err(m) + |m/u|*err(u))/u` and `K*u*s*|m/u|` for the step size and the division.
fn adamax_reference(
    config: &Optimizer,
    w: f64,
    state: &[f64],
    g: f64,
    step: u64,
) -> (f64, Vec<f64>, f64, Vec<f64>) {
    let Optimizer::Adamax(c) = config else {
        unreachable!("the Adamax case")
    };
    const K: f64 = 16.0;
    let (b1, b2) = c.betas();
    let (lr, eps) = (c.lr(), c.eps());
    let (m, u) = (state[0], state[1]);
    let g_sign = if c.maximize() { -g } else { g };
    let (ge, g_mag, w_dec) = match c.weight_decay() {
        WeightDecay::L2(l2) => (g_sign + l2 * w, g.abs() + (l2 * w).abs(), w),
        WeightDecay::Decoupled(d) => (g_sign, g.abs(), w * (1.0 - lr * d)),
        WeightDecay::None => (g_sign, g.abs(), w),
    };
    let m_new = b1 * m + (1.0 - b1) * ge;
    let m_err = K * U * ((b1 * m).abs() + (1.0 - b1) * g_mag + (ge - m).abs());
    let u_new = (b2 * u).max(ge.abs() + eps);
    let u_err = K * U * (b2 * u + g_mag + eps);
    let s = lr / (1.0 - b1.powf(step as f64));
    let q = m_new / u_new;
    let w_new = w_dec - s * q;
    let w_err = K * U * (w.abs() + s * q.abs()) + s * (m_err + q.abs() * u_err) / u_new;
    (w_new, vec![m_new, u_new], w_err, vec![m_err, u_err])
}
