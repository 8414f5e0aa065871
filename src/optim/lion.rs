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

use super::{GradientIn, WeightDecay, optimizer_calls, sign};
use crate::Executor;
use crate::arch::Lanes;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, non_negative, same_len, unit_interval_open};
use crate::stream::{Buffers, Update};

/// A validated Lion configuration. Build it with [`Lion::builder`], then [`LionBuilder::build`].
///
/// ```
/// // lion_pytorch.Lion(lr=3e-4, betas=(0.95, 0.98), weight_decay=0.1)
/// let lion = optkern::Lion::builder(3e-4).betas(0.95, 0.98).weight_decay(0.1).build()?;
/// assert_eq!(lion.betas(), (0.95, 0.98));
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lion {
    lr: f64,
    beta1: f64,
    beta2: f64,
    weight_decay: WeightDecay,
    maximize: bool,
}

/// Collects the options of a [`Lion`] config; [`build`](LionBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct LionBuilder {
    config: Lion,
}

impl Lion {
    /// Lion with lion-pytorch's defaults: `betas = (0.9, 0.99)`, no weight decay.
    pub fn builder(lr: f64) -> LionBuilder {
        LionBuilder {
            config: Lion {
                lr,
                beta1: 0.9,
                beta2: 0.99,
                weight_decay: WeightDecay::None,
                maximize: false,
            },
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }
    /// `(beta1, beta2)`: the interpolation for the update's sign, and the momentum decay.
    pub fn betas(&self) -> (f64, f64) {
        (self.beta1, self.beta2)
    }
    /// The weight decay.
    pub fn weight_decay(&self) -> WeightDecay {
        self.weight_decay
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
        self.weight_decay.validate()
    }

    pub(crate) fn update(&self, scale: f64) -> LionUpdate {
        LionUpdate {
            input: GradientIn::new(self.maximize, self.weight_decay, self.lr, scale),
            lr: self.lr as f32,
            beta1: self.beta1 as f32,
            one_minus_beta1: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
        }
    }
}

impl LionBuilder {
    /// `beta1` and `beta2`, each in `[0, 1)`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.config.beta1 = beta1;
        self.config.beta2 = beta2;
        self
    }
    /// Decoupled weight decay `w *= 1 - lr * weight_decay` (lion-pytorch's `weight_decay`).
    pub fn weight_decay(self, weight_decay: f64) -> Self {
        self.weight_decay_mode(WeightDecay::Decoupled(weight_decay))
    }
    /// Weight decay of either kind (an L2 term is added to the gradient before the sign).
    pub fn weight_decay_mode(mut self, weight_decay: WeightDecay) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }
    /// Maximize the objective instead of minimizing it (the gradient is negated).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.config.maximize = maximize;
        self
    }

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

impl Executor {
    /// One Lion step on weights `w`, momentum `m` and gradient `g`, of any element types;
    /// `step` counts from 1 (it keys stochastic rounding).
    ///
    /// Fails, writing nothing, if a length differs or `step` is 0.
    pub fn lion_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        m: &mut [T],
        g: &[G],
        config: &Lion,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "lion_step";
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        same_len(CALL, "m", m.len(), w.len())?;
        same_len(CALL, "gradient", g.len(), w.len())?;
        let update = config.update(self.gradient_multiplier());
        self.run_elementwise(update, Buffers::new(w, [m], g), step);
        Ok(())
    }
}

optimizer_calls! {
    /// One Lion step, for any mix of element types; see [`Executor::lion_step`].
    fn lion_step / try_lion_step(w: weights, m: state, g: gradient; config: &Lion, step: u64);
    f32 => lion_step_f32 / try_lion_step_f32,
    f16 => lion_step_f16 / try_lion_step_f16,
    bf16 => lion_step_bf16 / try_lion_step_bf16,
}
