//! Schedule-Free AdamW and Schedule-Free SGD (`schedulefree`'s `AdamWScheduleFree` and
//! `SGDScheduleFree`).

use super::*;
use optkern::{ScheduleFreeAdamw, ScheduleFreeSgd};

pub struct ScheduleFreeAdamwCase;
pub struct ScheduleFreeSgdCase;

impl Case for ScheduleFreeAdamwCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Schedule-Free AdamW",
        random: random_adamw,
        refused: || {
            vec![
                refuse(
                    ScheduleFreeAdamw::builder(1e-3).betas(0.0, 0.9).build(),
                    "beta1",
                ),
                refuse(
                    ScheduleFreeAdamw::builder(1e-3).betas(1e-45, 0.9).build(),
                    "beta1",
                ),
                refuse(
                    ScheduleFreeAdamw::builder(1e-3).betas(0.9, 1.0).build(),
                    "beta2",
                ),
                refuse(ScheduleFreeAdamw::builder(1e-3).eps(0.0).build(), "eps"),
                refuse(ScheduleFreeAdamw::builder(-1.0).build(), "lr"),
                refuse(ScheduleFreeAdamw::builder(1e-3).r(8.5).build(), "r"),
                refuse(
                    ScheduleFreeAdamw::builder(1e-3)
                        .weight_lr_power(-1.0)
                        .build(),
                    "weight_lr_power",
                ),
                refuse(
                    ScheduleFreeAdamw::builder(1e30)
                        .weight_lr_power(8.0)
                        .build(),
                    "weight_lr_power",
                ),
                refuse(
                    ScheduleFreeAdamw::builder(1e-3)
                        .weight_decay(WeightDecay::Decoupled(f64::INFINITY))
                        .build(),
                    "weight_decay",
                ),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 40, 37, 40],
                    &["schedulefree_adamw_step", "v", "37"],
                    |e, b| adamw(e, b, 2),
                ),
                bad(&[40, 39, 40, 40], &["z", "39"], |e, b| adamw(e, b, 1)),
                bad(&[40, 40, 40, 3], &["gradient", "3"], |e, b| adamw(e, b, 1)),
                bad(&[40, 40, 40, 40], &["step 0"], |e, b| adamw(e, b, 0)),
            ]
        },
        reference: Reference::new(adamw_reference_configs, adamw_reference),
        golden: maps(&["schedulefree_adamw"], adamw_golden),
    };

    const MAX_STEP: u64 = SF_MAX_STEP;

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            (any_valid::lr(), interpolation(), any_valid::beta()),
            (any_valid::eps(), any_valid::weight_decay(), any::<bool>()),
            schedule(),
        )
            .prop_map(|((lr, b1, b2), (eps, wd, maximize), s)| {
                adamw_config(((lr, b1, b2, eps), s, wd, maximize))
            })
            .boxed()
    }

    crate::own_call!(ScheduleFreeAdamw, |exec, w, state, g, c, step| {
        let [z, v] = state.as_mut_slice() else {
            unreachable!("Schedule-Free AdamW has two state buffers")
        };
        exec.schedulefree_adamw_step(w, z, v, g, c, step)
    });
}

impl Case for ScheduleFreeSgdCase {
    const CASE: OptimizerCase = OptimizerCase {
        name: "Schedule-Free SGD",
        random: random_sgd,
        refused: || {
            vec![
                refuse(
                    ScheduleFreeSgd::builder(0.1).momentum(0.0).build(),
                    "momentum",
                ),
                refuse(
                    ScheduleFreeSgd::builder(0.1).momentum(1.0).build(),
                    "momentum",
                ),
                refuse(
                    ScheduleFreeSgd::builder(0.1)
                        .weight_decay(WeightDecay::Decoupled(0.01))
                        .build(),
                    "weight_decay",
                ),
                refuse(ScheduleFreeSgd::builder(f64::NAN).build(), "lr"),
                refuse(ScheduleFreeSgd::builder(0.1).r(f64::NAN).build(), "r"),
            ]
        },
        bad_calls: || {
            vec![
                bad(
                    &[40, 37, 40],
                    &["schedulefree_sgd_step", "z", "37"],
                    |e, b| sgd(e, b, 2),
                ),
                bad(&[40, 40, 3], &["gradient", "3"], |e, b| sgd(e, b, 1)),
                bad(&[40, 40, 40], &["step 0"], |e, b| sgd(e, b, 0)),
            ]
        },
        reference: Reference::new(sgd_reference_configs, sgd_reference),
        golden: maps(&["schedulefree_sgd"], sgd_golden),
    };

    const MAX_STEP: u64 = SF_MAX_STEP;

    fn configs() -> BoxedStrategy<Optimizer> {
        (
            any_valid::lr(),
            interpolation(),
            l2_or_none(),
            any::<bool>(),
            schedule(),
        )
            .prop_map(|(lr, b, wd, maximize, s)| sgd_config((lr, b, s, wd, maximize)))
            .boxed()
    }

    crate::own_call!(ScheduleFreeSgd, |exec, w, state, g, c, step| {
        let [z] = state.as_mut_slice() else {
            unreachable!("Schedule-Free SGD has one state buffer")
        };
        exec.schedulefree_sgd_step(w, z, g, c, step)
    });
}

/// The property tests' steps stay below 10^5: the sum of the averaging weights takes `t` terms
/// on each call out of sequence (and every new config is one), which at the suite's ten million
/// would dominate its time under emulation; past the warm-up a step's only difference is the
/// value of `c`.
const SF_MAX_STEP: u64 = 100_000;

/// `(warmup_steps, r, weight_lr_power)`.
type Schedule = (u64, f64, f64);

/// The interpolation `beta1` / `momentum`: in `(0, 1)`, the edges near included.
fn interpolation() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.9f64), Just(1e-30), Just(0.999_999), 1e-3f64..0.999]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    (
        prop_oneof![Just(0u64), 1u64..20],
        prop_oneof![Just(0.0f64), 0.0f64..8.0],
        prop_oneof![Just(2.0f64), Just(0.0), 0.0f64..4.0],
    )
}

fn l2_or_none() -> impl Strategy<Value = WeightDecay> {
    prop_oneof![
        Just(WeightDecay::None),
        (-6.0f64..0.0).prop_map(|e| WeightDecay::L2(10f64.powf(e)))
    ]
}

/// Schedule-Free AdamW at lr 1e-3 through `schedulefree_adamw_step`.
fn adamw(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = ScheduleFreeAdamw::builder(1e-3).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [z, v] = s.as_mut_slice() else {
        unreachable!("two state buffers")
    };
    exec.schedulefree_adamw_step(w, z, v, g, &config, step)
}

/// Schedule-Free SGD at lr 0.1 through `schedulefree_sgd_step`.
fn sgd(exec: &Executor, buffers: &mut [Vec<f32>], step: u64) -> Result<(), Error> {
    let config = ScheduleFreeSgd::builder(0.1).build().unwrap();
    let (w, mut s, g) = parts(buffers);
    let [z] = s.as_mut_slice() else {
        unreachable!("one state buffer")
    };
    exec.schedulefree_sgd_step(w, z, g, &config, step)
}

type AdamwOptions = ((f64, f64, f64, f64), Schedule, WeightDecay, bool);

fn adamw_config(((lr, b1, b2, eps), (warmup, r, p), wd, maximize): AdamwOptions) -> Optimizer {
    crate::built_with!(
        ScheduleFreeAdamw::builder(lr)
            .betas(b1, b2)
            .eps(eps)
            .warmup_steps(warmup)
            .r(r)
            .weight_lr_power(p),
        wd,
        maximize
    )
}

type SgdOptions = (f64, f64, Schedule, WeightDecay, bool);

fn sgd_config((lr, b, (warmup, r, p), wd, maximize): SgdOptions) -> Optimizer {
    crate::built_with!(
        ScheduleFreeSgd::builder(lr)
            .momentum(b)
            .warmup_steps(warmup)
            .r(r)
            .weight_lr_power(p),
        wd,
        maximize
    )
}

fn random_schedule(rng: &mut Rng) -> Schedule {
    (
        pick(rng, &[0, 3, 100]),
        pick(rng, &[0.0, 0.5, 2.0]),
        pick(rng, &[2.0, 0.0, 1.0]),
    )
}

fn random_adamw(rng: &mut Rng) -> Optimizer {
    adamw_config((
        (
            lr(rng),
            pick(rng, &[0.9, 0.5, 0.99]),
            beta(rng),
            pick(rng, &[1e-8, 1e-3, 0.5]),
        ),
        random_schedule(rng),
        weight_decay(rng),
        flag(rng),
    ))
}

fn random_sgd(rng: &mut Rng) -> Optimizer {
    let wd = match weight_decay(rng) {
        WeightDecay::Decoupled(wd) => WeightDecay::L2(wd),
        other => other,
    };
    sgd_config((
        lr(rng),
        pick(rng, &[0.9, 0.5, 0.99]),
        random_schedule(rng),
        wd,
        flag(rng),
    ))
}

/// The reference tests' schedules: warm-ups that end before, at or after the step.
fn reference_schedule() -> impl Strategy<Value = Schedule> {
    (
        prop_oneof![Just(0u64), 1u64..100],
        prop_oneof![Just(0.0f64), 0.0f64..3.0],
        prop_oneof![Just(2.0f64), 0.0f64..4.0],
    )
}

fn reference_steps() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), 2u64..50, 50u64..20_000]
}

fn adamw_reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            (
                prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
                prop_oneof![Just(0.9f64), 0.05f64..0.999],
                prop_oneof![Just(0.0f64), Just(0.999), 0.0f64..0.9999],
                prop_oneof![Just(0.5f64), (-10.0f64..-3.0).prop_map(|e| 10f64.powf(e))],
            ),
            reference_schedule(),
            reference_weight_decay(),
            any::<bool>(),
        ),
        reference_steps(),
        adamw_config,
    )
}

fn sgd_reference_configs() -> BoxedStrategy<(Optimizer, u64, u64)> {
    with_steps(
        (
            prop_oneof![Just(0.0f64), (-5.0f64..-0.15).prop_map(|e| 10f64.powf(e))],
            prop_oneof![Just(0.9f64), 0.05f64..0.999],
            reference_schedule(),
            prop_oneof![
                Just(WeightDecay::None),
                (-5.0f64..-0.5).prop_map(|e| WeightDecay::L2(10f64.powf(e)))
            ],
            any::<bool>(),
        ),
        reference_steps(),
        sgd_config,
    )
}

/// The schedule of Defazio et al. (2024) as `schedulefree` computes it: `lr_t` (the linear
/// warm-up), and `c = weight_t / sum of weight_1..weight_t` with `weight_j = j^r * lr_j^p`
/// (the platform's `powf`), 0 when the sum is 0.
fn sf_schedule(lr: f64, (warmup, r, p): Schedule, step: u64) -> (f64, f64) {
    // The reference is called once per element: the last schedule is kept.
    type Key = (u64, u64, u64, u64, u64);
    thread_local! {
        static LAST: std::cell::Cell<Option<(Key, (f64, f64))>> = const { std::cell::Cell::new(None) };
    }
    let key = (lr.to_bits(), warmup, r.to_bits(), p.to_bits(), step);
    if let Some((k, v)) = LAST.get()
        && k == key
    {
        return v;
    }
    let lr_at = |j: u64| {
        if j <= warmup {
            lr * j as f64 / warmup as f64
        } else {
            lr
        }
    };
    let weight = |j: u64| (j as f64).powf(r) * lr_at(j).powf(p);
    let sum: f64 = (1..=step).map(weight).sum();
    let c = if sum == 0.0 { 0.0 } else { weight(step) / sum };
    let value = (lr_at(step), c);
    LAST.set(Some((key, value)));
    value
}

/// The moves of `y` and `z` from `u` (with its error), shared by both references.
///
/// The bound (`K = 16`): the interpolation `y1 = y + c (z - y)` as PyTorch's lerp carries
/// `K*u*(|y| + |z| + c|z - y|)` (the coefficient `c` rounded to f32 included); `y = y1 + s*u`
/// with `s = lr_t (b (1 - c) - 1)` carries `K*u*(|y1| + |s u|) + |s| err(u)`; `z - lr_t u`
/// carries `K*u*(|z| + lr_t |u|) + lr_t err(u)`.
fn moves(y: f64, z: f64, u: f64, u_err: f64, lr_t: f64, c: f64, b: f64) -> (f64, f64, f64, f64) {
    let y1 = y + c * (z - y);
    let y1_err = K * U * (y.abs() + z.abs() + c * (z - y).abs());
    let s = lr_t * (b * (1.0 - c) - 1.0);
    let y_new = y1 + s * u;
    let y_err = y1_err + K * U * (y1.abs() + (s * u).abs()) + s.abs() * u_err;
    let z_new = z - lr_t * u;
    let z_err = K * U * (z.abs() + lr_t * u.abs()) + lr_t * u_err;
    (y_new, y_err, z_new, z_err)
}

/// The sign and the L2 term of the gradient (the decoupled decay of Schedule-Free AdamW is
/// added to the normalized gradient instead).
fn gradient(wd: WeightDecay, maximize: bool, y: f64, g: f64) -> (f64, f64) {
    let g_sign = if maximize { -g } else { g };
    match wd {
        WeightDecay::L2(l2) => (g_sign + l2 * y, g.abs() + (l2 * y).abs()),
        _ => (g_sign, g.abs()),
    }
}

/// Schedule-Free AdamW (Defazio et al. 2024) as `schedulefree` computes it: `z` starts as the
/// weights (step 1 does not read it, nor `v`), `v` Adam's second moment, `u = g / (sqrt(v /
/// (1 - beta2^t)) + eps) + wd * y`, then the moves.
///
/// The bound: `v` as Adam's, `K*u*(beta2*v + (1-beta2)*g^2)`; the denominator `d` the error
/// of the root (`err(v)/(2 sqrt(v))`, or `sqrt(err(v))` at `v = 0`) scaled by
/// `1/sqrt(1 - beta2^t)`, plus `K*u*d`; `q = g/d` carries `K*u*(|g|/d + |q|) + |q| err(d)/d`
/// (`|g|` the magnitude sum of the gradient with its L2 term); `u = q + wd*y` `K*u*|wd y|` more.
fn adamw_reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::ScheduleFreeAdamw(c) = config else {
        unreachable!("the Schedule-Free AdamW case")
    };
    let ((b1, b2), eps) = (c.betas(), c.eps());
    let s = (c.warmup_steps(), c.r(), c.weight_lr_power());
    let (lr_t, cc) = sf_schedule(c.lr(), s, step);
    let (ge, gm) = gradient(c.weight_decay(), c.maximize(), w, g);
    let (z, v) = if step == 1 {
        (w, 0.0)
    } else {
        (state[0], state[1])
    };
    let v_new = b2 * v + (1.0 - b2) * ge * ge;
    let v_err = K * U * (b2 * v + (1.0 - b2) * gm * gm);
    let k = 1.0 / (1.0 - b2.powf(step as f64)).sqrt();
    let denom = v_new.sqrt() * k + eps;
    let sqrt_err = if v_new > 0.0 {
        v_err / (2.0 * v_new.sqrt())
    } else {
        v_err.sqrt()
    };
    let d_err = sqrt_err * k + K * U * denom;
    let q = ge / denom;
    let q_err = K * U * (gm / denom + q.abs()) + q.abs() * d_err / denom;
    let dw = match c.weight_decay() {
        WeightDecay::Decoupled(d) => d * w,
        _ => 0.0,
    };
    let u = q + dw;
    let u_err = q_err + K * U * (q.abs() + dw.abs());
    let (y_new, y_err, z_new, z_err) = moves(w, z, u, u_err, lr_t, cc, b1);
    want(y_new, y_err, vec![(z_new, z_err), (v_new, v_err)])
}

/// Schedule-Free SGD (Defazio et al. 2024) as `schedulefree` computes it: `z` starts as the
/// weights, `u` the gradient with its L2 term (its error `K*u*|g|`), then the moves.
fn sgd_reference(config: &Optimizer, w: f64, state: &[f64], g: f64, step: u64) -> Want {
    let Optimizer::ScheduleFreeSgd(c) = config else {
        unreachable!("the Schedule-Free SGD case")
    };
    let s = (c.warmup_steps(), c.r(), c.weight_lr_power());
    let (lr_t, cc) = sf_schedule(c.lr(), s, step);
    let (u, gm) = gradient(c.weight_decay(), c.maximize(), w, g);
    let z = if step == 1 { w } else { state[0] };
    let (y_new, y_err, z_new, z_err) = moves(w, z, u, K * U * gm, lr_t, cc, c.momentum());
    want(y_new, y_err, vec![(z_new, z_err)])
}

/// The warm-up, a whole number of steps.
fn warmup(h: &mut Hyper) -> Result<u64, String> {
    let steps = h.num("warmup_steps", Some(0.0))?;
    if steps >= 0.0 && steps.fract() == 0.0 {
        Ok(steps as u64)
    } else {
        Err(format!("warmup_steps {steps} is not a whole number"))
    }
}

/// schedulefree.AdamWScheduleFree(lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
/// warmup_steps=0, r=0, weight_lr_power=2): its decay is the crate's decoupled one.
fn adamw_golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
    let wd = h.num("weight_decay", Some(0.0))?;
    let config = ScheduleFreeAdamw::builder(h.num("lr", Some(0.0025))?)
        .betas(b1, b2)
        .eps(h.num("eps", Some(1e-8))?)
        .warmup_steps(warmup(h)?)
        .r(h.num("r", Some(0.0))?)
        .weight_lr_power(h.num("weight_lr_power", Some(2.0))?)
        .weight_decay(decay(wd, true))
        .build();
    Mapped::new(built(config)?, &["z", "exp_avg_sq"])
}

/// schedulefree.SGDScheduleFree(lr, momentum=0.9, weight_decay=0, warmup_steps=0, r=0,
/// weight_lr_power=2): its decay is the crate's L2 one.
fn sgd_golden(_name: &str, h: &mut Hyper) -> Result<Mapped, String> {
    let wd = h.num("weight_decay", Some(0.0))?;
    let config = ScheduleFreeSgd::builder(h.num("lr", None)?)
        .momentum(h.num("momentum", Some(0.9))?)
        .warmup_steps(warmup(h)?)
        .r(h.num("r", Some(0.0))?)
        .weight_lr_power(h.num("weight_lr_power", Some(2.0))?)
        .weight_decay(decay(wd, false))
        .build();
    Mapped::new(built(config)?, &["z"])
}
