//! The optimizers, one file each: a validated config type, the per-element formula (an
//! [`Update`](crate::stream::Update)), and the public calls.
//!
//! What every optimizer shares lives here: how the gradient is read (maximize, the L2 term)
//! and how decoupled weight decay shrinks the weights.

use pulp::Simd;

use crate::Error;
use crate::error::non_negative;

pub mod momentum;

/// How weight decay enters a step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum WeightDecay {
    /// No weight decay.
    #[default]
    None,
    /// An L2 penalty added to the gradient before anything else: `g += wd * w` (the
    /// `weight_decay` of PyTorch's SGD, Adam, RMSprop and Adagrad).
    L2(f32),
    /// Decoupled weight decay: the weights shrink by `w *= 1 - lr * wd` before the update
    /// (AdamW, Lion, and the `weight_decay` of Keras 3 optimizers; Loshchilov & Hutter 2019).
    Decoupled(f32),
}

impl WeightDecay {
    pub(crate) fn validate(self) -> Result<(), Error> {
        match self {
            WeightDecay::None => Ok(()),
            WeightDecay::L2(wd) | WeightDecay::Decoupled(wd) => non_negative("weight_decay", wd),
        }
    }

    /// The L2 coefficient (0 unless L2).
    pub(crate) fn l2(self) -> f32 {
        match self {
            WeightDecay::L2(wd) => wd,
            _ => 0.0,
        }
    }

    /// The factor `1 - lr * wd` that decoupled decay multiplies the weights by (1 otherwise),
    /// computed in `f64` and rounded once.
    pub(crate) fn decay_factor(self, lr: f32) -> f32 {
        match self {
            WeightDecay::Decoupled(wd) => (1.0 - f64::from(lr) * f64::from(wd)) as f32,
            _ => 1.0,
        }
    }
}

/// How every optimizer reads its gradient and prepares its weights, with coefficients computed
/// once per call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradientIn {
    /// `-1` to maximize, else `1`.
    pub(crate) sign: f32,
    /// The L2 coefficient; 0 for none.
    pub(crate) l2: f32,
    /// The decoupled decay factor `1 - lr * wd`; 1 for none.
    pub(crate) decay: f32,
}

impl GradientIn {
    pub(crate) fn new(maximize: bool, weight_decay: WeightDecay, lr: f32) -> GradientIn {
        GradientIn {
            sign: if maximize { -1.0 } else { 1.0 },
            l2: weight_decay.l2(),
            decay: weight_decay.decay_factor(lr),
        }
    }

    /// The gradient as the update uses it: `sign * g + l2 * w` (the L2 term with the weights
    /// before any decay). The L2 term is skipped when its coefficient is 0, so that the
    /// result is exactly `g` (and an infinite weight does not turn it into NaN).
    #[inline(always)]
    pub(crate) fn gradient<S: Simd>(self, simd: S, g: S::f32s, w: S::f32s) -> S::f32s {
        let g = simd.mul_f32s(g, simd.splat_f32s(self.sign));
        if self.l2 != 0.0 {
            simd.mul_add_f32s(simd.splat_f32s(self.l2), w, g)
        } else {
            g
        }
    }

    /// The weights after decoupled decay, `w * (1 - lr * wd)`; untouched without it.
    #[inline(always)]
    pub(crate) fn decayed<S: Simd>(self, simd: S, w: S::f32s) -> S::f32s {
        if self.decay != 1.0 {
            simd.mul_f32s(w, simd.splat_f32s(self.decay))
        } else {
            w
        }
    }
}
