//! RAdam (Liu et al. 2020: Adam with the variance of its adaptive learning rate rectified),
//! with the semantics of PyTorch's `torch.optim.RAdam` and its `decoupled_weight_decay`
//! (RAdamW).
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g       = (maximize ? -g : g) + l2 * w     (L2 weight decay: PyTorch's weight_decay)
//! w       = w * (1 - lr * wd)                (decoupled weight decay: RAdamW)
//! m       = beta1 * m + (1 - beta1) * g
//! v       = beta2 * v + (1 - beta2) * g * g
//! rho_inf = 2 / (1 - beta2) - 1
//! rho_t   = rho_inf - 2 t beta2^t / (1 - beta2^t)
//! if rho_t > 5:                               (the rectified step)
//!     r   = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//!     w  -= lr * r * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
//! else:                                       (momentum SGD, bias-corrected)
//!     w  -= lr / (1 - beta1^t) * m
//! ```
//!
//! `rho_t` grows from 1 towards `rho_inf`; at PyTorch's `beta2 = 0.999` the first rectified
//! step is step 6. `v` is updated on every step, also on those that do not use it. Epsilon is
//! added to the uncorrected root, as PyTorch does.
//!
//! The coefficients are computed once per call in `f64` (`beta^t` by repeated squaring, `r`
//! with one correctly rounded root), which also decides the branch, and the step size is
//! rounded once to `f32`. In `f32` each element computes `m = lerp(m, g, 1-beta1)` as
//! PyTorch's `exp_avg.lerp_` (see Adam), `v = fma(1-beta2, g*g, beta2*v)`, then either
//! `w = fma(-step_size, m / (sqrt(v) + eps), w)` (one division, no estimate, on every
//! backend) or `w = fma(-step_size, m, w)`.
//!
//! State: `m` and `v` per tensor (PyTorch's `exp_avg` and `exp_avg_sq`), both starting at
//! zero. Checkpoint record: numbers `lr`, beta1, beta2, eps, weight decay; flags weight-decay
//! mode, maximize.

use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag};
use super::{betas_option, bias_corrections, elementwise_step, eps_option, pow_u64};
use super::{first_step_size, weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

/// A validated RAdam (or RAdamW) configuration. Build it with [`Radam::builder`], then
/// [`RadamBuilder::build`].
///
/// ```
/// use optkern::{Radam, WeightDecay};
///
/// // torch.optim.RAdam(lr=1e-3, weight_decay=0.01, decoupled_weight_decay=True): RAdamW
/// let radamw = Radam::builder(1e-3).weight_decay(WeightDecay::Decoupled(0.01)).build()?;
/// assert!(!radamw.rectified(5) && radamw.rectified(6));
/// let (mut w, mut m, mut v) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// let g = vec![0.5f32; 64];
/// optkern::radam_step(&mut w, &mut m, &mut v, &g, &radamw, 1);
/// // Step 1 is not rectified: w -= lr * m / (1 - beta1) = lr * g.
/// assert!((w[0] - (1.0 - 1e-5 - 0.5e-3)).abs() < 1e-6);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Radam {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

/// Collects the options of a [`Radam`] config; [`build`](RadamBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct RadamBuilder {
    config: Radam,
}

common_options!(Radam, RadamBuilder);
betas_option!(Radam, RadamBuilder);
eps_option!(Radam, RadamBuilder);

impl Radam {
    /// RAdam with PyTorch's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay.
    /// (PyTorch's default `lr` is `1e-3`.)
    pub fn builder(lr: f64) -> RadamBuilder {
        RadamBuilder {
            config: Radam {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
        }
    }

    /// The rectification of step `step` (from 1): `Some(r)` if `rho_t > 5` (the step divides
    /// by the second moment, scaled by `r`), `None` if it is a momentum step.
    pub fn rectification(&self, step: u64) -> Option<f64> {
        let rho_inf = 2.0 / (1.0 - self.beta2) - 1.0;
        let beta2_t = pow_u64(self.beta2, step);
        let rho_t = rho_inf - 2.0 * step as f64 * beta2_t / (1.0 - beta2_t);
        (rho_t > 5.0).then(|| {
            ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt()
        })
    }

    /// Whether step `step` (from 1) is rectified (`rho_t > 5`).
    pub fn rectified(&self, step: u64) -> bool {
        self.rectification(step).is_some()
    }

    /// The config of the quick calls (`radam_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn radam_quick(lr: f32, step: u64) -> Result<(Radam, u64), Error> {
        Ok((Radam::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        // Both step sizes are at most lr / (1 - beta1): r <= 1 and sqrt(1 - beta2^t) <= 1.
        first_step_size(self.common.lr, self.beta1)
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> RadamUpdate {
        let (bc1, bc2) = bias_corrections(self.beta1, self.beta2, step);
        let rect = self.rectification(step);
        let step_size = match rect {
            Some(r) => self.common.lr / bc1 * bc2.sqrt() * r,
            None => self.common.lr / bc1,
        };
        RadamUpdate {
            input: self.common.gradient_in(scale),
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            eps: self.eps as f32,
            step_size: step_size as f32,
            rectified: rect.is_some(),
        }
    }
}

impl RadamBuilder {
    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; `eps` finite and `> 0`;
    /// weight decay finite and `>= 0`; `lr / (1 - beta1)` finite in `f32` (it bounds the
    /// step size).
    pub fn build(self) -> Result<Radam, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one RAdam step.
#[derive(Clone, Copy, Debug)]
struct RadamUpdate {
    input: GradientIn,
    lerp: Lerp,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    step_size: f32,
    /// Chosen once per call.
    rectified: bool,
}

impl Update<2, 0> for RadamUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let m = self.lerp.apply(simd, m, g);
        let v = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta2),
            simd.mul_f32s(g, g),
            simd.mul_f32s(simd.splat_f32s(self.beta2), v),
        );
        let direction = if self.rectified {
            simd.div_f32s(
                m,
                simd.add_f32s(simd.sqrt_f32s(v), simd.splat_f32s(self.eps)),
            )
        } else {
            m
        };
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.step_size), direction, w);
        (w, [m, v], [])
    }
}

impl OptimizerConfig for Radam {
    const FIELDS: (usize, usize) = (5, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.beta1, self.beta2, self.eps, wd],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Radam::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay_from(flags[0], nums[4])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Radam, scale, step| c.update(step, scale), 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's switch: at beta2 = 0.999 the first rectified step is step 6; with beta2 = 0
    /// (rho_inf = 1) no step is; r grows towards 1.
    #[test]
    fn rectification_by_step() {
        let radam = Radam::builder(1e-3).build().unwrap();
        assert!((1..=5).all(|t| !radam.rectified(t)));
        let r: Vec<f64> = [6u64, 100, 1000, 5000]
            .iter()
            .map(|&t| radam.rectification(t).unwrap())
            .collect();
        assert!(r.windows(2).all(|p| p[0] < p[1]) && r[3] < 1.0 && r[3] > 0.9);
        let plain = Radam::builder(1e-3).betas(0.9, 0.0).build().unwrap();
        assert!((1..=1000).all(|t| !plain.rectified(t)));
    }
}
