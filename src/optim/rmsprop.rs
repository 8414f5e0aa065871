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

use pulp::Simd;

use super::momentum::MomentumForm;
use super::{GradientIn, Lerp, WeightDecay, max_nan, optimizer_calls};
use crate::Executor;
use crate::arch::Lanes;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, non_negative, positive, same_len, unit_interval_open};
use crate::stream::{Buffers, Update};

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
    lr: f64,
    alpha: f64,
    eps: f64,
    eps_inside_sqrt: bool,
    weight_decay: WeightDecay,
    momentum: f64,
    momentum_form: MomentumForm,
    centered: bool,
    maximize: bool,
}

/// Collects the options of an [`Rmsprop`] config; [`build`](RmspropBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct RmspropBuilder {
    config: Rmsprop,
}

impl Rmsprop {
    /// RMSprop with PyTorch's defaults: `alpha = 0.99`, `eps = 1e-8` outside the square root,
    /// no momentum, not centered, no weight decay.
    pub fn builder(lr: f64) -> RmspropBuilder {
        RmspropBuilder {
            config: Rmsprop {
                lr,
                alpha: 0.99,
                eps: 1e-8,
                eps_inside_sqrt: false,
                weight_decay: WeightDecay::None,
                momentum: 0.0,
                momentum_form: MomentumForm::HeavyBall,
                centered: false,
                maximize: false,
            },
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// The smoothing constant (Keras' `rho`).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// Epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }
    /// Whether epsilon is added inside the square root (Keras) rather than after it (PyTorch).
    pub fn eps_inside_sqrt(&self) -> bool {
        self.eps_inside_sqrt
    }
    /// The weight decay.
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
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
    /// Whether the objective is maximized.
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
        unit_interval_open("alpha", self.alpha)?;
        positive("eps", self.eps)?;
        unit_interval_open("momentum", self.momentum)?;
        self.weight_decay.validate()
    }

    /// The coefficients of one step, computed once per call.
    pub(crate) fn update(&self, scale: f64) -> RmspropUpdate {
        let (c, a) = match self.momentum_form {
            MomentumForm::HeavyBall => (1.0, self.lr as f32),
            MomentumForm::LrInVelocity => (self.lr as f32, 1.0),
            MomentumForm::MovingAverage => ((1.0 - self.momentum) as f32, self.lr as f32),
        };
        RmspropUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
            alpha: self.alpha as f32,
            one_minus_alpha: (1.0 - self.alpha) as f32,
            grad_avg: Lerp::new(1.0 - self.alpha),
            eps: self.eps as f32,
            eps_inside_sqrt: self.eps_inside_sqrt,
            centered: self.centered,
            lr: self.lr as f32,
            momentum: self.momentum as f32,
            with_momentum: self.momentum as f32 > 0.0,
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
    /// Epsilon (finite and `> 0`).
    pub fn eps(mut self, eps: f64) -> Self {
        self.config.eps = eps;
        self
    }
    /// Add epsilon inside the square root, `sqrt(t + eps)`, as Keras does.
    pub fn eps_inside_sqrt(mut self, inside: bool) -> Self {
        self.config.eps_inside_sqrt = inside;
        self
    }
    /// Weight decay, L2 (PyTorch) or decoupled (Keras).
    pub fn weight_decay(mut self, weight_decay: WeightDecay) -> Self {
        self.config.weight_decay = weight_decay;
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
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
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
    /// `momentum > 0` (in `f32`), decided once per call rather than per vector.
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

impl Executor {
    /// One RMSprop step on weights `w`, the square average, the gradient average (`Some` exactly
    /// when the config is centered), the momentum buffer (`Some` exactly when the momentum is
    /// above 0) and gradient `g`, of any element types.
    ///
    /// `step` counts from 1 (it keys stochastic rounding). Fails, writing nothing, if a length
    /// differs, the optional buffers do not match the config, or `step` is 0.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsprop_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        square_avg: &mut [T],
        grad_avg: Option<&mut [T]>,
        momentum_buffer: Option<&mut [T]>,
        g: &[G],
        config: &Rmsprop,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "rmsprop_step";
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        let n = w.len();
        if grad_avg.is_some() != config.centered {
            return Err(Error::StateBuffer {
                call: CALL,
                buffer: "grad_avg",
                needed: config.centered,
            });
        }
        let has_momentum = config.momentum > 0.0;
        if momentum_buffer.is_some() != has_momentum {
            return Err(Error::StateBuffer {
                call: CALL,
                buffer: "momentum_buffer",
                needed: has_momentum,
            });
        }
        same_len(CALL, "square_avg", square_avg.len(), n)?;
        if let Some(ga) = &grad_avg {
            same_len(CALL, "grad_avg", ga.len(), n)?;
        }
        if let Some(buf) = &momentum_buffer {
            same_len(CALL, "momentum_buffer", buf.len(), n)?;
        }
        same_len(CALL, "gradient", g.len(), n)?;
        let update = config.update(self.gradient_multiplier());
        match (grad_avg, momentum_buffer) {
            (None, None) => self.run_elementwise(update, Buffers::new(w, [square_avg], g), step),
            (Some(x), None) | (None, Some(x)) => {
                self.run_elementwise(update, Buffers::new(w, [square_avg, x], g), step)
            }
            (Some(ga), Some(buf)) => {
                self.run_elementwise(update, Buffers::new(w, [square_avg, ga, buf], g), step)
            }
        }
        Ok(())
    }
}

optimizer_calls! {
    /// One RMSprop step, for any mix of element types; see [`Executor::rmsprop_step`].
    ///
    /// ```
    /// use optkern::Rmsprop;
    ///
    /// let config = Rmsprop::builder(1e-2).build().unwrap();
    /// let (mut w, mut sq, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
    /// optkern::rmsprop_step(&mut w, &mut sq, None, None, &g, &config, 1);
    /// assert!(w[0] < 1.0);
    /// ```
    fn rmsprop_step / try_rmsprop_step(w: weights, square_avg: state, grad_avg: optional_state, momentum_buffer: optional_state, g: gradient; config: &Rmsprop, step: u64);
    f32 => rmsprop_step_f32 / try_rmsprop_step_f32,
    f16 => rmsprop_step_f16 / try_rmsprop_step_f16,
    bf16 => rmsprop_step_bf16 / try_rmsprop_step_bf16,
}
