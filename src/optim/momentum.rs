//! SGD with momentum, in the three conventions in use, and plain SGD.
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

use super::{GradientIn, WeightDecay};
use crate::Executor;
use crate::arch::Lanes;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, non_negative, same_len, unit_interval_closed, unit_interval_open};
use crate::executor::default_executor;
use crate::stream::{Buffers, Update};

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
    form: MomentumForm,
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: WeightDecay,
    maximize: bool,
}

/// Collects the options of a [`Momentum`] config; [`build`](MomentumBuilder::build) checks
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct MomentumBuilder {
    config: Momentum,
}

impl Momentum {
    /// PyTorch's heavy-ball momentum (`torch.optim.SGD(lr, momentum)`); see
    /// [`MomentumForm::HeavyBall`].
    ///
    /// With `momentum` 0 the formula still holds as written (`v = (1-dampening)*g`,
    /// `w -= lr*v`); PyTorch keeps no buffer in that case and ignores dampening, which is what
    /// [`Sgd`] with [`sgd_step`] does.
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
                form,
                lr,
                momentum,
                dampening: 0.0,
                nesterov: false,
                weight_decay: WeightDecay::None,
                maximize: false,
            },
        }
    }

    /// The convention.
    pub fn form(&self) -> MomentumForm {
        self.form
    }
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
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
    /// The weight decay.
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
    }
    /// Whether the objective is maximized (the gradient is negated).
    pub fn maximize(&self) -> bool {
        self.maximize
    }

    /// Changes the learning rate (for a schedule), checking it as `build` does.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        non_negative("lr", lr)?;
        self.lr = lr;
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("lr", self.lr)?;
        unit_interval_open("momentum", self.momentum)?;
        unit_interval_closed("dampening", self.dampening)?;
        self.weight_decay.validate()?;
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
        let (c, a) = match self.form {
            MomentumForm::HeavyBall => ((1.0 - self.dampening) as f32, self.lr as f32),
            MomentumForm::LrInVelocity => (self.lr as f32, 1.0),
            MomentumForm::MovingAverage => ((1.0 - self.momentum) as f32, self.lr as f32),
        };
        MomentumUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
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
    /// Weight decay, L2 or decoupled.
    pub fn weight_decay(mut self, weight_decay: WeightDecay) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
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

/// A validated configuration of plain SGD (no velocity): `w -= lr * g`, with optional weight
/// decay and maximize, as `torch.optim.SGD` with `momentum=0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    lr: f64,
    weight_decay: WeightDecay,
    maximize: bool,
}

impl Sgd {
    /// Plain SGD with learning rate `lr` (checked: finite and `>= 0`).
    pub fn new(lr: f64) -> Result<Sgd, Error> {
        non_negative("lr", lr)?;
        Ok(Sgd {
            lr,
            weight_decay: WeightDecay::None,
            maximize: false,
        })
    }
    /// The same config with weight decay, L2 or decoupled (checked: finite and `>= 0`).
    pub fn with_weight_decay(self, weight_decay: WeightDecay) -> Result<Sgd, Error> {
        weight_decay.validate()?;
        Ok(Sgd {
            weight_decay,
            ..self
        })
    }
    /// The same config, maximizing the objective (the gradient is negated).
    pub fn with_maximize(self, maximize: bool) -> Sgd {
        Sgd { maximize, ..self }
    }
    /// Changes the learning rate (for a schedule), checking it.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        non_negative("lr", lr)?;
        self.lr = lr;
        Ok(())
    }
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// The weight decay.
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
    }
    /// Whether the objective is maximized.
    pub fn maximize(&self) -> bool {
        self.maximize
    }

    pub(crate) fn update(&self, scale: f64) -> SgdUpdate {
        SgdUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
            lr: self.lr as f32,
        }
    }
}

/// The coefficients of one plain SGD step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdUpdate {
    input: GradientIn,
    lr: f32,
}

impl Update<0, 0> for SgdUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        state: [S::f32s; 0],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 0], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        (
            simd.mul_add_f32s(simd.splat_f32s(-self.lr), g, w),
            state,
            [],
        )
    }
}

impl Executor {
    /// One step of SGD with momentum on weights `w`, velocity `v` and gradient `g`, of any
    /// element types (for example bf16 weights and gradient with an `f32` velocity).
    ///
    /// `step` counts from 1; in the PyTorch form step 1 sets `v = g` without reading `v`.
    /// Fails, writing nothing, if the lengths differ or `step` is 0.
    pub fn momentum_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        v: &mut [T],
        g: &[G],
        config: &Momentum,
        step: u64,
    ) -> Result<(), Error> {
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        let update = config.update(step == 1, self.gradient_multiplier());
        self.momentum_with(update, "momentum_step", w, v, g, step)
    }

    fn momentum_with<W: Element, T: Element, G: Element>(
        &self,
        update: MomentumUpdate,
        call: &'static str,
        w: &mut [W],
        v: &mut [T],
        g: &[G],
        step: u64,
    ) -> Result<(), Error> {
        same_len(call, "velocity", v.len(), w.len())?;
        same_len(call, "gradient", g.len(), w.len())?;
        self.run_elementwise(update, Buffers::new(w, [v], g), step);
        Ok(())
    }

    /// One step of plain SGD on weights `w` and gradient `g`, of any element types; `step`
    /// counts from 1 (it keys stochastic rounding).
    /// Fails, writing nothing, if the lengths differ or `step` is 0.
    pub fn sgd_step<W: Element, G: Element>(
        &self,
        w: &mut [W],
        g: &[G],
        config: &Sgd,
        step: u64,
    ) -> Result<(), Error> {
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        self.sgd_with(
            config.update(self.gradient_multiplier()),
            "sgd_step",
            w,
            g,
            step,
        )
    }

    fn sgd_with<W: Element, G: Element>(
        &self,
        update: SgdUpdate,
        call: &'static str,
        w: &mut [W],
        g: &[G],
        step: u64,
    ) -> Result<(), Error> {
        same_len(call, "gradient", g.len(), w.len())?;
        // Plain SGD keeps no state; the state type is irrelevant.
        self.run_elementwise(update, Buffers::<W, f32, G, W, 0, 0>::new(w, [], g), step);
        Ok(())
    }
}

/// One step of SGD with momentum with the default [`Executor`], for any mix of element types.
///
/// See [`Executor::momentum_step`]; this twin returns the error instead of panicking.
pub fn try_momentum_step<W: Element, T: Element, G: Element>(
    w: &mut [W],
    v: &mut [T],
    g: &[G],
    config: &Momentum,
    step: u64,
) -> Result<(), Error> {
    Executor::new()?.momentum_step(w, v, g, config, step)
}

/// One step of SGD with momentum with the default [`Executor`], for any mix of element types.
///
/// ```
/// use optkern::{Momentum, bf16};
///
/// // bf16 weights and gradients with an f32 velocity.
/// let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
/// let mut w = vec![bf16::from_f32(1.0); 1000];
/// let mut v = vec![0.0f32; 1000];
/// let g = vec![bf16::from_f32(0.5); 1000];
/// optkern::momentum_step(&mut w, &mut v, &g, &config, 1);
/// assert_eq!(v[0], 0.5);
/// assert_eq!(w[0], bf16::from_f32(0.95));
/// ```
///
/// # Panics
/// If the lengths differ, `step` is 0, or `OPTKERN_BACKEND` is invalid; nothing is written
/// then. [`try_momentum_step`] returns the error instead.
pub fn momentum_step<W: Element, T: Element, G: Element>(
    w: &mut [W],
    v: &mut [T],
    g: &[G],
    config: &Momentum,
    step: u64,
) {
    if let Err(e) = default_executor().momentum_step(w, v, g, config, step) {
        panic!("optkern::{e}");
    }
}

/// One step of plain SGD with the default [`Executor`]; returns the error instead of
/// panicking. See [`Executor::sgd_step`].
pub fn try_sgd_step<W: Element, G: Element>(
    w: &mut [W],
    g: &[G],
    config: &Sgd,
    step: u64,
) -> Result<(), Error> {
    Executor::new()?.sgd_step(w, g, config, step)
}

/// One step of plain SGD with the default [`Executor`], for any mix of element types.
///
/// # Panics
/// If the lengths differ or `OPTKERN_BACKEND` is invalid; nothing is written then.
/// [`try_sgd_step`] returns the error instead.
pub fn sgd_step<W: Element, G: Element>(w: &mut [W], g: &[G], config: &Sgd, step: u64) {
    if let Err(e) = default_executor().sgd_step(w, g, config, step) {
        panic!("optkern::{e}");
    }
}

/// The fixed-type calls: every buffer of one element type, PyTorch's plain heavy ball.
macro_rules! fixed_type_calls {
    ($t:ty, $name:literal, $momentum:ident, $try_momentum:ident, $sgd:ident, $try_sgd:ident) => {
        #[doc = concat!("Heavy-ball momentum on ", $name, " buffers: `v = mu*v + g; w -= lr*v`.")]
        ///
        /// PyTorch's `SGD(lr, momentum=mu)` without dampening, Nesterov or weight decay: with
        /// `v` starting at zero this follows PyTorch's trajectory. Computes in `f32` and rounds
        /// each stored value to nearest even. Uses the default [`Executor`].
        ///
        /// # Panics
        /// If `v` or `g` is not as long as `w`, `lr` is not finite and `>= 0`, `mu` is not in
        /// `[0, 1)`, or `OPTKERN_BACKEND` is invalid. Nothing is written then.
        #[doc = concat!("[`", stringify!($try_momentum), "`] returns the error instead.")]
        pub fn $momentum(w: &mut [$t], v: &mut [$t], g: &[$t], lr: f32, mu: f32) {
            if let Err(e) = $try_momentum(w, v, g, lr, mu) {
                panic!("optkern::{e}");
            }
        }

        #[doc = concat!("[`", stringify!($momentum), "`], returning an error instead of panicking.")]
        pub fn $try_momentum(
            w: &mut [$t],
            v: &mut [$t],
            g: &[$t],
            lr: f32,
            mu: f32,
        ) -> Result<(), Error> {
            let exec = Executor::new()?;
            let update = Momentum::heavy_ball(lr.into(), mu.into()).build()?.update(false, 1.0);
            exec.momentum_with(update, stringify!($momentum), w, v, g, 1)
        }

        #[doc = concat!("Plain SGD on ", $name, " buffers: `w -= lr*g`.")]
        ///
        /// Uses the default [`Executor`].
        ///
        /// # Panics
        /// If `g` is not as long as `w`, `lr` is not finite and `>= 0`, or `OPTKERN_BACKEND`
        /// is invalid. Nothing is written then.
        #[doc = concat!("[`", stringify!($try_sgd), "`] returns the error instead.")]
        pub fn $sgd(w: &mut [$t], g: &[$t], lr: f32) {
            if let Err(e) = $try_sgd(w, g, lr) {
                panic!("optkern::{e}");
            }
        }

        #[doc = concat!("[`", stringify!($sgd), "`], returning an error instead of panicking.")]
        pub fn $try_sgd(w: &mut [$t], g: &[$t], lr: f32) -> Result<(), Error> {
            let exec = Executor::new()?;
            let update = Sgd::new(lr.into())?.update(1.0);
            exec.sgd_with(update, stringify!($sgd), w, g, 1)
        }
    };
}

fixed_type_calls!(
    f32,
    "`f32`",
    momentum_step_f32,
    try_momentum_step_f32,
    sgd_step_f32,
    try_sgd_step_f32
);
fixed_type_calls!(
    f16,
    "`f16`",
    momentum_step_f16,
    try_momentum_step_f16,
    sgd_step_f16,
    try_sgd_step_f16
);
fixed_type_calls!(
    bf16,
    "`bf16`",
    momentum_step_bf16,
    try_momentum_step_bf16,
    sgd_step_bf16,
    try_sgd_step_bf16
);
