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
//!
//! State: `m`, `v` per tensor, and `v_max` for AMSGrad. Checkpoint record: numbers `lr`,
//! beta1, beta2, eps, weight decay; flags weight-decay mode, AMSGrad, maximize, bias
//! correction, epsilon placement (0 corrected, 1 hat).
//!
//! ```
//! use optkern::{Adam, bf16};
//!
//! // bf16 weights and gradients, f32 moments.
//! let adam = Adam::builder(1e-3).build().unwrap();
//! let mut w = vec![bf16::ZERO; 1000];
//! let (mut m, mut v) = (vec![0.0f32; 1000], vec![0.0f32; 1000]);
//! let g = vec![bf16::from_f32(0.5); 1000];
//! optkern::adam_step(&mut w, &mut m, &mut v, &g, &adam, 1);
//! // The first bias-corrected step moves each weight by lr against the gradient.
//! assert!((w[0].to_f32() + 1e-3).abs() < 1e-5);
//! ```

use pulp::Simd;

use super::{Common, GradientIn, Lerp, OptimizerConfig, WeightDecay, bias_corrections, checked};
use super::{betas_option, common_options, elementwise_step, eps_option, flag, max_nan};
use super::{first_step_size, weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

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
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
    amsgrad: bool,
    bias_correction: bool,
    epsilon: EpsilonPlacement,
}

/// Collects the options of an [`Adam`] config; [`build`](AdamBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdamBuilder {
    config: Adam,
}

common_options!(Adam, AdamBuilder);
betas_option!(Adam, AdamBuilder);
eps_option!(Adam, AdamBuilder);

impl Adam {
    /// Adam with PyTorch's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay,
    /// bias correction on, epsilon after the correction.
    pub fn builder(lr: f64) -> AdamBuilder {
        AdamBuilder {
            config: Adam {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                amsgrad: false,
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

    /// Whether this is AMSGrad (which keeps a third buffer, `v_max`).
    pub fn amsgrad(&self) -> bool {
        self.amsgrad
    }
    /// Whether the moments are bias-corrected.
    pub fn bias_correction(&self) -> bool {
        self.bias_correction
    }
    /// Where epsilon enters the denominator.
    pub fn epsilon_placement(&self) -> EpsilonPlacement {
        self.epsilon
    }

    /// The config of the quick calls (`adam_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn adam_quick(lr: f32, step: u64) -> Result<(Adam, u64), Error> {
        Ok((Adam::builder(lr.into()).build()?, step))
    }

    /// The config of the quick AMSGrad calls (`amsgrad_step_f32`, ...).
    pub(crate) fn amsgrad_quick(lr: f32, step: u64) -> Result<(Adam, u64), Error> {
        Ok((Adam::builder(lr.into()).amsgrad(true).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        if self.bias_correction {
            first_step_size(self.common.lr, self.beta1)?;
        }
        Ok(())
    }

    /// The coefficients of step `step` (from 1), computed once per call in `f64`.
    pub(crate) fn update(&self, step: u64, scale: f64) -> AdamUpdate {
        let (bc1, bc2) = if self.bias_correction {
            bias_corrections(self.beta1, self.beta2, step)
        } else {
            (1.0, 1.0)
        };
        let lr = self.common.lr;
        let (step_size, k) = match self.epsilon {
            EpsilonPlacement::Corrected => (lr / bc1, 1.0 / bc2.sqrt()),
            EpsilonPlacement::Hat => (lr * bc2.sqrt() / bc1, 1.0),
        };
        AdamUpdate {
            input: self.common.gradient_in(scale),
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
    /// AMSGrad: keep `v_max = max(v_max, v)` in a third buffer and use it for `v`.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.config.amsgrad = amsgrad;
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

impl OptimizerConfig for Adam {
    const FIELDS: (usize, usize) = (5, 5);
    const FLAG_NAMES: &'static [&'static str] = &[
        "weight_decay",
        "amsgrad",
        "maximize",
        "bias_correction",
        "epsilon_placement",
    ];

    fn state_buffers(&self) -> &'static [&'static str] {
        if self.amsgrad {
            &["m", "v", "v_max"]
        } else {
            &["m", "v"]
        }
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        let b = u8::from;
        (
            vec![self.lr(), self.beta1, self.beta2, self.eps, wd],
            vec![
                mode,
                b(self.amsgrad),
                b(self.maximize()),
                b(self.bias_correction),
                b(self.epsilon == EpsilonPlacement::Hat),
            ],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Adam::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay_from(flags[0], nums[4])?)
            .amsgrad(flag(flags[1])?)
            .maximize(flag(flags[2])?)
            .bias_correction(flag(flags[3])?)
            .epsilon_placement(if flag(flags[4])? {
                EpsilonPlacement::Hat
            } else {
                EpsilonPlacement::Corrected
            });
        checked(builder.build())
    }

    elementwise_step!(|c: &Adam, scale, step| c.update(step, scale), 2, 3);
}
