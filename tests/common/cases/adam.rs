//! Adam, AdamW and AMSGrad, with both placements of epsilon and bias correction on or off.

use super::*;
use optkern::{Adam, EpsilonPlacement};

pub struct AdamCase;

impl Case for AdamCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Adam",
        random,
        refused: || {
            vec![
                refuse(Adam::builder(1e-3).eps(0.0).build(), "eps"),
                refuse(Adam::builder(1e-3).eps(f64::NAN).build(), "eps"),
                refuse(Adam::builder(1e-3).betas(1.0, 0.9).build(), "beta1"),
                refuse(Adam::builder(1e-3).betas(0.9, -0.1).build(), "beta2"),
                refuse(Adam::builder(-1e-3).build(), "lr"),
                refuse(Adam::adamw(1e-3, f64::INFINITY).build(), "weight_decay"),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 39, 40, 40],
                    &["adam_step", "m", "39", "40"],
                    |e, b| adam(e, b, false, 1),
                ),
                bad(&[40, 40, 41, 40], &["v", "41"], |e, b| adam(e, b, false, 1)),
                bad(&[40, 40, 40, 4], &["gradient", "4"], |e, b| {
                    adam(e, b, false, 1)
                }),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| adam(e, b, false, 0)),
                bad(&[40, 40, 40, 40], &["v_max", "needs"], |e, b| {
                    adam(e, b, true, 3)
                }),
                bad(&[40, 40, 40, 40, 40], &["v_max", "does not use"], |e, b| {
                    adam(e, b, false, 3)
                }),
                bad(
                    &[40, 40, 40, 30, 40],
                    &["amsgrad_step", "v_max", "30"],
                    |e, b| adam(e, b, true, 3),
                ),
            ]
        },
        reference: Reference::new(reference_configs, reference),
        golden: maps(&["adam", "adamw", "keras_adam"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            any_valid::adam_family(),
            (any::<bool>(), any::<bool>(), any::<bool>(), placement()),
        )
            .prop_map(
                |((lr, b1, b2, eps, wd), (amsgrad, maximize, bias, placement))| {
                    config(lr, b1, b2, eps, wd, amsgrad, maximize, bias, placement)
                },
            )
            .boxed()
    }

    crate::own_call!(Adam, |exec, w, state, g, c, step| {
        match state.as_mut_slice() {
            [m, v] => exec.adam_step(w, m, v, g, c, step),
            [m, v, v_max] => exec.amsgrad_step(w, m, v, v_max, g, c, step),
            _ => unreachable!("Adam has two or three state buffers"),
        }
    });
}

fn placement() -> impl Strategy<Value = EpsilonPlacement> {
    prop_oneof![
        Just(EpsilonPlacement::Corrected),
        Just(EpsilonPlacement::Hat)
    ]
}

#[allow(clippy::too_many_arguments)]
pub fn config(
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    wd: WeightDecay,
    amsgrad: bool,
    maximize: bool,
    bias_correction: bool,
    placement: EpsilonPlacement,
) -> Optimizer {
    crate::built_with!(
        Adam::builder(lr)
            .betas(b1, b2)
            .eps(eps)
            .amsgrad(amsgrad)
            .bias_correction(bias_correction)
            .epsilon_placement(placement),
        wd,
        maximize
    )
}

/// Adam (or AMSGrad) at lr 1e-3 through `adam_step` on three buffers and `amsgrad_step` on four.
fn adam(exec: &Executor, buffers: &mut [Vec<f32>], amsgrad: bool, step: u64) -> Result<(), Error> {
    let config = Adam::builder(1e-3).amsgrad(amsgrad).build().unwrap();
    match parts(buffers) {
        (w, mut s, g) if s.len() == 2 => {
            let [m, v] = s.as_mut_slice() else {
                unreachable!()
            };
            exec.adam_step(w, m, v, g, &config, step)
        }
        (w, mut s, g) => {
            let [m, v, v_max] = s.as_mut_slice() else {
                unreachable!("three state buffers")
            };
            exec.amsgrad_step(w, m, v, v_max, g, &config, step)
        }
    }
}

fn random(rng: &mut Rng) -> Optimizer {
    let (lr, b1, b2) = (lr(rng), beta(rng), beta(rng));
    let eps = pick(rng, &[1e-8, 1e-3]);
    let wd = weight_decay(rng);
    let (amsgrad, maximize, bias) = (flag(rng), flag(rng), flag(rng));
    let placement = pick(rng, &[EpsilonPlacement::Corrected, EpsilonPlacement::Hat]);
    config(lr, b1, b2, eps, wd, amsgrad, maximize, bias, placement)
}

fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    (
        (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
        0.0f64..0.999,
        0.0f64..0.9999,
        (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
        reference_weight_decay(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        placement(),
        prop_oneof![Just(1u64), 2u64..50, 50u64..1_000_000],
        any::<u64>(),
    )
        .prop_map(
            |(lr, b1, b2, eps, wd, amsgrad, maximize, bias, placement, step, seed)| {
                let config = config(lr, b1, b2, eps, wd, amsgrad, maximize, bias, placement);
                (config, step, seed)
            },
        )
        .boxed()
}

/// Adam from Kingma & Ba (2015), with PyTorch's placements of `eps`, its L2 decay and AdamW's
/// decoupled decay, AMSGrad's running maximum.
///
/// The bound (`K = 16`): the first moment as PyTorch's lerp carries `K*u*(|beta1*m| +
/// (1-beta1)*|g| + |g - m|)` (the weight `1 - beta1` rounded to f32), the second
/// `K*u*(beta2*v + (1-beta2)*g^2)`; the quotient `m/d` carries `(err(m) + |m/d|*err(d))/d`,
/// with `err(d)` from the square root of `v` (`err(v)/(2 sqrt(v))`, or `sqrt(err(v))` at
/// `v = 0`) and the rounding of `d` itself. Where the gradient as read cancels (`g + l2*w` near
/// 0 with `v` its square), `err(v)` is set by the magnitudes of the terms, not by `v`, and the
/// quotient is that ill-conditioned.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::Adam(c) = config else {
        unreachable!("the Adam case")
    };
    let ((b1, b2), lr) = (c.betas(), c.lr());
    let (m, v) = (state[0], state[1]);
    let (bc1, bc2) = if c.bias_correction() {
        (1.0 - b1.powf(step as f64), 1.0 - b2.powf(step as f64))
    } else {
        (1.0, 1.0)
    };
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let m_new = b1 * m + (1.0 - b1) * ge;
    let m_mag = (b1 * m).abs() + (1.0 - b1) * gm + (ge - m).abs();
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    let v_mag = b2 * v + (1.0 - b2) * gm * gm;
    let v_used = if c.amsgrad() {
        state[2].max(v_new)
    } else {
        v_new
    };
    let (step_size, k) = match c.epsilon_placement() {
        EpsilonPlacement::Corrected => (lr / bc1, 1.0 / bc2.sqrt()),
        EpsilonPlacement::Hat => (lr * bc2.sqrt() / bc1, 1.0),
    };
    let denom = v_used.sqrt() * k + c.eps();
    let w_new = wd - step_size * m_new / denom;
    let v_err = K * U * v_mag;
    let sqrt_err = if v_used > 0.0 {
        v_err / (2.0 * v_used.sqrt())
    } else {
        v_err.sqrt()
    };
    let d_err = sqrt_err * k + K * U * denom;
    let q = (m_new / denom).abs();
    let w_err = K * U * (w.abs() + step_size * q) + step_size * (K * U * m_mag + q * d_err) / denom;
    let mut state = vec![(m_new, K * U * m_mag), (v_new, v_err)];
    if c.amsgrad() {
        state.push((v_used, v_err));
    }
    want(w_new, w_err, state)
}

/// torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
/// maximize=False, decoupled_weight_decay=False); AdamW is the same with decoupled decay
/// (default 0.01). keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
/// epsilon=1e-7, amsgrad=False, weight_decay=None): epsilon hat, decoupled decay.
fn golden(name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let keras = name == "keras_adam";
    let builder = if keras {
        let lr = h.num("learning_rate", Some(1e-3))?;
        let (b1, b2) = (h.num("beta_1", Some(0.9))?, h.num("beta_2", Some(0.999))?);
        let eps = h.num("epsilon", Some(1e-7))?;
        let amsgrad = h.bool("amsgrad", false)?;
        let weight_decay = decay(h.num("weight_decay", Some(0.0))?, true);
        Adam::builder(lr)
            .betas(b1, b2)
            .eps(eps)
            .amsgrad(amsgrad)
            .weight_decay(weight_decay)
            .epsilon_placement(EpsilonPlacement::Hat)
    } else {
        let adamw = name == "adamw";
        let lr = h.num("lr", Some(1e-3))?;
        let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
        let eps = h.num("eps", Some(1e-8))?;
        let wd = h.num("weight_decay", Some(if adamw { 1e-2 } else { 0.0 }))?;
        let decoupled = h.bool("decoupled_weight_decay", adamw)?;
        let amsgrad = h.bool("amsgrad", false)?;
        let maximize = h.bool("maximize", false)?;
        Adam::builder(lr)
            .betas(b1, b2)
            .eps(eps)
            .weight_decay(decay(wd, decoupled))
            .amsgrad(amsgrad)
            .maximize(maximize)
    };
    let config = built(builder.build())?;
    let names: &[&str] = match (keras, config.amsgrad()) {
        (false, false) => &["exp_avg", "exp_avg_sq"],
        (false, true) => &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
        (true, false) => &["momentum", "velocity"],
        (true, true) => &["momentum", "velocity", "velocity_hat"],
    };
    Mapped::new(config, names)
}
