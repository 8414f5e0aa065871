//! RMSprop (Hinton's lecture notes; PyTorch's `RMSprop`, with what Keras does differently).
//!
//! One step:
//!
//! ```text
//! g   = (maximize ? -g : g) + l2 * w            (L2: PyTorch's weight_decay)
//! w   = w * (1 - lr * wd)                       (decoupled weight decay: Keras)
//! sq  = alpha * sq + (1 - alpha) * g * g
//! ga  = alpha * ga + (1 - alpha) * g            (centered only)
//! t   = centered ? max(sq - ga * ga, 0) : sq
//! d   = sqrt(t) + eps                           (PyTorch)    or  sqrt(t + eps)  (Keras)
//! without momentum:  w -= lr * g / d
//! with momentum mu:  buf = mu * buf + c * g / d;  w -= a * buf
//! ```
//!
//! where `(c, a)` is `(1, lr)` in the PyTorch form ([`MomentumForm::HeavyBall`]), `(lr, 1)` in
//! the Keras form ([`MomentumForm::LrInVelocity`]) and `(1 - mu, lr)` for
//! [`MomentumForm::MovingAverage`]. The centered variance is clamped at zero: rounding can
//! make `sq - ga*ga` slightly negative where exact arithmetic would not, and its square root
//! would be NaN (PyTorch gives NaN there). A NaN from the inputs still propagates.
//!
//! In `f32`: `sq = fma(1-alpha, g*g, alpha*sq)`, `ga = lerp(ga, g, 1-alpha)` as PyTorch's
//! `grad_avg.lerp_` (`fma(1-alpha, g-ga, ga)` for `alpha > 0.5`),
//! `t = fma(-ga, ga, sq)`, `buf = fma(c, g/d, mu*buf)`, `w = fma(-a, buf, w)`.
//!
//! State per tensor: `square_avg`, then `grad_avg` if centered, then `momentum_buffer` if the
//! momentum is above 0 as the kernels see it (in `f32`: a momentum that rounds to 0 keeps no
//! buffer). Checkpoint record: numbers `lr`, alpha, eps, momentum, weight decay; flags eps
//! inside the root, weight-decay mode, momentum form, centered, maximize.
//!
//! ```
//! use optkern::Rmsprop;
//!
//! let config = Rmsprop::builder(1e-2).build().unwrap();
//! let (mut w, mut sq, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
//! optkern::rmsprop_step(&mut w, &mut sq, None, None, &g, &config, 1);
//! assert!(w[0] < 1.0);
//! ```

use pulp::Simd;

use super::momentum::{MomentumForm, form_code, form_from};
use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag, max_nan};
use super::{elementwise_step, eps_option};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

/// A validated RMSprop configuration. Build it with [`Rmsprop::builder`], then
/// [`RmspropBuilder::build`].
///
/// ```
/// use optkern::{MomentumForm, Rmsprop};
///
/// // torch.optim.RMSprop(lr=1e-2, alpha=0.9, centered=True, momentum=0.9)
/// let torch = Rmsprop::builder(1e-2).alpha(0.9).centered(true).momentum(0.9).build()?;
/// // keras.optimizers.RMSprop(learning_rate=1e-3, rho=0.9, momentum=0.5, epsilon=1e-7)
/// let keras = Rmsprop::builder(1e-3)
///     .alpha(0.9)
///     .eps(1e-7)
///     .eps_inside_sqrt(true)
///     .momentum(0.5)
///     .momentum_form(MomentumForm::LrInVelocity)
///     .build()?;
/// assert!(torch.centered() && !keras.centered());
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rmsprop {
    common: Common,
    alpha: f64,
    eps: f64,
    eps_inside_sqrt: bool,
    momentum: f64,
    momentum_form: MomentumForm,
    centered: bool,
}

/// Collects the options of an [`Rmsprop`] config; [`build`](RmspropBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct RmspropBuilder {
    config: Rmsprop,
}

common_options!(Rmsprop, RmspropBuilder);
eps_option!(Rmsprop, RmspropBuilder);

impl Rmsprop {
    /// RMSprop with PyTorch's defaults: `alpha = 0.99`, `eps = 1e-8` outside the square root,
    /// no momentum, not centered, no weight decay.
    pub fn builder(lr: f64) -> RmspropBuilder {
        RmspropBuilder {
            config: Rmsprop {
                common: Common::new(lr),
                alpha: 0.99,
                eps: 1e-8,
                eps_inside_sqrt: false,
                momentum: 0.0,
                momentum_form: MomentumForm::HeavyBall,
                centered: false,
            },
        }
    }

    /// The smoothing constant (Keras' `rho`).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// Whether epsilon is added inside the square root (Keras) rather than after it (PyTorch).
    pub fn eps_inside_sqrt(&self) -> bool {
        self.eps_inside_sqrt
    }
    /// The momentum (0: none, and no momentum buffer).
    pub fn momentum(&self) -> f64 {
        self.momentum
    }
    /// How the momentum buffer is formed.
    pub fn momentum_form(&self) -> MomentumForm {
        self.momentum_form
    }
    /// Whether the variance is centered (a `grad_avg` buffer is kept).
    pub fn centered(&self) -> bool {
        self.centered
    }
    /// Whether a momentum buffer is kept: the momentum is above 0 in `f32`, the precision
    /// the kernels use. Decided here only.
    pub fn has_momentum_buffer(&self) -> bool {
        self.momentum as f32 > 0.0
    }

    /// The config of the quick calls (`rmsprop_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn rmsprop_quick(lr: f32) -> Result<(Rmsprop, u64), Error> {
        Ok((Rmsprop::builder(lr.into()).build()?, 1))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("alpha", self.alpha)?;
        positive("eps", self.eps)?;
        unit_interval_open("momentum", self.momentum)
    }

    /// The coefficients of one step, computed once per call.
    pub(crate) fn update(&self, scale: f64) -> RmspropUpdate {
        let lr = self.common.lr;
        let (c, a) = match self.momentum_form {
            MomentumForm::HeavyBall => (1.0, lr as f32),
            MomentumForm::LrInVelocity => (lr as f32, 1.0),
            MomentumForm::MovingAverage => ((1.0 - self.momentum) as f32, lr as f32),
        };
        RmspropUpdate {
            input: self.common.gradient_in(scale),
            alpha: self.alpha as f32,
            one_minus_alpha: (1.0 - self.alpha) as f32,
            grad_avg: Lerp::new(1.0 - self.alpha),
            eps: self.eps as f32,
            eps_inside_sqrt: self.eps_inside_sqrt,
            centered: self.centered,
            lr: lr as f32,
            momentum: self.momentum as f32,
            with_momentum: self.has_momentum_buffer(),
            c,
            a,
        }
    }
}

impl RmspropBuilder {
    /// The smoothing constant, in `[0, 1)` (Keras calls it `rho`).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.config.alpha = alpha;
        self
    }
    /// Add epsilon inside the square root, `sqrt(t + eps)`, as Keras does.
    pub fn eps_inside_sqrt(mut self, inside: bool) -> Self {
        self.config.eps_inside_sqrt = inside;
        self
    }
    /// Momentum in `[0, 1)`; above 0 a momentum buffer is kept.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.config.momentum = momentum;
        self
    }
    /// How the momentum buffer is formed: PyTorch's (default) or Keras' (the learning rate
    /// inside the buffer).
    pub fn momentum_form(mut self, form: MomentumForm) -> Self {
        self.config.momentum_form = form;
        self
    }
    /// Center the variance with a running average of the gradient (a `grad_avg` buffer).
    pub fn centered(mut self, centered: bool) -> Self {
        self.config.centered = centered;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= alpha < 1`; `eps` finite and `> 0`;
    /// `0 <= momentum < 1`; weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Rmsprop, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one RMSprop step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RmspropUpdate {
    input: GradientIn,
    alpha: f32,
    one_minus_alpha: f32,
    grad_avg: Lerp,
    eps: f32,
    eps_inside_sqrt: bool,
    centered: bool,
    lr: f32,
    momentum: f32,
    /// [`Rmsprop::has_momentum_buffer`], decided once per call rather than per vector.
    with_momentum: bool,
    c: f32,
    a: f32,
}

impl RmspropUpdate {
    /// The whole step. `grad_avg` is used only when centered and `buf` only with momentum;
    /// the caller stores only the buffers it has.
    #[inline(always)]
    fn step<S: Simd>(
        self,
        simd: S,
        w: S::f32s,
        square_avg: S::f32s,
        grad_avg: S::f32s,
        buf: S::f32s,
        g: S::f32s,
    ) -> [S::f32s; 4] {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let (alpha, one_minus_alpha) = (
            simd.splat_f32s(self.alpha),
            simd.splat_f32s(self.one_minus_alpha),
        );
        let sq = simd.mul_add_f32s(
            one_minus_alpha,
            simd.mul_f32s(g, g),
            simd.mul_f32s(alpha, square_avg),
        );
        let (ga, t) = if self.centered {
            let ga = self.grad_avg.apply(simd, grad_avg, g);
            let variance = simd.mul_add_f32s(simd.neg_f32s(ga), ga, sq);
            (ga, max_nan(simd, variance, simd.splat_f32s(0.0)))
        } else {
            (grad_avg, sq)
        };
        let denom = if self.eps_inside_sqrt {
            simd.sqrt_f32s(simd.add_f32s(t, simd.splat_f32s(self.eps)))
        } else {
            simd.add_f32s(simd.sqrt_f32s(t), simd.splat_f32s(self.eps))
        };
        let q = simd.div_f32s(g, denom);
        if self.with_momentum {
            let buf = simd.mul_add_f32s(
                simd.splat_f32s(self.c),
                q,
                simd.mul_f32s(simd.splat_f32s(self.momentum), buf),
            );
            [
                simd.mul_add_f32s(simd.splat_f32s(-self.a), buf, w),
                sq,
                ga,
                buf,
            ]
        } else {
            [
                simd.mul_add_f32s(simd.splat_f32s(-self.lr), q, w),
                sq,
                ga,
                buf,
            ]
        }
    }
}

/// Square average only.
impl Update<1, 0> for RmspropUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [sq]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let zero = simd.splat_f32s(0.0);
        let [w, sq, _, _] = self.step(simd, w, sq, zero, zero, g);
        (w, [sq], [])
    }
}

/// Square average and one more: the gradient average when centered, else the momentum buffer.
impl Update<2, 0> for RmspropUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [sq, x]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        if self.centered {
            let [w, sq, ga, _] = self.step(simd, w, sq, x, simd.splat_f32s(0.0), g);
            (w, [sq, ga], [])
        } else {
            let [w, sq, _, buf] = self.step(simd, w, sq, simd.splat_f32s(0.0), x, g);
            (w, [sq, buf], [])
        }
    }
}

/// Square average, gradient average and momentum buffer.
impl Update<3, 0> for RmspropUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [sq, ga, buf]: [S::f32s; 3],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 3], [S::f32s; 0]) {
        let [w, sq, ga, buf] = self.step(simd, w, sq, ga, buf, g);
        (w, [sq, ga, buf], [])
    }
}

impl OptimizerConfig for Rmsprop {
    const FIELDS: (usize, usize) = (5, 5);
    const FLAG_NAMES: &'static [&'static str] = &[
        "eps_inside_sqrt",
        "weight_decay",
        "momentum_form",
        "centered",
        "maximize",
    ];

    fn state_buffers(&self) -> &'static [&'static str] {
        match (self.centered, self.has_momentum_buffer()) {
            (false, false) => &["square_avg"],
            (true, false) => &["square_avg", "grad_avg"],
            (false, true) => &["square_avg", "momentum_buffer"],
            (true, true) => &["square_avg", "grad_avg", "momentum_buffer"],
        }
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        let b = u8::from;
        (
            vec![self.lr(), self.alpha, self.eps, self.momentum, wd],
            vec![
                b(self.eps_inside_sqrt),
                mode,
                form_code(self.momentum_form),
                b(self.centered),
                b(self.maximize()),
            ],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Rmsprop::builder(nums[0])
            .alpha(nums[1])
            .eps(nums[2])
            .momentum(nums[3])
            .weight_decay(weight_decay_from(flags[1], nums[4])?)
            .eps_inside_sqrt(flag(flags[0])?)
            .momentum_form(form_from(flags[2])?)
            .centered(flag(flags[3])?)
            .maximize(flag(flags[4])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Rmsprop, scale, _| c.update(scale), 1, 2, 3);
}
