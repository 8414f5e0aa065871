//! Schedule-Free AdamW and Schedule-Free SGD (Defazio et al. 2024, "The Road Less
//! Scheduled"), with the semantics of `schedulefree` 1.4's `AdamWScheduleFree` and
//! `SGDScheduleFree`: the memory-efficient form, where the weights hold the interpolation `y`
//! during training, the state holds `z`, and the average `x` is recovered for evaluation.
//!
//! One step, with `t` the step number (from 1) and `W` the warm-up length:
//!
//! ```text
//! lr_t     = lr * t / W  while t <= W, else lr       (no warm-up: W = 0)
//! weight_t = t^r * lr_t^p                            (p: weight_lr_power; lr_t never falls,
//!                                                     so it is the library's lr_max)
//! c        = weight_t / (weight_1 + ... + weight_t)  (0 when that sum is 0; c = 1 at step 1)
//! z        = y                                       (step 1 only: z starts as the weights)
//!
//! AdamW:  g  = (maximize ? -g : g) + l2 * y          (L2 weight decay)
//!         v  = beta2 * v + (1 - beta2) * g * g
//!         u  = g / (sqrt(v / (1 - beta2^t)) + eps) + wd * y   (decoupled decay, at y)
//!         b  = beta1
//! SGD:    u  = (maximize ? -g : g) + l2 * y          (L2 weight decay, at y)
//!         b  = momentum
//!
//! y = lerp(y, z, c)
//! y = y + lr_t * (b * (1 - c) - 1) * u
//! z = z - lr_t * u
//! ```
//!
//! The evaluation weights `x = lerp(y, z, 1 - 1/b)` and back, `y = lerp(x, z, 1 - b)`, are
//! the calls [`schedulefree_eval`](crate::schedulefree_eval) and
//! [`schedulefree_train`](crate::schedulefree_train) (and the executor's and the stateful
//! optimizer's of the same names), the library's `optimizer.eval()` and `optimizer.train()`.
//! A step must be given `y`: the library refuses a step in eval mode; the crate does not know
//! which weights a caller holds, so keeping them straight is the caller's part (the Python
//! classes track the mode as the library does). Each switch rounds, so `x` and back is `y`
//! only to a unit in the last place.
//!
//! The step's scalars are computed once per call in `f64`, as the library computes them in
//! Python: `lr_t`, `t^r` and `lr_t^p` (`libm`'s `pow`: the same bits on every machine), the
//! sum of the weights added one step after the other as the library adds them (the sums of the
//! last 8 configs are kept per thread, so consecutive steps add one term; a call out of
//! sequence, as the first after loading a checkpoint, adds the terms again: about a
//! millisecond per million steps, twenty with `r > 0`; past `2^20` terms the rest is taken in
//! closed form, the Euler-Maclaurin sum of the powers, to a relative `1e-15` of the library's
//! sum, in time independent of the step), `c`, and the
//! coefficients `lr_t * (b * (1 - c) - 1)` and `lr_t`, each rounded once to `f32`. The sum is a
//! function of the config and the step: the library's running sum and running maximum of
//! `lr_t` are the same numbers as long as the learning rate does not change during the run
//! (a schedule-free run has no schedule); after [`set_lr`](ScheduleFreeAdamw::set_lr) the
//! crate's sum is that of a run with the new rate throughout.
//!
//! In `f32`: `v = fma(1-beta2, g*g, beta2*v)`, `denom = fma(sqrt(v), k, eps)` with `k =
//! 1/sqrt(1 - beta2^t)` (one division per element, no estimate, on every backend), `u =
//! fma(wd, y, g / denom)`, both interpolations as PyTorch's `lerp` (see Adam), then `y =
//! fma(lr_t * (b*(1-c)-1), u, y)` and `z = fma(-lr_t, u, z)`.
//!
//! Weight decay: Schedule-Free AdamW takes the library's decay as
//! [`WeightDecay::Decoupled`] (added to the normalized gradient, at `y`) and also an L2 term
//! (added to the gradient before the second moment); Schedule-Free SGD takes the library's
//! decay as [`WeightDecay::L2`] (the same thing there) and refuses a decoupled one.
//!
//! State: `z` per tensor, and for AdamW `v` (the library's `exp_avg_sq`); neither is read on
//! step 1 (`z` becomes the weights, `v` the first square). Checkpoint record, AdamW: numbers
//! `lr`, beta1, beta2, eps, warm-up steps, r, weight_lr_power, weight decay; flags
//! weight-decay mode, maximize. SGD: numbers `lr`, momentum, warm-up steps, r,
//! weight_lr_power, weight decay; flags weight-decay mode, maximize.

use std::cell::RefCell;

use super::{Common, GradientIn, Lerp, OptimizerConfig, WeightDecay, checked, common_options};
use super::{bias_corrections, elementwise_step, eps_option, flag};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::{Context, TensorStep, Update};
use crate::element::Element;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

/// The warm-up and the averaging weights of a schedule-free optimizer (shared by both).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Schedule {
    warmup: u64,
    r: f64,
    power: f64,
}

/// The largest `r` and `weight_lr_power` accepted: with them, and `lr^p <= 2^400`, the sum of
/// the weights stays finite for every step count a `u64` holds (`t^(r+1) * lr^p < 2^976`).
const MAX_EXPONENT: f64 = 8.0;
const MAX_LR_POWER: f64 = 2.5822498780869086e120; // 2^400

/// The number of sums kept per thread: one per config a caller alternates between (groups
/// with different learning rates), before the oldest is dropped.
const KEPT_SUMS: usize = 8;

/// A sum of weights through a step: `(lr, r, p)` as bits and the warm-up, the step, the sum.
type KeptSum = ((u64, u64, u64, u64), u64, f64);

/// The most terms of the sum of weights added one by one in a call; past them, the rest of
/// the sum is taken in closed form.
const SEQUENTIAL_TERMS: u64 = 1 << 20;

thread_local! {
    /// The last sums of weights computed on this thread, the newest last.
    static LAST_SUMS: RefCell<Vec<KeptSum>> = const { RefCell::new(Vec::new()) };
}

impl Schedule {
    const DEFAULT: Schedule = Schedule {
        warmup: 0,
        r: 0.0,
        power: 2.0,
    };

    fn validate(&self, lr: f64) -> Result<(), Error> {
        for (name, value) in [("r", self.r), ("weight_lr_power", self.power)] {
            if !(0.0..=MAX_EXPONENT).contains(&value) {
                return Err(Error::InvalidHyperparameter {
                    name,
                    value,
                    requirement: "in [0, 8] (so that the sum of the averaging weights stays \
                                  finite for any step count)",
                });
            }
        }
        let top = libm::pow(lr, self.power);
        if top > MAX_LR_POWER {
            return Err(Error::InvalidHyperparameter {
                name: "lr ^ weight_lr_power",
                value: top,
                requirement: "at most 2^400 (so that the sum of the averaging weights stays \
                              finite for any step count)",
            });
        }
        Ok(())
    }

    /// `lr_t` of step `step` (from 1).
    fn lr_at(&self, lr: f64, step: u64) -> f64 {
        if step <= self.warmup {
            lr * (step as f64 / self.warmup as f64)
        } else {
            lr
        }
    }

    /// The averaging weight of step `step`: `t^r * lr_t^p`.
    fn weight(&self, lr: f64, step: u64) -> f64 {
        let t = if self.r == 0.0 {
            1.0
        } else {
            libm::pow(step as f64, self.r)
        };
        t * libm::pow(self.lr_at(lr, step), self.power)
    }

    /// The sum of the weights of steps `1..=step`, added in order.
    fn weight_sum(&self, lr: f64, step: u64) -> f64 {
        let key = (
            lr.to_bits(),
            self.r.to_bits(),
            self.power.to_bits(),
            self.warmup,
        );
        let (mut t, mut sum) = LAST_SUMS.with_borrow_mut(|kept| {
            match kept.iter().position(|(k, t, _)| *k == key && *t <= step) {
                Some(i) => {
                    let (_, t, sum) = kept.remove(i);
                    (t, sum)
                }
                None => (0, 0.0),
            }
        });
        // More than SEQUENTIAL_TERMS terms to add (a first call at a late step, as after
        // loading a checkpoint): the rest in closed form, in time independent of the step.
        if step - t > SEQUENTIAL_TERMS {
            sum += self.closed_form_sum(lr, t + 1, step);
            t = step;
        }
        // The warm-up's weights, then those at the full rate (its power taken once).
        while t < step && t < self.warmup {
            t += 1;
            sum += self.weight(lr, t);
        }
        let top = libm::pow(lr, self.power);
        if self.r == 0.0 {
            while t < step {
                t += 1;
                sum += top;
            }
        } else {
            while t < step {
                t += 1;
                sum += libm::pow(t as f64, self.r) * top;
            }
        }
        LAST_SUMS.with_borrow_mut(|kept| {
            if kept.len() == KEPT_SUMS {
                kept.remove(0);
            }
            kept.push((key, t, sum));
        });
        sum
    }

    /// The weights of steps `a..=b` (`b - a` above [`SEQUENTIAL_TERMS`]) summed by the
    /// Euler-Maclaurin formula: each part is `k * sum of j^s` (the warm-up's `k = (lr/W)^p`,
    /// `s = r + p`; after it `k = lr^p`, `s = r`), and `sum_{j=a}^{b} j^s = (b^(s+1) -
    /// a^(s+1))/(s+1) + (a^s + b^s)/2 + s (b^(s-1) - a^(s-1))/12`, whose remainder (set by the
    /// first terms) is a negligible part of a sum of more than `2^20` terms (the unit test
    /// checks it against the terms added one by one).
    fn closed_form_sum(&self, lr: f64, a: u64, b: u64) -> f64 {
        fn power_sum(s: f64, a: f64, b: f64) -> f64 {
            let integral = (libm::pow(b, s + 1.0) - libm::pow(a, s + 1.0)) / (s + 1.0);
            let ends = (libm::pow(a, s) + libm::pow(b, s)) / 2.0;
            let slope = if s == 0.0 {
                0.0
            } else {
                s * (libm::pow(b, s - 1.0) - libm::pow(a, s - 1.0)) / 12.0
            };
            integral + ends + slope
        }
        let mut sum = 0.0;
        if a <= self.warmup {
            let end = b.min(self.warmup);
            let k = libm::pow(lr / self.warmup as f64, self.power);
            sum += k * power_sum(self.r + self.power, a as f64, end as f64);
        }
        if b > self.warmup {
            let start = a.max(self.warmup + 1);
            sum += libm::pow(lr, self.power) * power_sum(self.r, start as f64, b as f64);
        }
        sum
    }

    /// `(lr_t, c)` of step `step`.
    fn at(&self, lr: f64, step: u64) -> (f64, f64) {
        let sum = self.weight_sum(lr, step);
        let c = if sum == 0.0 {
            0.0
        } else {
            self.weight(lr, step) / sum
        };
        (self.lr_at(lr, step), c)
    }

    fn fields(&self) -> [f64; 3] {
        [self.warmup as f64, self.r, self.power]
    }

    fn from_fields(fields: &[f64]) -> Result<Schedule, CheckpointError> {
        let warmup = fields[0];
        // A whole number of steps, written as `warmup as f64` writes it (no -0).
        if !(0.0..=9007199254740992.0).contains(&warmup)
            || (warmup as u64 as f64).to_bits() != warmup.to_bits()
        {
            return Err(CheckpointError::Malformed {
                reason: "a schedule-free warm-up is not a whole number of steps",
            });
        }
        Ok(Schedule {
            warmup: warmup as u64,
            r: fields[1],
            power: fields[2],
        })
    }
}

/// Checks the interpolation `b` (beta1, momentum): in `(0, 1)`, with `1 - 1/b` (the weight of
/// the evaluation switch) finite in `f32`.
fn interpolation(name: &'static str, b: f64) -> Result<(), Error> {
    unit_interval_open(name, b)?;
    let eval = (1.0 - 1.0 / b) as f32;
    if b > 0.0 && eval.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value: b,
            requirement: "in (0, 1), with 1 - 1/b finite in f32 (the weight that gives the \
                          evaluation weights)",
        })
    }
}

/// Writes the schedule options of a schedule-free config and its builder.
macro_rules! schedule_options {
    ($config:ident, $builder:ident) => {
        impl $config {
            /// The warm-up length in steps (0: none).
            pub fn warmup_steps(&self) -> u64 {
                self.schedule.warmup
            }
            /// The exponent `r` of the step in the averaging weight `t^r * lr_t^p`.
            pub fn r(&self) -> f64 {
                self.schedule.r
            }
            /// The exponent `p` of the learning rate in the averaging weight.
            pub fn weight_lr_power(&self) -> f64 {
                self.schedule.power
            }
            /// `(lr_t, c)` of step `step` (from 1), in `f64`: the warmed-up learning rate and
            /// the averaging weight's share of the sum so far.
            pub fn schedule_at(&self, step: u64) -> (f64, f64) {
                self.schedule.at(self.common.lr, step)
            }
        }

        impl $builder {
            /// A linear warm-up of the learning rate over `steps` steps (the library's
            /// `warmup_steps`; default 0).
            pub fn warmup_steps(mut self, steps: u64) -> Self {
                self.config.schedule.warmup = steps;
                self
            }
            /// The exponent `r` of the step in the averaging weight (default 0; in `[0, 8]`).
            pub fn r(mut self, r: f64) -> Self {
                self.config.schedule.r = r;
                self
            }
            /// The exponent of the learning rate in the averaging weight (the library's
            /// `weight_lr_power`; default 2; in `[0, 8]`, with `lr^p <= 2^400`).
            pub fn weight_lr_power(mut self, power: f64) -> Self {
                self.config.schedule.power = power;
                self
            }
        }
    };
}

/// A validated Schedule-Free AdamW configuration. Build it with
/// [`ScheduleFreeAdamw::builder`], then [`ScheduleFreeAdamwBuilder::build`].
///
/// ```
/// use optkern::{ScheduleFreeAdamw, WeightDecay};
///
/// // schedulefree.AdamWScheduleFree(lr=0.0025, betas=(0.9, 0.999), weight_decay=0.01,
/// //                                warmup_steps=100)
/// let sf = ScheduleFreeAdamw::builder(0.0025)
///     .weight_decay(WeightDecay::Decoupled(0.01))
///     .warmup_steps(100)
///     .build()?;
/// let (mut w, mut z, mut v) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// optkern::schedulefree_adamw_step(&mut w, &mut z, &mut v, &vec![0.5f32; 64], &sf, 1);
/// optkern::schedulefree_eval(&mut w, &z, sf.betas().0); // w now holds x
/// optkern::schedulefree_train(&mut w, &z, sf.betas().0); // and y again
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleFreeAdamw {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
    schedule: Schedule,
}

/// Collects the options of a [`ScheduleFreeAdamw`] config;
/// [`build`](ScheduleFreeAdamwBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct ScheduleFreeAdamwBuilder {
    config: ScheduleFreeAdamw,
}

common_options!(ScheduleFreeAdamw, ScheduleFreeAdamwBuilder);
eps_option!(ScheduleFreeAdamw, ScheduleFreeAdamwBuilder);
schedule_options!(ScheduleFreeAdamw, ScheduleFreeAdamwBuilder);

impl ScheduleFreeAdamw {
    /// Schedule-Free AdamW with the library's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`,
    /// no warm-up, `r = 0`, `weight_lr_power = 2`, no weight decay. (Its default `lr` is
    /// `0.0025`.)
    pub fn builder(lr: f64) -> ScheduleFreeAdamwBuilder {
        ScheduleFreeAdamwBuilder {
            config: ScheduleFreeAdamw {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                schedule: Schedule::DEFAULT,
            },
        }
    }

    /// `(beta1, beta2)`: `beta1` is the interpolation between `x` and `z`.
    pub fn betas(&self) -> (f64, f64) {
        (self.beta1, self.beta2)
    }

    /// The config of the quick calls: the library's defaults with `lr`.
    pub(crate) fn schedulefree_adamw_quick(
        lr: f32,
        step: u64,
    ) -> Result<(ScheduleFreeAdamw, u64), Error> {
        Ok((ScheduleFreeAdamw::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        interpolation("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        self.schedule.validate(self.common.lr)
    }

    fn update(&self, step: u64, scale: f64) -> ScheduleFreeAdamwUpdate {
        let (lr_t, c) = self.schedule_at(step);
        let (_, bc2) = bias_corrections(self.beta1, self.beta2, step);
        let decay = match self.common.weight_decay {
            WeightDecay::Decoupled(wd) => wd as f32,
            _ => 0.0,
        };
        ScheduleFreeAdamwUpdate {
            // The decoupled decay is applied here, not by shrinking the weights.
            input: GradientIn::new(
                self.common.maximize,
                match self.common.weight_decay {
                    WeightDecay::L2(wd) => WeightDecay::L2(wd),
                    _ => WeightDecay::None,
                },
                self.common.lr,
                scale,
            ),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            k: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
            decay,
            moves: Moves::new(lr_t, c, self.beta1),
            first: step == 1,
        }
    }
}

impl ScheduleFreeAdamwBuilder {
    /// `beta1` in `(0, 1)` (the interpolation; `1 - 1/beta1` finite in `f32`) and `beta2` in
    /// `[0, 1)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.config.beta1 = beta1;
        self.config.beta2 = beta2;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 < beta1 < 1` and `0 <= beta2 < 1`; `eps`
    /// finite and `> 0`; weight decay finite and `>= 0` (decoupled: `lr * wd <= 1`); `r` and
    /// `weight_lr_power` in `[0, 8]` with `lr^weight_lr_power <= 2^400`.
    pub fn build(self) -> Result<ScheduleFreeAdamw, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// A validated Schedule-Free SGD configuration. Build it with [`ScheduleFreeSgd::builder`],
/// then [`ScheduleFreeSgdBuilder::build`].
///
/// ```
/// // schedulefree.SGDScheduleFree(lr=0.1, momentum=0.9)
/// let sf = optkern::ScheduleFreeSgd::builder(0.1).build()?;
/// let (mut w, mut z) = (vec![1.0f32; 64], vec![0.0f32; 64]);
/// optkern::schedulefree_sgd_step(&mut w, &mut z, &vec![0.5f32; 64], &sf, 1);
/// // Step 1: c = 1, so y = z - lr * g and z = w - lr * g, both 0.95.
/// assert_eq!((w[0], z[0]), (0.95, 0.95));
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleFreeSgd {
    common: Common,
    momentum: f64,
    schedule: Schedule,
}

/// Collects the options of a [`ScheduleFreeSgd`] config;
/// [`build`](ScheduleFreeSgdBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct ScheduleFreeSgdBuilder {
    config: ScheduleFreeSgd,
}

common_options!(ScheduleFreeSgd, ScheduleFreeSgdBuilder);
schedule_options!(ScheduleFreeSgd, ScheduleFreeSgdBuilder);

impl ScheduleFreeSgd {
    /// Schedule-Free SGD with the library's defaults: `momentum = 0.9`, no warm-up, `r = 0`,
    /// `weight_lr_power = 2`, no weight decay. (The library has no default `lr`.)
    pub fn builder(lr: f64) -> ScheduleFreeSgdBuilder {
        ScheduleFreeSgdBuilder {
            config: ScheduleFreeSgd {
                common: Common::new(lr),
                momentum: 0.9,
                schedule: Schedule::DEFAULT,
            },
        }
    }

    /// The momentum: the interpolation between `x` and `z`.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }

    /// The config of the quick calls: the library's defaults with `lr`.
    pub(crate) fn schedulefree_sgd_quick(
        lr: f32,
        step: u64,
    ) -> Result<(ScheduleFreeSgd, u64), Error> {
        Ok((ScheduleFreeSgd::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        if let WeightDecay::Decoupled(wd) = self.common.weight_decay {
            return Err(Error::InvalidHyperparameter {
                name: "weight_decay",
                value: wd,
                requirement: "L2 or none: Schedule-Free SGD adds its decay to the gradient at \
                              y (the library's weight_decay is WeightDecay::L2)",
            });
        }
        interpolation("momentum", self.momentum)?;
        self.schedule.validate(self.common.lr)
    }

    fn update(&self, step: u64, scale: f64) -> ScheduleFreeSgdUpdate {
        let (lr_t, c) = self.schedule_at(step);
        ScheduleFreeSgdUpdate {
            input: self.common.gradient_in(scale),
            moves: Moves::new(lr_t, c, self.momentum),
            first: step == 1,
        }
    }
}

impl ScheduleFreeSgdBuilder {
    /// The momentum, in `(0, 1)` with `1 - 1/momentum` finite in `f32` (default 0.9).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.config.momentum = momentum;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 < momentum < 1`; weight decay L2 or none,
    /// finite and `>= 0`; `r` and `weight_lr_power` in `[0, 8]` with
    /// `lr^weight_lr_power <= 2^400`.
    pub fn build(self) -> Result<ScheduleFreeSgd, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// How `y` and `z` move, from the normalized gradient `u`: shared by both optimizers.
#[derive(Clone, Copy, Debug)]
struct Moves {
    toward_z: Lerp,
    y_step: f32,
    z_step: f32,
}

impl Moves {
    fn new(lr_t: f64, c: f64, b: f64) -> Moves {
        Moves {
            toward_z: Lerp::new(c),
            y_step: (lr_t * (b * (1.0 - c) - 1.0)) as f32,
            z_step: (-lr_t) as f32,
        }
    }

    /// `(y, z)` after the step, from `y`, `z` and `u`.
    #[inline(always)]
    fn apply<S: Lanes>(self, simd: S, y: S::f32s, z: S::f32s, u: S::f32s) -> (S::f32s, S::f32s) {
        let y = self.toward_z.apply(simd, y, z);
        let y = simd.mul_add_f32s(simd.splat_f32s(self.y_step), u, y);
        let z = simd.mul_add_f32s(simd.splat_f32s(self.z_step), u, z);
        (y, z)
    }
}

/// The coefficients of one Schedule-Free AdamW step.
#[derive(Clone, Copy, Debug)]
struct ScheduleFreeAdamwUpdate {
    input: GradientIn,
    beta2: f32,
    one_minus_beta2: f32,
    k: f32,
    eps: f32,
    /// The decoupled decay (0 for none).
    decay: f32,
    moves: Moves,
    /// Step 1: `z` is the weights, `v` is not read.
    first: bool,
}

impl Update<2, 0> for ScheduleFreeAdamwUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        y: S::f32s,
        [z, v]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, y);
        let g2 = simd.mul_f32s(g, g);
        let (z, v) = if self.first {
            (y, simd.mul_f32s(simd.splat_f32s(self.one_minus_beta2), g2))
        } else {
            let v = simd.mul_add_f32s(
                simd.splat_f32s(self.one_minus_beta2),
                g2,
                simd.mul_f32s(simd.splat_f32s(self.beta2), v),
            );
            (z, v)
        };
        let denom = simd.mul_add_f32s(
            simd.sqrt_f32s(v),
            simd.splat_f32s(self.k),
            simd.splat_f32s(self.eps),
        );
        let u = simd.div_f32s(g, denom);
        // Skipped without decay: an infinite weight would make `0 * y` a NaN.
        let u = if self.decay != 0.0 {
            simd.mul_add_f32s(simd.splat_f32s(self.decay), y, u)
        } else {
            u
        };
        let (y, z) = self.moves.apply(simd, y, z, u);
        (y, [z, v], [])
    }
}

/// The coefficients of one Schedule-Free SGD step.
#[derive(Clone, Copy, Debug)]
struct ScheduleFreeSgdUpdate {
    input: GradientIn,
    moves: Moves,
    /// Step 1: `z` is the weights.
    first: bool,
}

impl Update<1, 0> for ScheduleFreeSgdUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        y: S::f32s,
        [z]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let u = self.input.gradient(simd, g, y);
        let z = if self.first { y } else { z };
        let (y, z) = self.moves.apply(simd, y, z, u);
        (y, [z], [])
    }
}

impl OptimizerConfig for ScheduleFreeAdamw {
    const FIELDS: (usize, usize) = (8, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["z", "v"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        let [warmup, r, power] = self.schedule.fields();
        (
            vec![
                self.lr(),
                self.beta1,
                self.beta2,
                self.eps,
                warmup,
                r,
                power,
                wd,
            ],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let schedule = Schedule::from_fields(&nums[4..7])?;
        let builder = ScheduleFreeAdamw::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .warmup_steps(schedule.warmup)
            .r(schedule.r)
            .weight_lr_power(schedule.power)
            .weight_decay(weight_decay_from(flags[0], nums[7])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(
        |c: &ScheduleFreeAdamw, scale, step| c.update(step, scale),
        2
    );
}

impl OptimizerConfig for ScheduleFreeSgd {
    const FIELDS: (usize, usize) = (6, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["z"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        let [warmup, r, power] = self.schedule.fields();
        (
            vec![self.lr(), self.momentum, warmup, r, power, wd],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let schedule = Schedule::from_fields(&nums[2..5])?;
        let builder = ScheduleFreeSgd::builder(nums[0])
            .momentum(nums[1])
            .warmup_steps(schedule.warmup)
            .r(schedule.r)
            .weight_lr_power(schedule.power)
            .weight_decay(weight_decay_from(flags[0], nums[5])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &ScheduleFreeSgd, scale, step| c.update(step, scale), 1);
}

impl crate::Optimizer {
    /// For a schedule-free optimizer, the interpolation `b` of its weight switch (`beta1` of
    /// Schedule-Free AdamW, `momentum` of Schedule-Free SGD); `None` for any other.
    pub fn schedulefree_beta(&self) -> Option<f64> {
        match self {
            crate::Optimizer::ScheduleFreeAdamw(c) => Some(c.beta1),
            crate::Optimizer::ScheduleFreeSgd(c) => Some(c.momentum),
            _ => None,
        }
    }
}

/// Which weights a switch produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// `x = lerp(y, z, 1 - 1/b)`: the evaluation weights.
    ToEval,
    /// `y = lerp(x, z, 1 - b)`: the training weights.
    ToTrain,
}

/// Checks the interpolation `b` of a switch as the configs check it.
pub(crate) fn check_switch(b: f64) -> Result<(), Error> {
    interpolation("beta", b)
}

/// The switch between `y` and `x`, one interpolation with `z` (the "gradient" slot carries
/// `z`; nothing else is read).
#[derive(Clone, Copy, Debug)]
struct SwitchUpdate {
    lerp: Lerp,
}

impl Update<0, 0> for SwitchUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        _: [S::f32s; 0],
        z: S::f32s,
    ) -> (S::f32s, [S::f32s; 0], [S::f32s; 0]) {
        (self.lerp.apply(simd, w, z), [], [])
    }
}

/// Switches the weights `w` (of equal length to `z`, and `b` valid: checked by the caller) on
/// the context's backend and threads. The weights are rounded to nearest even (stochastic
/// rounding, if the context has it, is for steps only).
pub(crate) fn switch_weights<W: Element, T: Element>(
    ctx: &Context,
    w: &mut [W],
    z: &[T],
    b: f64,
    to: Switch,
) {
    let weight = match to {
        Switch::ToEval => 1.0 - 1.0 / b,
        Switch::ToTrain => 1.0 - b,
    };
    let ctx = Context {
        rounding: None,
        ..*ctx
    };
    let mut tensor = [TensorStep::<W, f32, T>::new(w, Vec::new(), z)];
    ctx.elementwise::<_, _, _, _, _, 0>(
        &mut tensor,
        SwitchUpdate {
            lerp: Lerp::new(weight),
        },
        1,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_sum_is_added_in_order_whatever_the_cache_holds() {
        let sf = ScheduleFreeSgd::builder(0.1)
            .warmup_steps(5)
            .r(0.5)
            .build()
            .unwrap();
        let mut sum = 0.0f64;
        let mut sums = Vec::new();
        for t in 1..=40u64 {
            let lr_t = if t <= 5 { 0.1 * (t as f64 / 5.0) } else { 0.1 };
            sum += libm::pow(t as f64, 0.5) * libm::pow(lr_t, 2.0);
            sums.push(sum);
        }
        // In order, out of order (recomputed), and again in order.
        for t in (1..=40u64).chain([7, 3, 40, 12]).chain(13..=20) {
            let got = sf.schedule.weight_sum(sf.lr(), t);
            assert_eq!(got.to_bits(), sums[t as usize - 1].to_bits(), "step {t}");
        }
        // Two configs in turn (groups with different rates) each keep their own sum.
        let other = ScheduleFreeSgd::builder(0.05).build().unwrap();
        for t in 1..=30u64 {
            let got = sf.schedule.weight_sum(sf.lr(), t);
            assert_eq!(got.to_bits(), sums[t as usize - 1].to_bits(), "step {t}");
            let theirs = other.schedule.weight_sum(other.lr(), t);
            let expected = (0..t).fold(0.0f64, |s, _| s + libm::pow(0.05, 2.0));
            assert_eq!(theirs.to_bits(), expected.to_bits(), "step {t}");
        }
        let (lr_t, c) = sf.schedule_at(1);
        assert_eq!((lr_t, c), (0.1 * (1.0 / 5.0), 1.0));
    }

    #[test]
    fn a_late_first_step_takes_the_closed_form_close_to_the_sum() {
        // Far past 2^20 steps (a checkpoint's count, say) a call returns at once.
        for (warmup, r, p) in [
            (0, 0.0, 2.0),
            (100, 0.5, 2.0),
            (0, 8.0, 8.0),
            (1 << 40, 1.0, 2.0),
        ] {
            let sf = ScheduleFreeSgd::builder(0.1)
                .warmup_steps(warmup)
                .r(r)
                .weight_lr_power(p)
                .build()
                .unwrap();
            let (lr_t, c) = sf.schedule_at(u64::MAX / 2);
            assert!(
                lr_t > 0.0 && c.is_finite() && (0.0..=1.0).contains(&c),
                "{lr_t} {c}"
            );
        }
        // Just past the threshold, against the terms added one by one.
        let sf = ScheduleFreeSgd::builder(0.1)
            .warmup_steps(1000)
            .r(0.5)
            .build()
            .unwrap();
        let t = SEQUENTIAL_TERMS + 5000;
        let closed = sf.schedule.closed_form_sum(0.1, 1, t);
        let added = (1..=t).fold(0.0f64, |s, j| s + sf.schedule.weight(0.1, j));
        assert!(((closed - added) / added).abs() < 1e-12, "{closed} {added}");
    }

    #[test]
    fn a_zero_sum_gives_no_averaging() {
        let sf = ScheduleFreeSgd::builder(0.0).build().unwrap();
        assert_eq!(sf.schedule_at(3), (0.0, 0.0));
    }
}
