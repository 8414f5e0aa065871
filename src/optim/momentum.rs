//! SGD with momentum, in the three conventions in use (plain SGD is [`crate::optim::sgd`]).
//!
//! All three momentum conventions are one kernel, `v = mu*v + c*g; w -= a*d`, with different
//! scalars:
//!
//! | form | velocity | step | used by |
//! |---|---|---|---|
//! | [`MomentumForm::HeavyBall`] | `v = mu*v + (1-dampening)*g` | `w -= lr*d` | PyTorch `SGD` |
//! | [`MomentumForm::LrInVelocity`] | `v = mu*v + lr*g` | `w -= d` | TensorFlow/Keras, Sutskever et al. 2013 |
//! | [`MomentumForm::MovingAverage`] | `v = beta*v + (1-beta)*g` | `w -= lr*d` | "EMA" momentum |
//!
//! where `d = v`, or with Nesterov `d = mu*v + c*g` (the look-ahead, with the new `v`). Before
//! that, the gradient is negated when maximizing and gets the L2 term `wd*w`; or, with decoupled
//! weight decay, the weights shrink by `1 - lr*wd` first. In the PyTorch form, step 1 sets
//! `v = g` without reading `v` (PyTorch creates the buffer from the first gradient).
//!
//! In `f32`, on every backend, a step computes `v = fma(c, g, mu*v)` (the product `mu*v`
//! rounded first, as PyTorch's `buf.mul_(momentum).add_(grad, alpha=1-dampening)` does),
//! `d = fma(mu, v, c*g)` with Nesterov (`c*g` rounded; exact in the PyTorch form, where `c` is 1),
//! and `w = fma(-a, d, w)`.
//!
//! State: one buffer per tensor, `velocity`. Checkpoint record: numbers `lr`, momentum,
//! dampening, weight decay; flags form (0 heavy ball, 1 learning rate in the velocity, 2 moving
//! average), Nesterov, weight-decay mode, maximize.
//!
//! ```
//! use optkern::{Momentum, bf16};
//!
//! // bf16 weights and gradients with an f32 velocity.
//! let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
//! let mut w = vec![bf16::from_f32(1.0); 1000];
//! let mut v = vec![0.0f32; 1000];
//! let g = vec![bf16::from_f32(0.5); 1000];
//! optkern::momentum_step(&mut w, &mut v, &g, &config, 1);
//! assert_eq!(v[0], 0.5);
//! assert_eq!(w[0], bf16::from_f32(0.95));
//! ```

use super::{Common, GradientIn, MALFORMED_FLAG, OptimizerConfig, checked, common_options};
use super::{elementwise_step, flag};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, unit_interval_closed, unit_interval_open};

/// Which momentum convention a [`Momentum`] config follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MomentumForm {
    /// PyTorch's `torch.optim.SGD`: `v = mu*v + (1-dampening)*g; w -= lr*v`, and on step 1
    /// `v = g`. Nesterov: `w -= lr*(g + mu*v)`.
    HeavyBall,
    /// The learning rate inside the velocity (TensorFlow/Keras `SGD`, Sutskever et al. 2013):
    /// `v = mu*v + lr*g; w -= v`. Nesterov: `w -= mu*v + lr*g`. Keras stores the negative of
    /// this velocity (`vel = mu*vel - lr*g; w += vel`).
    LrInVelocity,
    /// The velocity as a moving average of gradients: `v = beta*v + (1-beta)*g; w -= lr*v`.
    /// Nesterov: `w -= lr*(beta*v + (1-beta)*g)`.
    MovingAverage,
}

/// A validated configuration of SGD with momentum. Build it with [`Momentum::heavy_ball`],
/// [`Momentum::lr_in_velocity`] or [`Momentum::moving_average`], then
/// [`MomentumBuilder::build`].
///
/// ```
/// use optkern::{Momentum, WeightDecay};
///
/// // torch.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
/// let sgd = Momentum::heavy_ball(0.05, 0.9)
///     .nesterov(true)
///     .weight_decay(WeightDecay::L2(1e-4))
///     .build()?;
/// assert_eq!(sgd.lr(), 0.05);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    common: Common,
    form: MomentumForm,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
}

/// Collects the options of a [`Momentum`] config; [`build`](MomentumBuilder::build) checks
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct MomentumBuilder {
    config: Momentum,
}

common_options!(Momentum, MomentumBuilder);

impl Momentum {
    /// PyTorch's heavy-ball momentum (`torch.optim.SGD(lr, momentum)`); see
    /// [`MomentumForm::HeavyBall`].
    ///
    /// With `momentum` 0 the formula still holds as written (`v = (1-dampening)*g`,
    /// `w -= lr*v`); PyTorch keeps no buffer in that case and ignores dampening, which is what
    /// [`Sgd`](crate::Sgd) with [`sgd_step`](crate::sgd_step) does.
    pub fn heavy_ball(lr: f64, momentum: f64) -> MomentumBuilder {
        Momentum::builder(MomentumForm::HeavyBall, lr, momentum)
    }

    /// The learning rate inside the velocity, as TensorFlow/Keras do; see
    /// [`MomentumForm::LrInVelocity`].
    pub fn lr_in_velocity(lr: f64, momentum: f64) -> MomentumBuilder {
        Momentum::builder(MomentumForm::LrInVelocity, lr, momentum)
    }

    /// The moving-average form, `v = beta*v + (1-beta)*g; w -= lr*v`; see
    /// [`MomentumForm::MovingAverage`].
    pub fn moving_average(lr: f64, beta: f64) -> MomentumBuilder {
        Momentum::builder(MomentumForm::MovingAverage, lr, beta)
    }

    fn builder(form: MomentumForm, lr: f64, momentum: f64) -> MomentumBuilder {
        MomentumBuilder {
            config: Momentum {
                common: Common::new(lr),
                form,
                momentum,
                dampening: 0.0,
                nesterov: false,
            },
        }
    }

    /// The convention.
    pub fn form(&self) -> MomentumForm {
        self.form
    }
    /// The momentum coefficient (`beta` in the moving-average form).
    pub fn momentum(&self) -> f64 {
        self.momentum
    }
    /// The dampening (PyTorch form only; 0 otherwise).
    pub fn dampening(&self) -> f64 {
        self.dampening
    }
    /// Whether the Nesterov look-ahead is used.
    pub fn nesterov(&self) -> bool {
        self.nesterov
    }

    /// The config of the quick calls (`momentum_step_f32`, ...): PyTorch's heavy ball with
    /// `lr` and `mu`. The quick calls take no step count, so they run as a step after the
    /// first: PyTorch's first-step rule (`v = g`) gives the same result on a velocity that
    /// starts at zero.
    pub(crate) fn momentum_quick(lr: f32, mu: f32) -> Result<(Momentum, u64), Error> {
        Ok((Momentum::heavy_ball(lr.into(), mu.into()).build()?, 2))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("momentum", self.momentum)?;
        unit_interval_closed("dampening", self.dampening)?;
        if self.dampening != 0.0 && self.form != MomentumForm::HeavyBall {
            return Err(Error::IncompatibleOptions {
                reason: "dampening belongs to the PyTorch (heavy-ball) form only",
            });
        }
        if self.nesterov && (self.momentum == 0.0 || self.dampening != 0.0) {
            return Err(Error::IncompatibleOptions {
                reason: "Nesterov momentum requires a momentum > 0 and zero dampening",
            });
        }
        Ok(())
    }

    /// The coefficients of one step, computed once per call (in `f64` where they are not
    /// exact, rounded once to `f32`). `first` applies PyTorch's first-step rule.
    pub(crate) fn update(&self, first: bool, scale: f64) -> MomentumUpdate {
        let lr = self.common.lr;
        let (c, a) = match self.form {
            MomentumForm::HeavyBall => ((1.0 - self.dampening) as f32, lr as f32),
            MomentumForm::LrInVelocity => (lr as f32, 1.0),
            MomentumForm::MovingAverage => ((1.0 - self.momentum) as f32, lr as f32),
        };
        MomentumUpdate {
            input: self.common.gradient_in(scale),
            mu: self.momentum as f32,
            c,
            a,
            first: first && self.form == MomentumForm::HeavyBall,
            nesterov: self.nesterov,
        }
    }
}

impl MomentumBuilder {
    /// PyTorch's dampening: the velocity takes `(1 - dampening) * g` (heavy-ball form only).
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.config.dampening = dampening;
        self
    }
    /// The Nesterov look-ahead.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.config.nesterov = nesterov;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= momentum < 1`; `0 <= dampening <= 1`, and
    /// non-zero only in the heavy-ball form; weight decay finite and `>= 0`; Nesterov only
    /// with `momentum > 0` and no dampening (as PyTorch requires).
    pub fn build(self) -> Result<Momentum, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one momentum step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MomentumUpdate {
    input: GradientIn,
    mu: f32,
    c: f32,
    a: f32,
    first: bool,
    nesterov: bool,
}

impl Update<1, 0> for MomentumUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [v]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let (mu, c) = (simd.splat_f32s(self.mu), simd.splat_f32s(self.c));
        // PyTorch's order: `mu*v` rounded, then `c*g` added with one rounding
        // (`buf.mul_(momentum).add_(grad, alpha=1 - dampening)`).
        let v = if self.first {
            g
        } else {
            simd.mul_add_f32s(c, g, simd.mul_f32s(mu, v))
        };
        let d = if self.nesterov {
            simd.mul_add_f32s(mu, v, simd.mul_f32s(c, g))
        } else {
            v
        };
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.a), d, w);
        (w, [v], [])
    }
}

/// The checkpoint code of a momentum form (also RMSprop's momentum form).
pub(crate) fn form_code(form: MomentumForm) -> u8 {
    match form {
        MomentumForm::HeavyBall => 0,
        MomentumForm::LrInVelocity => 1,
        MomentumForm::MovingAverage => 2,
    }
}

/// A momentum form from its checkpoint code (also RMSprop's momentum form).
pub(crate) fn form_from(code: u8) -> Result<MomentumForm, CheckpointError> {
    match code {
        0 => Ok(MomentumForm::HeavyBall),
        1 => Ok(MomentumForm::LrInVelocity),
        2 => Ok(MomentumForm::MovingAverage),
        _ => Err(MALFORMED_FLAG),
    }
}

impl OptimizerConfig for Momentum {
    const FIELDS: (usize, usize) = (4, 4);
    const FLAG_NAMES: &'static [&'static str] = &["form", "nesterov", "weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["velocity"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.momentum, self.dampening, wd],
            vec![
                form_code(self.form),
                u8::from(self.nesterov),
                mode,
                u8::from(self.maximize()),
            ],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = match form_from(flags[0])? {
            MomentumForm::HeavyBall => Momentum::heavy_ball(nums[0], nums[1]),
            MomentumForm::LrInVelocity => Momentum::lr_in_velocity(nums[0], nums[1]),
            MomentumForm::MovingAverage => Momentum::moving_average(nums[0], nums[1]),
        };
        let builder = builder
            .dampening(nums[2])
            .nesterov(flag(flags[1])?)
            .weight_decay(weight_decay_from(flags[2], nums[3])?)
            .maximize(flag(flags[3])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Momentum, scale, step| c.update(step == 1, scale), 1);
}
