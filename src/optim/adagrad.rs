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

use super::{GradientIn, WeightDecay, optimizer_calls};
use crate::Executor;
use crate::arch::Lanes;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, non_negative, positive, same_len};
use crate::stream::{Buffers, Update};

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
    lr: f64,
    lr_decay: f64,
    weight_decay: WeightDecay,
    initial_accumulator_value: f64,
    eps: f64,
    maximize: bool,
}

/// Collects the options of an [`Adagrad`] config; [`build`](AdagradBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdagradBuilder {
    config: Adagrad,
}

impl Adagrad {
    /// Adagrad with PyTorch's defaults: no learning-rate decay, no weight decay, an initial
    /// accumulator of 0, `eps = 1e-10`.
    pub fn builder(lr: f64) -> AdagradBuilder {
        AdagradBuilder {
            config: Adagrad {
                lr,
                lr_decay: 0.0,
                weight_decay: WeightDecay::None,
                initial_accumulator_value: 0.0,
                eps: 1e-10,
                maximize: false,
            },
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// The learning-rate decay.
    pub fn lr_decay(&self) -> f64 {
        self.lr_decay
    }
    /// The weight decay.
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
    }
    /// The value the accumulator starts from on step 1.
    pub fn initial_accumulator_value(&self) -> f64 {
        self.initial_accumulator_value
    }
    /// Epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
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
        non_negative("lr_decay", self.lr_decay)?;
        non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        positive("eps", self.eps)?;
        self.weight_decay.validate()
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    pub(crate) fn update(&self, step: u64, scale: f64) -> AdagradUpdate {
        let decayed = self.lr / (1.0 + (step - 1) as f64 * self.lr_decay);
        AdagradUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
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
    /// Weight decay, L2 (PyTorch's) or decoupled.
    pub fn weight_decay(mut self, weight_decay: WeightDecay) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }
    /// The value the accumulator starts from (finite and `>= 0`).
    pub fn initial_accumulator_value(mut self, value: f64) -> Self {
        self.config.initial_accumulator_value = value;
        self
    }
    /// Epsilon (finite and `> 0`).
    pub fn eps(mut self, eps: f64) -> Self {
        self.config.eps = eps;
        self
    }
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
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

impl Executor {
    /// One Adagrad step on weights `w`, accumulator `sum` and gradient `g`, of any element
    /// types; `step` counts from 1 (on step 1 `sum` is not read).
    ///
    /// Fails, writing nothing, if a length differs or `step` is 0.
    pub fn adagrad_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        sum: &mut [T],
        g: &[G],
        config: &Adagrad,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "adagrad_step";
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        same_len(CALL, "sum", sum.len(), w.len())?;
        same_len(CALL, "gradient", g.len(), w.len())?;
        let update = config.update(step, self.gradient_multiplier());
        self.run_elementwise(update, Buffers::new(w, [sum], g), step);
        Ok(())
    }
}

optimizer_calls! {
    /// One Adagrad step, for any mix of element types; see [`Executor::adagrad_step`].
    fn adagrad_step / try_adagrad_step(w: weights, sum: state, g: gradient; config: &Adagrad, step: u64);
    f32 => adagrad_step_f32 / try_adagrad_step_f32,
    f16 => adagrad_step_f16 / try_adagrad_step_f16,
    bf16 => adagrad_step_bf16 / try_adagrad_step_bf16,
}
