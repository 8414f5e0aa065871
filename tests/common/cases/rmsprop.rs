//! RMSprop: plain or centered, epsilon inside or outside the root, with or without momentum
//! (in the three forms).

use super::*;
use optkern::Rmsprop;

pub struct RmspropCase;

impl Case for RmspropCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "RMSprop",
        random,
        refused: || {
            vec![
                refuse(Rmsprop::builder(1e-2).alpha(1.0).build(), "alpha"),
                refuse(Rmsprop::builder(1e-2).eps(-1e-8).build(), "eps"),
                refuse(Rmsprop::builder(1e-2).momentum(1.0).build(), "momentum"),
                refuse(Rmsprop::builder(f64::NAN).build(), "lr"),
            ]
        },
        bad_calls: || {
            use Variant::*;
            vec![
                bad(&[30, 30, 30], &["grad_avg", "needs"], |e, b| {
                    rmsprop(e, b, Centered, false)
                }),
                bad(&[30, 30, 30, 30], &["grad_avg", "does not use"], |e, b| {
                    rmsprop(e, b, Plain, true)
                }),
                bad(&[30, 30, 30], &["momentum_buffer", "needs"], |e, b| {
                    rmsprop(e, b, WithMomentum, false)
                }),
                bad(
                    &[30, 30, 30, 30],
                    &["momentum_buffer", "does not use"],
                    |e, b| rmsprop(e, b, Plain, false),
                ),
                bad(
                    &[30, 29, 30],
                    &["rmsprop_step", "square_avg", "29"],
                    |e, b| rmsprop(e, b, Plain, false),
                ),
                bad(&[30, 30, 28, 30], &["grad_avg", "28"], |e, b| {
                    rmsprop(e, b, Centered, true)
                }),
                bad(&[30, 30, 31, 30], &["momentum_buffer", "31"], |e, b| {
                    rmsprop(e, b, WithMomentum, false)
                }),
            ]
        },
        reference: Some(Reference {
            prepare: Some(prepare),
            ..Reference::new(reference_configs, reference).unwrap()
        }),
        golden: maps(&["rmsprop", "keras_rmsprop"], golden),
    };

    fn configs() -> BoxedStrategy<Optimizer> {
        let momentum = prop_oneof![Just(0.0f64), Just(0.9), 0.0f64..1.0];
        (
            any_valid::lr(),
            any_valid::beta(),
            any_valid::eps(),
            any::<bool>(),
            any_valid::weight_decay(),
            momentum,
            any_valid::momentum_form(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(config)
            .boxed()
    }

    crate::own_call!(Rmsprop, |exec, w, state, g, c, step| {
        let mut state = state.into_iter();
        let square_avg = state.next().unwrap();
        let grad_avg = if c.centered() { state.next() } else { None };
        let momentum_buffer = state.next();
        exec.rmsprop_step(w, square_avg, grad_avg, momentum_buffer, g, c, step)
    });
}

type Options = (
    f64,
    f64,
    f64,
    bool,
    WeightDecay,
    f64,
    MomentumForm,
    bool,
    bool,
);

fn config((lr, alpha, eps, inside, wd, momentum, form, centered, maximize): Options) -> Optimizer {
    crate::built_with!(
        Rmsprop::builder(lr)
            .alpha(alpha)
            .eps(eps)
            .eps_inside_sqrt(inside)
            .momentum(momentum)
            .momentum_form(form)
            .centered(centered),
        wd,
        maximize
    )
}

enum Variant {
    Plain,
    Centered,
    WithMomentum,
}

/// RMSprop at lr 1e-2 through `rmsprop_step`: the buffer after `square_avg` is passed as
/// `grad_avg` if `first_is_grad_avg`, else as the momentum buffer (a further one as the
/// momentum buffer).
fn rmsprop(
    exec: &Executor,
    buffers: &mut [Vec<f32>],
    variant: Variant,
    first_is_grad_avg: bool,
) -> Result<(), Error> {
    let builder = Rmsprop::builder(1e-2);
    let config = match variant {
        Variant::Plain => builder,
        Variant::Centered => builder.centered(true),
        Variant::WithMomentum => builder.momentum(0.9),
    }
    .build()
    .unwrap();
    let (w, state, g) = parts(buffers);
    let mut state = state.into_iter();
    let square_avg = state.next().unwrap();
    let grad_avg = if first_is_grad_avg {
        state.next()
    } else {
        None
    };
    exec.rmsprop_step(w, square_avg, grad_avg, state.next(), g, &config, 1)
}

fn random(rng: &mut Rng) -> Optimizer {
    config((
        lr(rng),
        beta(rng),
        pick(rng, &[1e-8, 1e-3]),
        flag(rng),
        weight_decay(rng),
        pick(rng, &[0.0, 0.9]),
        pick(rng, &[MomentumForm::HeavyBall, MomentumForm::LrInVelocity]),
        flag(rng),
        flag(rng),
    ))
}

/// `alpha >= 0.5`, where the centered variance `sq - ga^2` is well conditioned (with the
/// states of [`prepare`]).
fn reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            (-5.0f64..-1.0).prop_map(|e| 10f64.powf(e)),
            0.5f64..0.999,
            (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e)),
            any::<bool>(),
            reference_weight_decay(),
            prop_oneof![Just(0.0f64), 0.0f64..0.99],
            any_valid::momentum_form(),
            any::<bool>(),
            any::<bool>(),
        ),
        Just(1),
        config,
    )
}

/// Centered: `|ga| <= sqrt(sq) / 2`, so that the variance is well conditioned.
fn prepare(config: &Optimizer, rng: &mut Rng, state: &mut [f64]) {
    let Optimizer::Rmsprop(c) = config else {
        unreachable!("the RMSprop case")
    };
    if c.centered() {
        state[1] = rng.range(-1.0, 1.0) * state[0].sqrt() * 0.5;
    }
}

/// RMSprop as PyTorch computes it (and TensorFlow's `eps` inside the root, and the other two
/// momentum forms).
///
/// The bound (`K = 16`): the averages carry `K*u` times their terms' magnitudes (the centered
/// one as a lerp, plus `|g - ga|`); the variance `sq - ga^2` carries `K*u*(M_sq + 3*M_ga^2)`;
/// the root and `eps` as for Adam; the quotient `g/d` carries `(K*u*|g| + |q|*err(d))/d` (with
/// `d` no smaller than `d - err(d)`, or half of `d`) and its own rounding; the momentum buffer
/// and the weights add `K*u` times their terms.
fn reference(config: &Optimizer, w: f64, state: &[f64], g: f64, _step: u64) -> Want {
    let Optimizer::Rmsprop(c) = config else {
        unreachable!("the RMSprop case")
    };
    let (alpha, lr, eps, mu) = (c.alpha(), c.lr(), c.eps(), c.momentum());
    let (coef, a) = match c.momentum_form() {
        MomentumForm::HeavyBall => (1.0, lr),
        MomentumForm::LrInVelocity => (lr, 1.0),
        MomentumForm::MovingAverage => (1.0 - mu, lr),
    };
    let sq = state[0];
    let (ge, gm, wd) = gradient_in(c.weight_decay(), c.maximize(), lr, w, g);
    let sq_new = alpha * sq + (1.0 - alpha) * ge * ge;
    let sq_mag = alpha * sq + (1.0 - alpha) * gm * gm;
    let mut out = vec![(sq_new, K * U * sq_mag)];
    let (t, t_err) = if c.centered() {
        let ga = state[1];
        let ga_new = alpha * ga + (1.0 - alpha) * ge;
        // A lerp with weight 1 - alpha rounded to f32: that adds u * |g - ga|.
        let ga_mag = (alpha * ga).abs() + (1.0 - alpha) * gm + (ge - ga).abs();
        out.push((ga_new, K * U * ga_mag));
        let t = (sq_new - ga_new * ga_new).max(0.0);
        (
            t,
            K * U * (sq_mag + ga_mag * ga_mag + 2.0 * ga_mag * ga_mag),
        )
    } else {
        (sq_new, K * U * sq_mag)
    };
    let (d, d_err) = if c.eps_inside_sqrt() {
        let d = (t + eps).sqrt();
        (d, K * U * d + t_err / (2.0 * d))
    } else {
        let d = t.sqrt() + eps;
        let root_err = if t > 0.0 {
            t_err / (2.0 * t.sqrt())
        } else {
            t_err.sqrt()
        };
        (d, K * U * d + root_err.min(t_err.sqrt()))
    };
    let q = ge / d;
    let q_err = (K * U * gm + q.abs() * d_err) / (d - d_err).max(d * 0.5) + K * U * q.abs();
    if c.has_momentum_buffer() {
        let b = *state.last().unwrap();
        let b_new = mu * b + coef * q;
        let b_err = K * U * ((mu * b).abs() + (coef * q).abs()) + coef * q_err;
        out.push((b_new, b_err));
        let w_err = K * U * (w.abs() + (a * b_new).abs()) + a * b_err;
        want(wd - a * b_new, w_err, out)
    } else {
        let w_err = K * U * (w.abs() + (lr * q).abs()) + lr * q_err;
        want(wd - lr * q, w_err, out)
    }
}

/// torch.optim.RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
/// centered=False, maximize=False); keras.optimizers.RMSprop(learning_rate=1e-3, rho=0.9,
/// momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None): eps inside the square
/// root, lr inside the momentum, decoupled decay.
fn golden(name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let keras = name == "keras_rmsprop";
    let builder = if keras {
        let lr = h.num("learning_rate", Some(1e-3))?;
        Rmsprop::builder(lr)
            .alpha(h.num("rho", Some(0.9))?)
            .momentum(h.num("momentum", Some(0.0))?)
            .eps(h.num("epsilon", Some(1e-7))?)
            .centered(h.bool("centered", false)?)
            .weight_decay(decay(h.num("weight_decay", Some(0.0))?, true))
            .eps_inside_sqrt(true)
            .momentum_form(MomentumForm::LrInVelocity)
    } else {
        Rmsprop::builder(h.num("lr", Some(1e-2))?)
            .alpha(h.num("alpha", Some(0.99))?)
            .eps(h.num("eps", Some(1e-8))?)
            .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
            .momentum(h.num("momentum", Some(0.0))?)
            .centered(h.bool("centered", false)?)
            .maximize(h.bool("maximize", false)?)
    };
    let config = built(builder.build())?;
    let (square, average, buffer) = if keras {
        ("velocity", "average_gradient", "momentum")
    } else {
        ("square_avg", "grad_avg", "momentum_buffer")
    };
    let mut names = vec![square];
    if config.centered() {
        names.push(average);
    }
    if config.has_momentum_buffer() {
        names.push(buffer);
    }
    Mapped::new(config, &names)
}
