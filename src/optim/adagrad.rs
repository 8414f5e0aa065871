//! Adagrad (Duchi et al. 2011), with PyTorch's semantics.
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g   = (maximize ? -g : g) + l2 * w            (L2: PyTorch's weight_decay)
//! w   = w * (1 - lr * wd)                       (decoupled weight decay, if chosen instead)
//! clr = lr / (1 + (t - 1) * lr_decay)
//! sum = sum + g * g                             (on step 1: initial_accumulator_value + g * g)
//! w  -= clr * g / (sqrt(sum) + eps)
//! ```
//!
//! On step 1 the accumulator buffer is not read: it starts from `initial_accumulator_value`,
//! as PyTorch creates it filled with that value. The decayed rate `clr` is computed once per
//! call in `f64` and rounded once. In `f32`: `sum = fma(g, g, sum)`,
//! `w = fma(-clr, g / (sqrt(sum) + eps), w)`.
//!
//! State: one buffer per tensor, `sum`. Checkpoint record: numbers `lr`, lr decay, initial
//! accumulator, eps, weight decay; flags weight-decay mode, maximize.

use super::{Common, GradientIn, OptimizerConfig, checked, common_options, flag};
use super::{elementwise_step, eps_option};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, non_negative, positive};

/// A validated Adagrad configuration. Build it with [`Adagrad::builder`], then
/// [`AdagradBuilder::build`].
///
/// ```
/// // torch.optim.Adagrad(lr=0.05, lr_decay=1e-3, initial_accumulator_value=0.1)
/// let adagrad = optkern::Adagrad::builder(0.05).lr_decay(1e-3).initial_accumulator_value(0.1).build()?;
/// assert_eq!(adagrad.eps(), 1e-10);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adagrad {
    common: Common,
    lr_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
}

/// Collects the options of an [`Adagrad`] config; [`build`](AdagradBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdagradBuilder {
    config: Adagrad,
}

common_options!(Adagrad, AdagradBuilder);
eps_option!(Adagrad, AdagradBuilder);

impl Adagrad {
    /// Adagrad with PyTorch's defaults: no learning-rate decay, no weight decay, an initial
    /// accumulator of 0, `eps = 1e-10`.
    pub fn builder(lr: f64) -> AdagradBuilder {
        AdagradBuilder {
            config: Adagrad {
                common: Common::new(lr),
                lr_decay: 0.0,
                initial_accumulator_value: 0.0,
                eps: 1e-10,
            },
        }
    }

    /// The learning-rate decay.
    pub fn lr_decay(&self) -> f64 {
        self.lr_decay
    }
    /// The value the accumulator starts from on step 1.
    pub fn initial_accumulator_value(&self) -> f64 {
        self.initial_accumulator_value
    }
    /// The config of the quick calls (`adagrad_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn adagrad_quick(lr: f32, step: u64) -> Result<(Adagrad, u64), Error> {
        Ok((Adagrad::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        non_negative("lr_decay", self.lr_decay)?;
        non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        positive("eps", self.eps)
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    pub(crate) fn update(&self, step: u64, scale: f64) -> AdagradUpdate {
        let decayed = self.common.lr / (1.0 + (step - 1) as f64 * self.lr_decay);
        AdagradUpdate {
            input: self.common.gradient_in(scale),
            clr: decayed as f32,
            eps: self.eps as f32,
            first: step == 1,
            initial: self.initial_accumulator_value as f32,
        }
    }
}

impl AdagradBuilder {
    /// The learning-rate decay (finite and `>= 0`).
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.config.lr_decay = lr_decay;
        self
    }
    /// The value the accumulator starts from (finite and `>= 0`).
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.config.initial_accumulator_value = value;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr`, `lr_decay`, `initial_accumulator_value` and the weight decay finite
    /// and `>= 0`; `eps` finite and `> 0`.
    pub fn build(self) -> Result<Adagrad, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Adagrad step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdagradUpdate {
    input: GradientIn,
    clr: f32,
    eps: f32,
    first: bool,
    initial: f32,
}

impl Update<1, 0> for AdagradUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [sum]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let sum = if self.first {
            simd.splat_f32s(self.initial)
        } else {
            sum
        };
        let sum = simd.mul_add_f32s(g, g, sum);
        let std = simd.add_f32s(simd.sqrt_f32s(sum), simd.splat_f32s(self.eps));
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.clr), simd.div_f32s(g, std), w);
        (w, [sum], [])
    }
}

impl OptimizerConfig for Adagrad {
    const FIELDS: (usize, usize) = (5, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["sum"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![
                self.lr(),
                self.lr_decay,
                self.initial_accumulator_value,
                self.eps,
                wd,
            ],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Adagrad::builder(nums[0])
            .lr_decay(nums[1])
            .initial_accumulator_value(nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay_from(flags[0], nums[4])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Adagrad, scale, step| c.update(step, scale), 1);
}
