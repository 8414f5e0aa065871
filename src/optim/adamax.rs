//! Adamax (Kingma & Ba 2015, section 7.1: Adam with the infinity norm), with the semantics of
//! PyTorch's `torch.optim.Adamax`.
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g  = (maximize ? -g : g) + l2 * w            (L2 weight decay: PyTorch's weight_decay)
//! w  = w * (1 - lr * wd)                       (decoupled weight decay, if chosen instead)
//! m  = beta1 * m + (1 - beta1) * g
//! u  = max(beta2 * u, |g| + eps)               (eps inside the max, so u >= eps)
//! w -= lr / (1 - beta1^t) * m / u
//! ```
//!
//! The step size `lr / (1 - beta1^t)` is computed once per call in `f64` (`beta1^t` by
//! repeated squaring) and rounded once to `f32`. In `f32` each element computes
//! `m = lerp(m, g, 1-beta1)` as PyTorch's `exp_avg.lerp_` (see Adam), `u = max(beta2*u,
//! |g| + eps)` with a NaN in either operand giving a NaN (as `torch.maximum`), and
//! `w = fma(-step_size, m / u, w)`: one division, no estimate, on every backend.
//!
//! State: `m` (PyTorch's `exp_avg`) and `u` (its `exp_inf`) per tensor, both starting at
//! zero. Checkpoint record: numbers `lr`, beta1, beta2, eps, weight decay; flags weight-decay
//! mode, maximize.

use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag, max_nan};
use super::{betas_option, elementwise_step, eps_option, pow_u64};
use super::{first_step_size, weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

/// A validated Adamax configuration. Build it with [`Adamax::builder`], then
/// [`AdamaxBuilder::build`].
///
/// ```
/// use optkern::{Adamax, WeightDecay};
///
/// // torch.optim.Adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
/// let adamax = Adamax::builder(2e-3).weight_decay(WeightDecay::L2(0.01)).build()?;
/// let (mut w, mut m, mut u) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// let g = vec![0.5f32; 64];
/// optkern::adamax_step(&mut w, &mut m, &mut u, &g, &adamax, 1);
/// // The first step moves each weight by about lr against the gradient.
/// assert!((w[0] - (1.0 - 2e-3)).abs() < 1e-4);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adamax {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// Collects the options of an [`Adamax`] config; [`build`](AdamaxBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdamaxBuilder {
    config: Adamax,
}

common_options!(Adamax, AdamaxBuilder);
betas_option!(Adamax, AdamaxBuilder);
eps_option!(Adamax, AdamaxBuilder);

impl Adamax {
    /// Adamax with PyTorch's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay.
    /// (PyTorch's default `lr` is `2e-3`.)
    pub fn builder(lr: f64) -> AdamaxBuilder {
        AdamaxBuilder {
            config: Adamax {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        }
    }

    /// The config of the quick calls (`adamax_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn adamax_quick(lr: f32, step: u64) -> Result<(Adamax, u64), Error> {
        Ok((Adamax::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        first_step_size(self.common.lr, self.beta1)
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> AdamaxUpdate {
        let bc1 = 1.0 - pow_u64(self.beta1, step);
        AdamaxUpdate {
            input: self.common.gradient_in(scale),
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            step_size: (self.common.lr / bc1) as f32,
        }
    }
}

impl AdamaxBuilder {
    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; `eps` finite and `> 0`;
    /// weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Adamax, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Adamax step.
#[derive(Clone, Copy, Debug)]
struct AdamaxUpdate {
    input: GradientIn,
    lerp: Lerp,
    beta2: f32,
    eps: f32,
    step_size: f32,
}

impl Update<2, 0> for AdamaxUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, u]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let m = self.lerp.apply(simd, m, g);
        let u = max_nan(
            simd,
            simd.mul_f32s(simd.splat_f32s(self.beta2), u),
            simd.add_f32s(simd.abs_f32s(g), simd.splat_f32s(self.eps)),
        );
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.step_size), simd.div_f32s(m, u), w);
        (w, [m, u], [])
    }
}

impl OptimizerConfig for Adamax {
    const FIELDS: (usize, usize) = (5, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "u"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.beta1, self.beta2, self.eps, wd],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Adamax::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay_from(flags[0], nums[4])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Adamax, scale, step| c.update(step, scale), 2);
}
