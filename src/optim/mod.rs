//! The optimizers, one file each: a validated config type, the per-element formula (an
//! [`Update`](crate::stream::Update)), and the public calls.
//!
//! What every optimizer shares lives here: how the gradient is read (maximize, the L2 term),
//! how decoupled weight decay shrinks the weights, the lane operations whose NaN behaviour
//! differs between instruction sets (so they are written out here, the same everywhere), the
//! step-dependent coefficients, and the macro that writes each optimizer's public calls.

use pulp::Simd;

use crate::Error;
use crate::error::non_negative;

pub mod adagrad;
pub mod adam;
pub mod lamb;
pub mod lion;
pub mod many;
pub mod momentum;
pub mod rmsprop;

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
/// math library). For the bias corrections `1 - beta^t`; the error is a few units in the last
/// place of an `f64`, far below the `f32` the coefficient is rounded to.
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

/// Writes an optimizer's public calls from its [`Executor`](crate::Executor) method: the
/// generic call that panics, its `try_` twin, and the fixed-type calls (every buffer of one
/// element type) with their `try_` twins.
///
/// Parameters are listed as `name: kind`, with kinds `weights` (`&mut [W]`), `state`
/// (`&mut [T]`), `optional_state` (`Option<&mut [T]>`) and `gradient` (`&[G]`), then the
/// remaining arguments with their types.
macro_rules! optimizer_calls {
    (
        $(#[$doc:meta])*
        fn $name:ident / $try_name:ident $params:tt;
        $($t:ident => $typed:ident / $try_typed:ident),+ $(,)?
    ) => {
        optimizer_calls!(@generic [$(#[$doc])*] $name, $try_name, $params);
        $(optimizer_calls!(@typed $t, $typed, $try_typed, $name, $try_name, $params);)+
    };
    (@generic [$(#[$doc:meta])*] $name:ident, $try_name:ident, ($($p:ident: $kind:ident),+; $($a:ident: $aty:ty),*)) => {
        $(#[$doc])*
        ///
        /// Runs on the default [`Executor`](crate::Executor).
        ///
        /// # Panics
        /// If a buffer's length differs from the weights', a state buffer the config needs is
        /// missing (or one it does not use is given), the step is invalid, or
        /// `OPTKERN_BACKEND` is invalid; nothing is written then.
        #[doc = concat!("[`", stringify!($try_name), "`] returns the error instead.")]
        pub fn $name<W: Element, T: Element, G: Element>(
            $($p: optimizer_calls!(@ty $kind, W, T, G),)+ $($a: $aty),*
        ) {
            if let Err(e) = crate::executor::default_executor().$name($($p,)+ $($a),*) {
                panic!("optkern::{e}");
            }
        }

        #[doc = concat!("[`", stringify!($name), "`], returning the error instead of panicking.")]
        pub fn $try_name<W: Element, T: Element, G: Element>(
            $($p: optimizer_calls!(@ty $kind, W, T, G),)+ $($a: $aty),*
        ) -> Result<(), Error> {
            crate::Executor::new()?.$name($($p,)+ $($a),*)
        }
    };
    (@typed $t:ident, $typed:ident, $try_typed:ident, $name:ident, $try_name:ident, ($($p:ident: $kind:ident),+; $($a:ident: $aty:ty),*)) => {
        #[doc = concat!("[`", stringify!($name), "`] with every buffer in `", stringify!($t), "`.")]
        ///
        /// # Panics
        #[doc = concat!("As [`", stringify!($name), "`]; [`", stringify!($try_typed), "`] returns the error instead.")]
        pub fn $typed($($p: optimizer_calls!(@ty $kind, $t, $t, $t),)+ $($a: $aty),*) {
            $name::<$t, $t, $t>($($p,)+ $($a),*)
        }

        #[doc = concat!("[`", stringify!($typed), "`], returning the error instead of panicking.")]
        pub fn $try_typed(
            $($p: optimizer_calls!(@ty $kind, $t, $t, $t),)+ $($a: $aty),*
        ) -> Result<(), Error> {
            $try_name::<$t, $t, $t>($($p,)+ $($a),*)
        }
    };
    (@ty weights, $w:ty, $t:ty, $g:ty) => { &mut [$w] };
    (@ty state, $w:ty, $t:ty, $g:ty) => { &mut [$t] };
    (@ty optional_state, $w:ty, $t:ty, $g:ty) => { Option<&mut [$t]> };
    (@ty gradient, $w:ty, $t:ty, $g:ty) => { &[$g] };
}
pub(crate) use optimizer_calls;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pow_by_squaring_is_accurate() {
        for (base, exp) in [
            (0.9f64, 1u64),
            (0.999, 10),
            (0.9, 1000),
            (0.5, 64),
            (0.99999, 1 << 40),
        ] {
            let want = base.powf(exp as f64);
            let got = pow_u64(base, exp);
            assert!(
                (got - want).abs() <= want * 1e-13,
                "{base}^{exp}: {got} vs {want}"
            );
        }
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
