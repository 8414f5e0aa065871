//! SGD with momentum, in its three forms (PyTorch's heavy ball, lr-in-velocity, the moving
//! average), with dampening, Nesterov, weight decay and maximize.

use super::*;
use optkern::{Momentum, Sgd};

pub struct MomentumCase;

impl Case for MomentumCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "momentum",
        random,
        refused: || {
            vec![
                refuse(Momentum::heavy_ball(0.1, 1.0).build(), "momentum"),
                refuse(
                    Momentum::lr_in_velocity(0.1, 0.9).dampening(0.1).build(),
                    "dampening",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[30, 29, 30],
                    &["momentum_step", "velocity", "29", "30"],
                    |e, b| momentum(e, b, 1),
                ),
                bad(&[30, 30, 31], &["gradient", "31"], |e, b| momentum(e, b, 1)),
                bad(&[30, 30, 30], &["step 0"], |e, b| momentum(e, b, 0)),
            ]
        },
        reference: Some(Reference {
            span: 20.0,
            ..Reference::new(reference_configs, reference).unwrap()
        }),
        golden: maps(&["sgd", "keras_sgd"], golden),
    };
    const PROPERTY_CASES: u32 = 256;

    fn configs() -> BoxedStrategy<Optimizer> {
        let momentum = prop_oneof![Just(0.0f64), Just(0.9), Just(0.99), 0.0f64..1.0];
        let dampening = prop_oneof![Just(0.0f64), 0.0f64..=1.0];
        (
            any_valid::momentum_form(),
            any_valid::lr(),
            momentum,
            dampening,
            any::<bool>(),
            any_valid::weight_decay(),
            any::<bool>(),
        )
            .prop_map(|(form, lr, mu, dampening, nesterov, wd, maximize)| {
                config(form, lr, mu, dampening, nesterov, wd, maximize)
            })
            .boxed()
    }

    crate::own_call!(Momentum, |exec, w, state, g, c, step| {
        exec.momentum_step(w, state[0], g, c, step)
    });
}

/// Heavy ball at lr 0.1, momentum 0.9 through `momentum_step`.
fn momentum(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    exec.momentum_step(w, s[0], g, &config, step)
}

/// A valid config: dampening only in PyTorch's form, Nesterov only with momentum and without
/// dampening.
fn config(
    form: MomentumForm,
    lr: f64,
    mu: f64,
    dampening: f64,
    nesterov: bool,
    wd: WeightDecay,
    maximize: bool,
) -> Optimizer {
    let dampening = if form == MomentumForm::HeavyBall {
        dampening
    } else {
        0.0
    };
    let nesterov = nesterov && mu > 0.0 && dampening == 0.0;
    let builder = match form {
        MomentumForm::HeavyBall => Momentum::heavy_ball(lr, mu),
        MomentumForm::LrInVelocity => Momentum::lr_in_velocity(lr, mu),
        MomentumForm::MovingAverage => Momentum::moving_average(lr, mu),
    };
    crate::built_with!(
        builder.dampening(dampening).nesterov(nesterov),
        wd,
        maximize
    )
}

fn random(rng: &mut Rng) -> Optimizer {
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

fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    (
        any_valid::momentum_form(),
        (-5.0f64..0.0).prop_map(|e| 10f64.powf(e)),
        prop_oneof![Just(0.0f64), 0.0f64..0.999],
        prop_oneof![Just(0.0f64), 0.0f64..=1.0],
        any::<bool>(),
        reference_weight_decay(),
        any::<bool>(),
        prop_oneof![Just(1u64), Just(2)],
        any::<u64>(),
    )
        .prop_map(
            |(form, lr, mu, dampening, nesterov, wd, maximize, step, seed)| {
                let config = config(form, lr, mu, dampening, nesterov, wd, maximize);
                (config, step, seed)
            },
        )
        .boxed()
}

/// One step from the published formulas (not from the crate's shared formula), so that a
/// mistake in that formula cannot hide behind the bit-exact backend tests.
///
/// The bound. One step computes each result with a handful of correctly rounded operations,
/// so its error is at most `K * u * M`, where `M` is the sum of the magnitudes of the terms
/// that make up the result (not the result itself, which may cancel to near zero) and `K = 8`
/// covers the roundings of the coefficients (`1 - dampening`, `1 - lr*wd`) and of the
/// operations. For the velocity `M = |mu*v| + |c|*(|g| + |l2*w|)`; for the weights
/// `M = |w| + |a|*M_d` with `M_d` the velocity's `M` (plus `|mu|*M_v + |c*g|` with Nesterov).
pub fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    const K: f64 = 8.0;
    let Optimizer::Momentum(c) = config else {
        unreachable!("the momentum case")
    };
    let (mu, lr, v) = (c.momentum(), c.lr(), state[0]);
    let (g_eff, g_mag, w_decayed) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    // The velocity coefficient and the step coefficient of each form.
    let (coef, a) = match c.form() {
        MomentumForm::HeavyBall => (1.0 - c.dampening(), lr),
        MomentumForm::LrInVelocity => (lr, 1.0),
        MomentumForm::MovingAverage => (1.0 - mu, lr),
    };
    let first = step == 1 && c.form() == MomentumForm::HeavyBall;
    let (v_new, m_v) = if first {
        (g_eff, g_mag)
    } else {
        (mu * v + coef * g_eff, (mu * v).abs() + coef * g_mag)
    };
    let (d, m_d) = if c.nesterov() {
        // PyTorch: g + mu*v (dampening is 0, so coef is 1); Keras: mu*v + lr*g; the moving
        // average: beta*v + (1-beta)*g.
        (mu * v_new + coef * g_eff, mu * m_v + coef * g_mag)
    } else {
        (v_new, m_v)
    };
    let w_new = w_decayed - a * d;
    want(
        w_new,
        K * U * (w.abs() + a * m_d),
        vec![(v_new, K * U * m_v)],
    )
}

/// torch.optim.SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
/// maximize=False): L2 weight decay, heavy ball, buffer = gradient on step 1.
/// keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
/// lr inside the (negated) velocity, decoupled weight decay. With momentum 0 both keep no
/// buffer: plain SGD (PyTorch then ignores dampening; Keras' Nesterov term vanishes).
fn golden(name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    if name == "keras_sgd" {
        let lr = h.num("learning_rate", Some(0.01))?;
        let momentum = h.num("momentum", Some(0.0))?;
        let nesterov = h.bool("nesterov", false)?;
        let weight_decay = decay(h.num("weight_decay", Some(0.0))?, true);
        if momentum == 0.0 {
            return Mapped::new(
                built(Sgd::builder(lr).weight_decay(weight_decay).build())?,
                &[],
            );
        }
        let config = Momentum::lr_in_velocity(lr, momentum)
            .nesterov(nesterov)
            .weight_decay(weight_decay)
            .build();
        let mut mapped = Mapped::new(built(config)?, &["momentum"])?;
        mapped.negated = true;
        return Ok(mapped);
    }
    let lr = h.num("lr", Some(1e-3))?;
    let momentum = h.num("momentum", Some(0.0))?;
    let dampening = h.num("dampening", Some(0.0))?;
    let weight_decay = decay(h.num("weight_decay", Some(0.0))?, false);
    let nesterov = h.bool("nesterov", false)?;
    let maximize = h.bool("maximize", false)?;
    if momentum == 0.0 {
        if nesterov {
            return Err("PyTorch rejects nesterov without momentum".into());
        }
        let config = Sgd::builder(lr)
            .weight_decay(weight_decay)
            .maximize(maximize)
            .build();
        return Mapped::new(built(config)?, &[]);
    }
    let config = Momentum::heavy_ball(lr, momentum)
        .dampening(dampening)
        .nesterov(nesterov)
        .weight_decay(weight_decay)
        .maximize(maximize)
        .build();
    Mapped::new(built(config)?, &["momentum_buffer"])
}
