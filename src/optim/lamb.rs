//! LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), with timm's semantics
//! (`timm.optim.Lamb`, the NVLAMB variant of NVIDIA's FusedLAMB).
//!
//! One step, with `t` the step number (from 1), for each tensor:
//!
//! ```text
//! g  = g / max(1, global_norm / max_grad_norm)  (optional; the norm of every tensor's gradient)
//! m  = beta1 * m + (1 - beta1) * g              (with grad_averaging; else beta1 * m + g)
//! v  = beta2 * v + (1 - beta2) * g * g
//! w  = w * (1 - lr * wd)                        (decoupled weight decay only)
//! u  = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)  (bias corrections; 1 when turned off)
//! u += wd * w                                   (L2 weight decay, the default)
//! r  = |w| / |u|, or 1 where either norm is 0   (trust ratio; clipped at 1 with trust_clip)
//! w -= lr * r * u                               (r only when wd != 0 or always_adapt)
//! ```
//!
//! The norms are per tensor, computed with the crate's deterministic reductions (the same bits
//! on every backend and thread count). So a step is two passes over memory: the first updates
//! `m` and `v` and accumulates `|w|^2` and `|u|^2`; the second recomputes `u` from the stored `m`
//! and `v` (the first pass uses them rounded to the state type too, so both agree) and
//! updates the weights. With `max_grad_norm`, a gradient-norm pass comes first.

use core::marker::PhantomData;

use pulp::Simd;

use super::{GradientIn, Lerp, WeightDecay, pow_u64};
use crate::arch::Lanes;
use crate::element::Element;
use crate::error::{Error, non_negative, positive, unit_interval_open};
use crate::stream::{Update, round_trip};

/// A validated LAMB configuration. Build it with [`Lamb::builder`], then
/// [`LambBuilder::build`].
///
/// ```
/// // timm.optim.Lamb(params, lr=1e-3, weight_decay=0.01, max_grad_norm=None)
/// let lamb = optkern::Lamb::builder(1e-3).weight_decay(0.01).max_grad_norm(None).build()?;
/// assert_eq!(lamb.eps(), 1e-6);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lamb {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    grad_averaging: bool,
    bias_correction: bool,
    max_grad_norm: Option<f64>,
    trust_clip: bool,
    always_adapt: bool,
    maximize: bool,
}

/// Collects the options of a [`Lamb`] config; [`build`](LambBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct LambBuilder {
    config: Lamb,
}

impl Lamb {
    /// LAMB with timm's defaults: `betas = (0.9, 0.999)`, `eps = 1e-6`, `weight_decay = 0.01`
    /// (added to the update), gradient averaging and bias correction on, `max_grad_norm = 1.0`,
    /// no trust clipping, adaptation only where the weight decay is non-zero.
    pub fn builder(lr: f64) -> LambBuilder {
        LambBuilder {
            config: Lamb {
                lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
                weight_decay: 0.01,
                decoupled: false,
                grad_averaging: true,
                bias_correction: true,
                max_grad_norm: Some(1.0),
                trust_clip: false,
                always_adapt: false,
                maximize: false,
            },
        }
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
    /// The weight decay, and whether it is decoupled (else added to the update).
    pub fn weight_decay(&self) -> (f64, bool) {
        (self.weight_decay, self.decoupled)
    }
    /// Whether the first moment averages the gradient (`1 - beta1` on `g`).
    pub fn grad_averaging(&self) -> bool {
        self.grad_averaging
    }
    /// Whether the moments are bias-corrected.
    pub fn bias_correction(&self) -> bool {
        self.bias_correction
    }
    /// The global gradient norm above which gradients are scaled down, if any.
    pub fn max_grad_norm(&self) -> Option<f64> {
        self.max_grad_norm
    }
    /// Whether the trust ratio is clipped at 1 (LAMBC).
    pub fn trust_clip(&self) -> bool {
        self.trust_clip
    }
    /// Whether the trust ratio applies even where the weight decay is 0.
    pub fn always_adapt(&self) -> bool {
        self.always_adapt
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
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        non_negative("weight_decay", self.weight_decay)?;
        if let Some(max) = self.max_grad_norm {
            positive("max_grad_norm", max)?;
        }
        Ok(())
    }

    /// Whether the trust ratio applies.
    pub(crate) fn adapts(&self) -> bool {
        self.weight_decay != 0.0 || self.always_adapt
    }

    /// The trust ratio of a tensor from its squared norms.
    pub(crate) fn trust_ratio(&self, w_sq: f64, u_sq: f64) -> f64 {
        if !self.adapts() {
            return 1.0;
        }
        let ratio = if w_sq > 0.0 && u_sq > 0.0 {
            (w_sq / u_sq).sqrt()
        } else {
            1.0
        };
        if self.trust_clip {
            ratio.min(1.0)
        } else {
            ratio
        }
    }

    /// The coefficients of step `step`, with the gradient multiplier `scale`; computed once
    /// per call.
    pub(crate) fn coefficients(&self, step: u64, scale: f64) -> LambCoefficients {
        let (bc1, bc2) = if self.bias_correction {
            (
                1.0 - pow_u64(self.beta1, step),
                1.0 - pow_u64(self.beta2, step),
            )
        } else {
            (1.0, 1.0)
        };
        let decay = if self.decoupled {
            WeightDecay::Decoupled(self.weight_decay)
        } else {
            WeightDecay::None
        };
        let l2 = if self.decoupled {
            0.0
        } else {
            self.weight_decay as f32
        };
        LambCoefficients {
            input: GradientIn::new(self.maximize, decay, self.lr, scale),
            first: Lerp::new(1.0 - self.beta1),
            grad_averaging: self.grad_averaging,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            bc1: bc1 as f32,
            k: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
            l2,
            with_l2: l2 != 0.0,
        }
    }
}

impl LambBuilder {
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
    /// The weight decay (finite and `>= 0`), added to the update (timm's default).
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.config.weight_decay = weight_decay;
        self.config.decoupled = false;
        self
    }
    /// The weight decay, decoupled: `w *= 1 - lr * wd` before the update (timm's
    /// `decoupled_decay`).
    pub fn decoupled_weight_decay(mut self, weight_decay: f64) -> Self {
        self.config.weight_decay = weight_decay;
        self.config.decoupled = true;
        self
    }
    /// Gradient averaging: `(1 - beta1)` on the gradient in the first moment (on by default).
    pub fn grad_averaging(mut self, on: bool) -> Self {
        self.config.grad_averaging = on;
        self
    }
    /// Bias correction of both moments (on by default).
    pub fn bias_correction(mut self, on: bool) -> Self {
        self.config.bias_correction = on;
        self
    }
    /// Scale every gradient down by `max(1, global_norm / max_grad_norm)` (timm's default is
    /// `Some(1.0)`; `None` turns it off).
    pub fn max_grad_norm(mut self, max_grad_norm: Option<f64>) -> Self {
        self.config.max_grad_norm = max_grad_norm;
        self
    }
    /// Clip the trust ratio at 1 (LAMBC).
    pub fn trust_clip(mut self, on: bool) -> Self {
        self.config.trust_clip = on;
        self
    }
    /// Apply the trust ratio even where the weight decay is 0.
    pub fn always_adapt(mut self, on: bool) -> Self {
        self.config.always_adapt = on;
        self
    }
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` and the weight decay finite and `>= 0`; `0 <= beta1, beta2 < 1`;
    /// `eps` and `max_grad_norm` finite and `> 0`.
    pub fn build(self) -> Result<Lamb, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The per-call coefficients both passes share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambCoefficients {
    input: GradientIn,
    first: Lerp,
    grad_averaging: bool,
    beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bc1: f32,
    k: f32,
    eps: f32,
    l2: f32,
    /// `l2 != 0`, decided once per call rather than per vector.
    with_l2: bool,
}

impl LambCoefficients {
    /// The update direction `u` from the (decayed) weights and the moments as stored.
    #[inline(always)]
    fn direction<S: Simd>(self, simd: S, w: S::f32s, m: S::f32s, v: S::f32s) -> S::f32s {
        let denom = simd.mul_add_f32s(
            simd.sqrt_f32s(v),
            simd.splat_f32s(self.k),
            simd.splat_f32s(self.eps),
        );
        let u = simd.div_f32s(simd.div_f32s(m, simd.splat_f32s(self.bc1)), denom);
        if self.with_l2 {
            simd.mul_add_f32s(simd.splat_f32s(self.l2), w, u)
        } else {
            u
        }
    }
}

/// LAMB's first pass: the moments (written), and the vectors whose squares give `|w|^2` and
/// `|u|^2` (the weights are only read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambMoments<T> {
    pub(crate) c: LambCoefficients,
    pub(crate) state_type: PhantomData<T>,
}

impl<T: Element> Update<2, 2> for LambMoments<T> {
    const WRITES_WEIGHTS: bool = false;

    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 2]) {
        let c = self.c;
        let g = c.input.gradient(simd, g, w);
        let w = c.input.decayed(simd, w);
        let m = if c.grad_averaging {
            c.first.apply(simd, m, g)
        } else {
            simd.add_f32s(simd.mul_f32s(simd.splat_f32s(c.beta1), m), g)
        };
        let v = simd.mul_add_f32s(
            simd.splat_f32s(c.one_minus_beta2),
            simd.mul_f32s(g, g),
            simd.mul_f32s(simd.splat_f32s(c.beta2), v),
        );
        // The second pass reads the moments back as stored: use them so here too.
        // SAFETY: reached from Isa::run, as every Update.
        let (m_stored, v_stored) =
            unsafe { (round_trip::<S, T>(simd, m), round_trip::<S, T>(simd, v)) };
        let u = c.direction(simd, w, m_stored, v_stored);
        (w, [m, v], [w, u])
    }
}

/// LAMB's second pass: the weights, from the stored moments and the tensor's trust ratio
/// (`step_size = lr * trust`); the moments are only read, the gradient not at all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambApply {
    pub(crate) c: LambCoefficients,
    pub(crate) step_size: f32,
}

impl Update<2, 0> for LambApply {
    const WRITES_STATE: bool = false;
    const READS_GRADIENT: bool = false;

    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        _g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let w = self.c.input.decayed(simd, w);
        let u = self.c.direction(simd, w, m, v);
        (
            simd.mul_add_f32s(simd.splat_f32s(-self.step_size), u, w),
            [m, v],
            [],
        )
    }
}
