//! The optimizers, one file each: a validated config type and its builder, the per-element
//! formula, how it runs over many tensors, and its checkpoint fields. The registry
//! (`optim/registry.rs`) lists them, once each; the enum [`Optimizer`](crate::Optimizer), the
//! executor's calls, the free functions and the checkpoint code table are generated from it.
//! Each module's documentation gives its optimizer's formula, its order of operations in `f32`,
//! its state buffers and its checkpoint record.
//!
//! What every optimizer shares lives here: the common options (learning rate, maximize, weight
//! decay) and their builder methods, how the gradient is read (maximize, the L2 term), how
//! decoupled weight decay shrinks the weights, the lane operations whose NaN behaviour differs
//! between instruction sets (so they are written out here, the same everywhere), the
//! step-dependent coefficients, and the helpers of the checkpoint fields.
//!
//! This layer sits above the kernel driver and below the executor: it runs its kernels through
//! the driver's context (backend, threads, gradient multiplier, rounding), never through an
//! [`Executor`](crate::Executor). See `ARCHITECTURE.md`.

use pulp::Simd;

use crate::driver::{Context, TensorStep};
use crate::element::Element;
use crate::error::{CheckpointError, Error, non_negative};

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod ademamix;
pub mod adopt;
pub mod asgd;
pub mod lamb;
pub mod lion;
pub mod momentum;
pub mod nadam;
pub mod radam;
pub(crate) mod registry;
pub mod rmsprop;
pub mod rprop;
pub mod schedulefree;
pub mod sgd;

/// What the registry needs of an optimizer config: its state buffers, its checkpoint fields,
/// and how one step runs over many tensors. Each optimizer's file implements it; nothing else
/// does.
pub(crate) trait OptimizerConfig: Copy + Sized {
    /// The numbers (`f64`) and flags (`u8`) of its checkpoint record.
    const FIELDS: (usize, usize);

    /// The names of the flags of its checkpoint record, in order (`FIELDS.1` of them), as the
    /// builder calls the options they stand for.
    const FLAG_NAMES: &'static [&'static str];

    /// The state buffers of each tensor, in the order a [`TensorStep`] gives them. Decided
    /// once, here, from the config.
    fn state_buffers(&self) -> &'static [&'static str];

    /// The checkpoint record: exactly `FIELDS` numbers and flags.
    fn fields(&self) -> (Vec<f64>, Vec<u8>);

    /// The config from a checkpoint record of the right length, validated as its builder
    /// validates.
    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError>;

    /// One step of every tensor (already checked against [`state_buffers`](Self::state_buffers)),
    /// with the context's gradient multiplier and rounding, in one parallel region where it can.
    fn step_many<W: Element, T: Element, G: Element, C: Element>(
        &self,
        ctx: &Context,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        step: u64,
    );
}

/// Writes [`OptimizerConfig::step_many`] for an elementwise optimizer: `$update(config,
/// grad_scale, step)` gives the step's coefficients (an `Update` for each of the state-buffer
/// counts `$n` the optimizer can have), and the config's number of state buffers picks the
/// kernel.
macro_rules! elementwise_step {
    ($update:expr, $($n:literal),+) => {
        fn step_many<
            W: $crate::element::Element,
            T: $crate::element::Element,
            G: $crate::element::Element,
            C: $crate::element::Element,
        >(
            &self,
            ctx: &$crate::driver::Context,
            tensors: &mut [$crate::driver::TensorStep<'_, W, T, G, C>],
            step: u64,
        ) {
            let update = ($update)(self, ctx.grad_scale, step);
            match $crate::optim::OptimizerConfig::state_buffers(self).len() {
                $($n => ctx.elementwise::<_, _, _, _, _, $n>(tensors, update, step),)+
                n => unreachable!("{n} state buffers"),
            }
        }
    };
}
pub(crate) use elementwise_step;

/// Writes the `betas` getter of a config and its builder method (fields `beta1`, `beta2`).
macro_rules! betas_option {
    ($config:ident, $builder:ident) => {
        impl $config {
            /// `(beta1, beta2)`.
            pub fn betas(&self) -> (f64, f64) {
                (self.beta1, self.beta2)
            }
        }

        impl $builder {
            /// `beta1` and `beta2`, each in `[0, 1)`.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.config.beta1 = beta1;
                self.config.beta2 = beta2;
                self
            }
        }
    };
}
pub(crate) use betas_option;

/// Writes the `eps` getter of a config and its builder method (field `eps`).
macro_rules! eps_option {
    ($config:ident, $builder:ident) => {
        impl $config {
            /// Epsilon.
            pub fn eps(&self) -> f64 {
                self.eps
            }
        }

        impl $builder {
            /// Epsilon (finite and `> 0`).
            pub fn eps(mut self, eps: f64) -> Self {
                self.config.eps = eps;
                self
            }
        }
    };
}
pub(crate) use eps_option;

/// The options every optimizer has: the learning rate, maximize, and weight decay. Each config
/// holds one; [`common_options`] writes their getters, `set_lr` and the builder methods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Common {
    pub(crate) lr: f64,
    pub(crate) maximize: bool,
    pub(crate) weight_decay: WeightDecay,
}

impl Common {
    pub(crate) const fn new(lr: f64) -> Common {
        Common {
            lr,
            maximize: false,
            weight_decay: WeightDecay::None,
        }
    }

    /// The learning rate finite and `>= 0`, the weight decay valid, and for decoupled decay
    /// `lr * weight_decay <= 1`: the factor `1 - lr * weight_decay` that multiplies the
    /// weights (computed in `f64`, rounded once to `f32`) is not negative, so the weights never
    /// flip sign from the decay alone (PyTorch accepts such a factor).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        non_negative("lr", self.lr)?;
        self.weight_decay.validate()?;
        if let WeightDecay::Decoupled(wd) = self.weight_decay
            && self.weight_decay.decay_factor(self.lr) < 0.0
        {
            return Err(Error::InvalidHyperparameter {
                name: "weight_decay",
                value: wd,
                requirement: "at most 1 / lr with decoupled decay (the weights are multiplied \
                              by 1 - lr * weight_decay, which must not be negative)",
            });
        }
        Ok(())
    }

    /// How the gradient is read with the multiplier `scale`.
    pub(crate) fn gradient_in(&self, scale: f64) -> GradientIn {
        GradientIn::new(self.maximize, self.weight_decay, self.lr, scale)
    }
}

/// Writes the common options of a config type (a `common: Common` field) and its builder (a
/// `config` field): the getters `lr`, `maximize`, `weight_decay`, the setter `set_lr`, and the
/// builder methods `maximize` and `weight_decay`.
macro_rules! common_options {
    ($config:ident, $builder:ident) => {
        impl $config {
            /// The learning rate.
            pub fn lr(&self) -> f64 {
                self.common.lr
            }
            /// Whether the objective is maximized (the gradient is negated).
            pub fn maximize(&self) -> bool {
                self.common.maximize
            }
            /// The weight decay.
            pub fn weight_decay(&self) -> $crate::WeightDecay {
                self.common.weight_decay
            }
            /// Changes the learning rate (for a schedule), checking the config with it as
            /// `build` does: finite and `>= 0` (also in `f32`), with decoupled weight decay
            /// `lr * weight_decay <= 1`, and whatever else the optimizer's `build` requires of
            /// it (Adam's and Adamax's first step size). Nothing changes when it fails.
            pub fn set_lr(&mut self, lr: f64) -> Result<(), $crate::Error> {
                let mut next = *self;
                next.common.lr = lr;
                next.validate()?;
                *self = next;
                Ok(())
            }
        }

        impl $builder {
            /// Maximize the objective instead of minimizing it (the gradient is negated).
            pub fn maximize(mut self, maximize: bool) -> Self {
                self.config.common.maximize = maximize;
                self
            }
            /// Weight decay: [`WeightDecay::L2`](crate::WeightDecay::L2) (a term added to the
            /// gradient) or [`WeightDecay::Decoupled`](crate::WeightDecay::Decoupled) (the
            /// weights shrink first); finite and `>= 0`.
            pub fn weight_decay(mut self, weight_decay: $crate::WeightDecay) -> Self {
                self.config.common.weight_decay = weight_decay;
                self
            }
        }
    };
}
pub(crate) use common_options;

/// Checks the largest step size of a bias-corrected first moment, `lr / (1 - beta1)` (that of
/// step 1: `1 - beta1^t` grows with `t`, and with epsilon in `v_hat` the factor
/// `sqrt(1 - beta2^t) <= 1` only shrinks it), as the `f32` the kernels use: with `beta1` near 1
/// a finite `lr` can give an infinite step (`lr = 1e32`, `beta1 = 0.9999999`).
pub(crate) fn first_step_size(lr: f64, beta1: f64) -> Result<(), Error> {
    let step_size = lr / (1.0 - beta1);
    if (step_size as f32).is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name: "lr / (1 - beta1)",
            value: step_size,
            requirement: "finite once rounded to f32: it is the step size of step 1",
        })
    }
}

/// `(1 - beta1^t, 1 - beta2^t)`, in `f64` by repeated squaring: Adam's, LAMB's and the
/// stateful optimizer's bias corrections, computed here only.
pub(crate) fn bias_corrections(beta1: f64, beta2: f64, step: u64) -> (f64, f64) {
    (1.0 - pow_u64(beta1, step), 1.0 - pow_u64(beta2, step))
}

/// A checkpoint flag: 0 or 1.
pub(crate) fn flag(value: u8) -> Result<bool, CheckpointError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MALFORMED_FLAG),
    }
}

/// The error of a flag outside its range.
pub(crate) const MALFORMED_FLAG: CheckpointError = CheckpointError::Malformed {
    reason: "a config flag has a value outside its range",
};

/// The checkpoint form of a weight decay: a mode (0 none, 1 L2, 2 decoupled) and a value.
pub(crate) fn weight_decay_parts(wd: WeightDecay) -> (u8, f64) {
    match wd {
        WeightDecay::None => (0, 0.0),
        WeightDecay::L2(v) => (1, v),
        WeightDecay::Decoupled(v) => (2, v),
    }
}

/// A weight decay from its checkpoint form.
pub(crate) fn weight_decay_from(mode: u8, value: f64) -> Result<WeightDecay, CheckpointError> {
    match mode {
        0 if value.to_bits() == 0 => Ok(WeightDecay::None),
        1 => Ok(WeightDecay::L2(value)),
        2 => Ok(WeightDecay::Decoupled(value)),
        _ => Err(MALFORMED_FLAG),
    }
}

/// A builder's verdict on a config read from a checkpoint.
pub(crate) fn checked<T>(config: Result<T, Error>) -> Result<T, CheckpointError> {
    config.map_err(|error| CheckpointError::InvalidConfig {
        error: Box::new(error),
    })
}

/// How weight decay enters a step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum WeightDecay {
    /// No weight decay.
    #[default]
    None,
    /// An L2 penalty added to the gradient before anything else: `g += wd * w` (the
    /// `weight_decay` of PyTorch's SGD, Adam, RMSprop and Adagrad).
    L2(f64),
    /// Decoupled weight decay: the weights shrink by `w *= 1 - lr * wd` before the update
    /// (AdamW, Lion, and the `weight_decay` of Keras 3 optimizers; Loshchilov & Hutter 2019).
    Decoupled(f64),
}

impl WeightDecay {
    pub(crate) fn validate(self) -> Result<(), Error> {
        match self {
            WeightDecay::None => Ok(()),
            WeightDecay::L2(wd) | WeightDecay::Decoupled(wd) => non_negative("weight_decay", wd),
        }
    }

    /// The L2 coefficient rounded to `f32` (0 unless L2).
    pub(crate) fn l2(self) -> f32 {
        match self {
            WeightDecay::L2(wd) => wd as f32,
            _ => 0.0,
        }
    }

    /// The factor `1 - lr * wd` that decoupled decay multiplies the weights by (1 otherwise),
    /// computed in `f64` and rounded once.
    pub(crate) fn decay_factor(self, lr: f64) -> f32 {
        match self {
            WeightDecay::Decoupled(wd) => (1.0 - lr * wd) as f32,
            _ => 1.0,
        }
    }
}

/// How every optimizer reads its gradient and prepares its weights, with coefficients computed
/// once per call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GradientIn {
    /// The gradient multiplier: the executor's scale, negated to maximize.
    sign: f32,
    /// The L2 coefficient; 0 for none.
    l2: f32,
    /// The decoupled decay factor `1 - lr * wd`; 1 for none.
    decay: f32,
    /// `sign != 1`: otherwise the multiply is skipped. `g * 1` is `g` for every value but a
    /// signaling NaN (which the multiply would quiet), on every backend alike.
    scaled: bool,
    /// `l2 != 0`.
    with_l2: bool,
    /// `decay != 1`.
    decays: bool,
}

impl GradientIn {
    /// `scale` multiplies every gradient value as it is read (the executor's gradient
    /// multiplier); it is rounded once to `f32`, with the sign of `maximize` folded in.
    pub(crate) fn new(
        maximize: bool,
        weight_decay: WeightDecay,
        lr: f64,
        scale: f64,
    ) -> GradientIn {
        let sign = (if maximize { -scale } else { scale }) as f32;
        let (l2, decay) = (weight_decay.l2(), weight_decay.decay_factor(lr));
        GradientIn {
            sign,
            l2,
            decay,
            scaled: sign != 1.0,
            with_l2: l2 != 0.0,
            decays: decay != 1.0,
        }
    }

    /// The gradient as the update uses it: `scale * g + l2 * w` (the L2 term with the weights
    /// before any decay). The L2 term is skipped when its coefficient is 0, so that the
    /// result is exactly `g` (and an infinite weight does not turn it into NaN). Which terms
    /// apply is decided once per call (the fields above), not per vector.
    #[inline(always)]
    pub(crate) fn gradient<S: Simd>(self, simd: S, g: S::f32s, w: S::f32s) -> S::f32s {
        let g = if self.scaled {
            simd.mul_f32s(g, simd.splat_f32s(self.sign))
        } else {
            g
        };
        if self.with_l2 {
            simd.mul_add_f32s(simd.splat_f32s(self.l2), w, g)
        } else {
            g
        }
    }

    /// The weights after decoupled decay, `w * (1 - lr * wd)`; untouched without it.
    #[inline(always)]
    pub(crate) fn decayed<S: Simd>(self, simd: S, w: S::f32s) -> S::f32s {
        if self.decays {
            simd.mul_f32s(w, simd.splat_f32s(self.decay))
        } else {
            w
        }
    }
}

/// `start + weight * (end - start)` as PyTorch's `lerp` computes it in `f32` (Adam's
/// `exp_avg.lerp_(grad, 1 - beta1)`, RMSprop's `grad_avg.lerp_(grad, 1 - alpha)`): for
/// `|weight| < 0.5`, `fma(weight, end - start, start)`; otherwise
/// `fma(weight - 1, end - start, end)`, which is exact at `weight = 1`. The weight is rounded
/// to `f32` once per call, and the branch is chosen once per call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lerp {
    coeff: f32,
    from_end: bool,
}

impl Lerp {
    pub(crate) fn new(weight: f64) -> Lerp {
        let weight = weight as f32;
        if weight.abs() < 0.5 {
            Lerp {
                coeff: weight,
                from_end: false,
            }
        } else {
            Lerp {
                coeff: weight - 1.0,
                from_end: true,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn apply<S: Simd>(self, simd: S, start: S::f32s, end: S::f32s) -> S::f32s {
        let diff = simd.sub_f32s(end, start);
        let base = if self.from_end { end } else { start };
        simd.mul_add_f32s(simd.splat_f32s(self.coeff), diff, base)
    }
}

/// `max(a, b)` that returns a NaN when either operand is one (as `torch.maximum` does).
///
/// The instructions disagree: x86 `maxps` returns its second operand when either is NaN,
/// NEON's `fmax` returns a NaN, and Rust's `f32::max` returns the other operand. Written with
/// comparisons and selects, every backend gives the same result. For equal operands (`-0` and
/// `+0`) it returns `a`.
#[inline(always)]
pub(crate) fn max_nan<S: Simd>(simd: S, a: S::f32s, b: S::f32s) -> S::f32s {
    let larger = simd.select_f32s(simd.less_than_f32s(a, b), b, a);
    simd.select_f32s(simd.equal_f32s(b, b), larger, b)
}

/// The sign of each lane: `1`, `-1`, `+0` for both zeros, and NaN for NaN (as `torch.sign`).
///
/// Only comparisons and selects: no bit masks, so every magnitude (subnormals, huge values)
/// gets the same treatment.
#[inline(always)]
pub(crate) fn sign<S: Simd>(simd: S, x: S::f32s) -> S::f32s {
    let (one, zero) = (simd.splat_f32s(1.0), simd.splat_f32s(0.0));
    let positive = simd.select_f32s(simd.greater_than_f32s(x, zero), one, zero);
    let negative = simd.select_f32s(simd.less_than_f32s(x, zero), one, zero);
    let s = simd.sub_f32s(positive, negative);
    simd.select_f32s(simd.equal_f32s(x, x), s, x)
}

/// `base^exp` in `f64` by repeated squaring: only multiplications, each correctly rounded, so
/// the result is the same on every machine (unlike `powf`, whose last bit depends on the
/// math library). For the bias corrections `1 - beta^t`. Every product rounds once and the
/// exponents of the rounding errors add up to less than `exp`, so the relative error is below
/// `(exp - 1) * 2^-53` (to first order): for any `beta` up to `1 - 2^-24` (the largest `f32`
/// below 1) that makes the error of `1 - beta^t` below `2^-29` of its value at every `t`, far
/// below the `f32` the coefficient is rounded to.
pub(crate) fn pow_u64(base: f64, mut exp: u64) -> f64 {
    let (mut result, mut square) = (1.0f64, base);
    while exp > 0 {
        if exp & 1 == 1 {
            result *= square;
        }
        square *= square;
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow_by_squaring_is_accurate() {
        let u = f64::EPSILON / 2.0;
        for (base, exp) in [
            (0.9f64, 1u64),
            (0.999, 10),
            (0.9, 1000),
            (0.5, 64),
            (0.999, 700_000),
            (1.0 - 2f64.powi(-24), 1 << 24),
            (1.0 - 2f64.powi(-40), 1 << 40),
        ] {
            let want = base.powf(exp as f64);
            // Every case is a normal number: an underflow to 0 would make the check 0 <= 0.
            assert!(want >= f64::MIN_POSITIVE, "{base}^{exp} underflows");
            let got = pow_u64(base, exp);
            // The bound of the doc comment, plus one rounding of `powf`'s own.
            let bound = ((exp - 1) as f64 + 2.0) * u * want;
            assert!(
                (got - want).abs() <= bound,
                "{base}^{exp}: {got} vs {want} (bound {bound:e})"
            );
        }
        // Underflow gives exactly 0, as powf does.
        assert_eq!(pow_u64(0.99999, 1 << 40).to_bits(), 0);
        assert_eq!(pow_u64(0.9, 0), 1.0);
        assert_eq!(pow_u64(0.0, 5), 0.0);
    }

    #[test]
    fn nan_aware_max_and_sign_on_the_scalar_backend() {
        let s = pulp::Scalar::new();
        assert!(max_nan(s, f32::NAN, 1.0).is_nan());
        assert!(max_nan(s, 1.0, f32::NAN).is_nan());
        assert_eq!(max_nan(s, 1.0, 2.0), 2.0);
        assert_eq!(max_nan(s, 3.0, 2.0), 3.0);
        for (x, want) in [
            (2.5f32, 1.0f32),
            (-1e-40, -1.0),
            (1e-45, 1.0),
            (-3e38, -1.0),
            (-0.0, 0.0),
        ] {
            assert_eq!(sign(s, x).to_bits(), want.to_bits(), "sign({x:e})");
        }
        assert!(sign(s, f32::NAN).is_nan());
    }
}
