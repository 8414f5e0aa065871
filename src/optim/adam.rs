//! Adam, AdamW and AMSGrad (Kingma & Ba 2015; Loshchilov & Hutter 2019; Reddi et al. 2018),
//! with PyTorch's semantics and the "epsilon hat" placement of TensorFlow/Keras.
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g  = (maximize ? -g : g) + l2 * w            (L2 weight decay: PyTorch Adam's weight_decay)
//! w  = w * (1 - lr * wd)                       (decoupled weight decay: AdamW)
//! m  = beta1 * m + (1 - beta1) * g
//! v  = beta2 * v + (1 - beta2) * g * g
//! v_max = max(v_max, v)                        (AMSGrad, which then uses v_max for v)
//! w -= step_size * m / (sqrt(v) * k + eps)
//! ```
//!
//! with bias corrections `bc1 = 1 - beta1^t`, `bc2 = 1 - beta2^t` (1 when turned off), and
//!
//! - [`EpsilonPlacement::Corrected`] (PyTorch): `step_size = lr / bc1`, `k = 1 / sqrt(bc2)`, so
//!   `eps` is added to the bias-corrected `sqrt(v_hat)`;
//! - [`EpsilonPlacement::Hat`] (TensorFlow/Keras): `step_size = lr * sqrt(bc2) / bc1`, `k = 1`,
//!   so `eps` ("epsilon hat") is added to the uncorrected `sqrt(v)`.
//!
//! The coefficients are computed once per call in `f64` (`beta^t` by repeated squaring, the
//! same on every machine) and rounded once to `f32`. In `f32` each element computes
//! `m = lerp(m, g, 1-beta1)` as PyTorch's `exp_avg.lerp_` (`fma(1-beta1, g-m, m)` for the usual
//! `beta1 > 0.5`), `v = fma(1-beta2, g*g, beta2*v)`,
//! `d = fma(sqrt(v), k, eps)`, `w = fma(-step_size, m / d, w)`: one division and one square
//! root, no estimates, on every backend. As in PyTorch, the lerp's weight `1 - beta1` is
//! rounded to `f32`: for a `beta1` close to 0 the `beta1` in effect, `1 - f32(1 - beta1)`,
//! differs from the one given by up to `2^-25`.

use pulp::Simd;

use super::{GradientIn, Lerp, WeightDecay, max_nan, optimizer_calls, pow_u64};
use crate::Executor;
use crate::arch::Lanes;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, non_negative, positive, same_len, unit_interval_open};
use crate::stream::{Buffers, Update};

/// Where epsilon enters Adam's denominator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EpsilonPlacement {
    /// `sqrt(v) / sqrt(bc2) + eps`: added after the bias correction (PyTorch; Algorithm 1 of
    /// the Adam paper).
    #[default]
    Corrected,
    /// `sqrt(v) + eps_hat`, with the bias corrections folded into the step size
    /// `lr * sqrt(bc2) / bc1` (TensorFlow and Keras; the "epsilon hat" of the paper's
    /// section 2).
    Hat,
}

/// A validated Adam configuration (Adam, AdamW, AMSGrad). Build it with [`Adam::builder`] or
/// [`Adam::adamw`], then [`AdamBuilder::build`].
///
/// ```
/// use optkern::{Adam, WeightDecay};
///
/// // torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
/// let adamw = Adam::adamw(1e-3, 0.1).betas(0.9, 0.95).build()?;
/// // torch.optim.Adam(lr=1e-3, weight_decay=1e-4, amsgrad=True)
/// let amsgrad = Adam::builder(1e-3).weight_decay(WeightDecay::L2(1e-4)).amsgrad(true).build()?;
/// assert!(amsgrad.amsgrad() && !adamw.amsgrad());
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: WeightDecay,
    amsgrad: bool,
    maximize: bool,
    bias_correction: bool,
    epsilon: EpsilonPlacement,
}

/// Collects the options of an [`Adam`] config; [`build`](AdamBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdamBuilder {
    config: Adam,
}

impl Adam {
    /// Adam with PyTorch's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay,
    /// bias correction on, epsilon after the correction.
    pub fn builder(lr: f64) -> AdamBuilder {
        AdamBuilder {
            config: Adam {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: WeightDecay::None,
                amsgrad: false,
                maximize: false,
                bias_correction: true,
                epsilon: EpsilonPlacement::Corrected,
            },
        }
    }

    /// AdamW: Adam with decoupled weight decay `w *= 1 - lr * weight_decay` (PyTorch's
    /// `AdamW`, whose default `weight_decay` is 0.01).
    pub fn adamw(lr: f64, weight_decay: f64) -> AdamBuilder {
        Adam::builder(lr).weight_decay(WeightDecay::Decoupled(weight_decay))
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// `(beta1, beta2)`.
    pub fn betas(&self) -> (f64, f64) {
        (self.beta1, self.beta2)
    }
    /// Epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }
    /// The weight decay: L2 (Adam) or decoupled (AdamW).
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
    }
    /// Whether this is AMSGrad (which keeps a third buffer, `v_max`).
    pub fn amsgrad(&self) -> bool {
        self.amsgrad
    }
    /// Whether the objective is maximized.
    pub fn maximize(&self) -> bool {
        self.maximize
    }
    /// Whether the moments are bias-corrected.
    pub fn bias_correction(&self) -> bool {
        self.bias_correction
    }
    /// Where epsilon enters the denominator.
    pub fn epsilon_placement(&self) -> EpsilonPlacement {
        self.epsilon
    }

    /// Changes the learning rate (for a schedule), checking it as `build` does.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        non_negative("lr", lr)?;
        self.lr = lr;
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        non_negative("lr", self.lr)?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        self.weight_decay.validate()
    }

    /// The coefficients of step `step` (from 1), computed once per call in `f64`.
    pub(crate) fn update(&self, step: u64, scale: f64) -> AdamUpdate {
        let (bc1, bc2) = if self.bias_correction {
            let bc = |beta: f64| 1.0 - pow_u64(beta, step);
            (bc(self.beta1), bc(self.beta2))
        } else {
            (1.0, 1.0)
        };
        let lr = self.lr;
        let (step_size, k) = match self.epsilon {
            EpsilonPlacement::Corrected => (lr / bc1, 1.0 / bc2.sqrt()),
            EpsilonPlacement::Hat => (lr * bc2.sqrt() / bc1, 1.0),
        };
        AdamUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            k: k as f32,
            eps: self.eps as f32,
            step_size: step_size as f32,
        }
    }
}

impl AdamBuilder {
    /// `beta1` and `beta2`, each in `[0, 1)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.config.beta1 = beta1;
        self.config.beta2 = beta2;
        self
    }
    /// Epsilon (finite and `> 0`).
    pub fn eps(mut self, eps: f64) -> Self {
        self.config.eps = eps;
        self
    }
    /// Weight decay: [`WeightDecay::L2`] is Adam's, [`WeightDecay::Decoupled`] is AdamW's.
    pub fn weight_decay(mut self, weight_decay: WeightDecay) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }
    /// AMSGrad: keep `v_max = max(v_max, v)` in a third buffer and use it for `v`.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.config.amsgrad = amsgrad;
        self
    }
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
        self
    }
    /// Bias correction of both moments (on by default).
    pub fn bias_correction(mut self, on: bool) -> Self {
        self.config.bias_correction = on;
        self
    }
    /// Where epsilon enters the denominator (default: PyTorch's).
    pub fn epsilon_placement(mut self, placement: EpsilonPlacement) -> Self {
        self.config.epsilon = placement;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; `eps` finite and `> 0`;
    /// weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Adam, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Adam step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamUpdate {
    input: GradientIn,
    lerp: Lerp,
    beta2: f32,
    one_minus_beta2: f32,
    k: f32,
    eps: f32,
    step_size: f32,
}

impl AdamUpdate {
    /// The gradient as used, the decayed weights, and the new moments.
    #[inline(always)]
    fn moments<S: Simd>(
        self,
        simd: S,
        w: S::f32s,
        m: S::f32s,
        v: S::f32s,
        g: S::f32s,
    ) -> (S::f32s, S::f32s, S::f32s) {
        let g = self.input.gradient(simd, g, w);
        let m = self.lerp.apply(simd, m, g);
        let g2 = simd.mul_f32s(g, g);
        let v = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta2),
            g2,
            simd.mul_f32s(simd.splat_f32s(self.beta2), v),
        );
        (self.input.decayed(simd, w), m, v)
    }

    /// The weights after the step, from the (decayed) weights, `m` and the `v` to divide by.
    #[inline(always)]
    fn apply<S: Simd>(self, simd: S, w: S::f32s, m: S::f32s, v: S::f32s) -> S::f32s {
        let denom = simd.mul_add_f32s(
            simd.sqrt_f32s(v),
            simd.splat_f32s(self.k),
            simd.splat_f32s(self.eps),
        );
        simd.mul_add_f32s(simd.splat_f32s(-self.step_size), simd.div_f32s(m, denom), w)
    }
}

impl Update<2, 0> for AdamUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let (w, m, v) = self.moments(simd, w, m, v, g);
        (self.apply(simd, w, m, v), [m, v], [])
    }
}

/// AMSGrad: the third buffer keeps the largest `v` seen (a NaN in `v` propagates).
impl Update<3, 0> for AdamUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v, v_max]: [S::f32s; 3],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 3], [S::f32s; 0]) {
        let (w, m, v) = self.moments(simd, w, m, v, g);
        let v_max = max_nan(simd, v_max, v);
        (self.apply(simd, w, m, v_max), [m, v, v_max], [])
    }
}

impl Executor {
    /// One Adam (or AdamW) step on weights `w`, first moment `m`, second moment `v` and
    /// gradient `g`, of any element types; `step` counts from 1. For AMSGrad, see
    /// [`Executor::amsgrad_step`].
    ///
    /// Fails, writing nothing, if a length differs, `step` is 0, or the config is AMSGrad.
    pub fn adam_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        m: &mut [T],
        v: &mut [T],
        g: &[G],
        config: &Adam,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "adam_step";
        if config.amsgrad {
            return Err(Error::StateBuffer {
                call: CALL,
                buffer: "v_max",
                needed: true,
            });
        }
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        same_len(CALL, "m", m.len(), w.len())?;
        same_len(CALL, "v", v.len(), w.len())?;
        same_len(CALL, "gradient", g.len(), w.len())?;
        self.run_elementwise(
            config.update(step, self.gradient_multiplier()),
            Buffers::new(w, [m, v], g),
            step,
        );
        Ok(())
    }

    /// One AMSGrad step: as [`Executor::adam_step`], with the running maximum of the second
    /// moment in `v_max`. The config must have `amsgrad` set.
    #[allow(clippy::too_many_arguments)]
    pub fn amsgrad_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        m: &mut [T],
        v: &mut [T],
        v_max: &mut [T],
        g: &[G],
        config: &Adam,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "amsgrad_step";
        if !config.amsgrad {
            return Err(Error::StateBuffer {
                call: CALL,
                buffer: "v_max",
                needed: false,
            });
        }
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        same_len(CALL, "m", m.len(), w.len())?;
        same_len(CALL, "v", v.len(), w.len())?;
        same_len(CALL, "v_max", v_max.len(), w.len())?;
        same_len(CALL, "gradient", g.len(), w.len())?;
        self.run_elementwise(
            config.update(step, self.gradient_multiplier()),
            Buffers::new(w, [m, v, v_max], g),
            step,
        );
        Ok(())
    }
}

optimizer_calls! {
    /// One Adam (or AdamW) step, for any mix of element types; see [`Executor::adam_step`].
    ///
    /// ```
    /// use optkern::{Adam, bf16};
    ///
    /// // bf16 weights and gradients, f32 moments.
    /// let adam = Adam::builder(1e-3).build().unwrap();
    /// let mut w = vec![bf16::ZERO; 1000];
    /// let (mut m, mut v) = (vec![0.0f32; 1000], vec![0.0f32; 1000]);
    /// let g = vec![bf16::from_f32(0.5); 1000];
    /// optkern::adam_step(&mut w, &mut m, &mut v, &g, &adam, 1);
    /// // The first bias-corrected step moves each weight by lr against the gradient.
    /// assert!((w[0].to_f32() + 1e-3).abs() < 1e-5);
    /// ```
    fn adam_step / try_adam_step(w: weights, m: state, v: state, g: gradient; config: &Adam, step: u64);
    f32 => adam_step_f32 / try_adam_step_f32,
    f16 => adam_step_f16 / try_adam_step_f16,
    bf16 => adam_step_bf16 / try_adam_step_bf16,
}

optimizer_calls! {
    /// One AMSGrad step, for any mix of element types; see [`Executor::amsgrad_step`].
    fn amsgrad_step / try_amsgrad_step(w: weights, m: state, v: state, v_max: state, g: gradient; config: &Adam, step: u64);
    f32 => amsgrad_step_f32 / try_amsgrad_step_f32,
    f16 => amsgrad_step_f16 / try_amsgrad_step_f16,
    bf16 => amsgrad_step_bf16 / try_amsgrad_step_bf16,
}
