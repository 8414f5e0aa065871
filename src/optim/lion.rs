//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as lion-pytorch
//! implements it.
//!
//! One step:
//!
//! ```text
//! w  = w * (1 - lr * wd)                       (decoupled weight decay)
//! c  = beta1 * m + (1 - beta1) * g
//! w -= lr * sign(c)                            (sign(0) = 0, sign(NaN) = NaN)
//! m  = beta2 * m + (1 - beta2) * g
//! ```
//!
//! The sign comes from comparisons (`c > 0`, `c < 0`), never from masking bits, so every
//! magnitude gets the right answer: subnormals are ±1, zeros of either sign give 0. In `f32`:
//! `c = fma(1-beta1, g, beta1*m)`, `w = fma(-lr, sign(c), w)` (one rounding),
//! `m = fma(1-beta2, g, beta2*m)`.
//!
//! State: one buffer per tensor, `m`. Checkpoint record: numbers `lr`, beta1, beta2, weight
//! decay; flags weight-decay mode, maximize.

use super::{Common, GradientIn, OptimizerConfig, checked, common_options, flag, sign};
use super::{betas_option, elementwise_step};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, unit_interval_open};

/// A validated Lion configuration. Build it with [`Lion::builder`], then [`LionBuilder::build`].
///
/// ```
/// use optkern::{Lion, WeightDecay};
///
/// // lion_pytorch.Lion(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.1): decoupled decay.
/// let lion = Lion::builder(3e-4).betas(0.95, 0.98).weight_decay(WeightDecay::Decoupled(0.1)).build()?;
/// assert_eq!(lion.betas(), (0.95, 0.98));
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lion {
    common: Common,
    beta1: f64,
    beta2: f64,
}

/// Collects the options of a [`Lion`] config; [`build`](LionBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct LionBuilder {
    config: Lion,
}

common_options!(Lion, LionBuilder);
betas_option!(Lion, LionBuilder);

impl Lion {
    /// Lion with lion-pytorch's defaults: `betas = (0.9, 0.99)`, no weight decay.
    pub fn builder(lr: f64) -> LionBuilder {
        LionBuilder {
            config: Lion {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.99,
            },
        }
    }

    /// The config of the quick calls (`lion_step_f32`, ...): lion-pytorch's defaults with
    /// `lr`.
    pub(crate) fn lion_quick(lr: f32) -> Result<(Lion, u64), Error> {
        Ok((Lion::builder(lr.into()).build()?, 1))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)
    }

    pub(crate) fn update(&self, scale: f64) -> LionUpdate {
        LionUpdate {
            input: self.common.gradient_in(scale),
            lr: self.common.lr as f32,
            beta1: self.beta1 as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
        }
    }
}

impl LionBuilder {
    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; weight decay finite and
    /// `>= 0`.
    pub fn build(self) -> Result<Lion, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Lion step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LionUpdate {
    input: GradientIn,
    lr: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
}

impl Update<1, 0> for LionUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let c = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta1),
            g,
            simd.mul_f32s(simd.splat_f32s(self.beta1), m),
        );
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.lr), sign(simd, c), w);
        let m = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta2),
            g,
            simd.mul_f32s(simd.splat_f32s(self.beta2), m),
        );
        (w, [m], [])
    }
}

impl OptimizerConfig for Lion {
    const FIELDS: (usize, usize) = (4, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.beta1, self.beta2, wd],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Lion::builder(nums[0])
            .betas(nums[1], nums[2])
            .weight_decay(weight_decay_from(flags[0], nums[3])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Lion, scale, _| c.update(scale), 1);
}
