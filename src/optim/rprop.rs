//! Rprop (Riedmiller & Braun 1993, resilient backpropagation), with the semantics of PyTorch's
//! `torch.optim.Rprop`.
//!
//! Each element keeps its own step size, grown by `eta_plus` while the gradient keeps its sign
//! and shrunk by `eta_minus` when it flips; only the gradient's sign moves the weight. One
//! step, with `t` the step number (from 1):
//!
//! ```text
//! g    = maximize ? -g : g
//! s    = sign(g * prev)                        (the product in f32: an underflow counts as 0)
//! f    = eta_plus if s > 0, eta_minus if s < 0, 1 if s = 0
//! step = clamp(step * f, step_min, step_max)
//! g    = 0 where s < 0                         (after a sign flip, no move and no memory)
//! w   -= sign(g) * step
//! prev = g
//! ```
//!
//! The learning rate is only the initial step size: on step 1 neither buffer is read (`prev`
//! is 0 and `step` is `lr`, as PyTorch creates them), so a learning-rate schedule changes
//! nothing after step 1, as in PyTorch. A NaN in the gradient or the state propagates (`f` and
//! the clamp keep a NaN, as `torch.clamp` does). PyTorch takes the product `g * prev` in the
//! tensor's type; the crate takes it in `f32`, so for `f16` and `bf16` buffers a product
//! that underflows only in the narrower type is a sign here.
//!
//! In `f32`: `eta_plus`, `eta_minus`, `lr` and the bounds are rounded once; `step =
//! clamp(step * f)` (one rounding), `w = w - sign(g) * step` (an exact product, one rounding).
//! Rprop has no weight decay (PyTorch's has none): a config with one is refused.
//!
//! State: `prev` and `step_size` per tensor (PyTorch's names). Checkpoint record: numbers
//! `lr`, eta minus, eta plus, step minimum, step maximum; flag maximize.

use super::elementwise_step;
use super::{Common, GradientIn, OptimizerConfig, checked, common_options, flag, sign};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, non_negative};
use crate::optim::WeightDecay;

/// A validated Rprop configuration. Build it with [`Rprop::builder`], then
/// [`RpropBuilder::build`].
///
/// ```
/// // torch.optim.Rprop(lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50))
/// let rprop = optkern::Rprop::builder(0.01).build()?;
/// let (mut w, mut prev, mut step) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// optkern::rprop_step(&mut w, &mut prev, &mut step, &vec![0.5f32; 64], &rprop, 1);
/// optkern::rprop_step(&mut w, &mut prev, &mut step, &vec![0.25f32; 64], &rprop, 2);
/// // The same sign twice: a step of lr, then one of lr * 1.2.
/// assert!((w[0] - (1.0 - 0.01 - 0.012)).abs() < 1e-6);
/// assert_eq!(step[0], 0.012);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rprop {
    common: Common,
    eta_minus: f64,
    eta_plus: f64,
    step_min: f64,
    step_max: f64,
}

/// Collects the options of an [`Rprop`] config; [`build`](RpropBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct RpropBuilder {
    config: Rprop,
}

common_options!(Rprop, RpropBuilder);

impl Rprop {
    /// Rprop with PyTorch's defaults: `etas = (0.5, 1.2)`, `step_sizes = (1e-6, 50)`. `lr` is
    /// the initial step size (PyTorch's default `1e-2`).
    pub fn builder(lr: f64) -> RpropBuilder {
        RpropBuilder {
            config: Rprop {
                common: Common::new(lr),
                eta_minus: 0.5,
                eta_plus: 1.2,
                step_min: 1e-6,
                step_max: 50.0,
            },
        }
    }

    /// `(eta_minus, eta_plus)`: the factors of the step size after a sign flip and after the
    /// same sign.
    pub fn etas(&self) -> (f64, f64) {
        (self.eta_minus, self.eta_plus)
    }

    /// `(step_min, step_max)`: the bounds of the step sizes.
    pub fn step_sizes(&self) -> (f64, f64) {
        (self.step_min, self.step_max)
    }

    /// The config of the quick calls (`rprop_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn rprop_quick(lr: f32, step: u64) -> Result<(Rprop, u64), Error> {
        Ok((Rprop::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        if self.common.weight_decay != WeightDecay::None {
            return Err(Error::InvalidHyperparameter {
                name: "weight_decay",
                value: match self.common.weight_decay {
                    WeightDecay::L2(wd) | WeightDecay::Decoupled(wd) => wd,
                    WeightDecay::None => 0.0,
                },
                requirement: "none: Rprop has no weight decay (PyTorch's Rprop has none)",
            });
        }
        let (minus, plus) = (self.eta_minus as f32, self.eta_plus as f32);
        if !(self.eta_minus > 0.0 && minus > 0.0 && minus < 1.0) {
            return Err(Error::InvalidHyperparameter {
                name: "eta_minus",
                value: self.eta_minus,
                requirement: "in (0, 1), also once rounded to f32 (the kernels' precision)",
            });
        }
        if !(self.eta_plus > 1.0 && plus > 1.0 && plus.is_finite()) {
            return Err(Error::InvalidHyperparameter {
                name: "eta_plus",
                value: self.eta_plus,
                requirement: "finite and > 1, also once rounded to f32 (the kernels' precision)",
            });
        }
        non_negative("step_min", self.step_min)?;
        non_negative("step_max", self.step_max)?;
        if self.step_min as f32 > self.step_max as f32 {
            return Err(Error::InvalidHyperparameter {
                name: "step_min",
                value: self.step_min,
                requirement: "at most step_max (in f32)",
            });
        }
        Ok(())
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> RpropUpdate {
        RpropUpdate {
            input: self.common.gradient_in(scale),
            eta_minus: self.eta_minus as f32,
            eta_plus: self.eta_plus as f32,
            step_min: self.step_min as f32,
            step_max: self.step_max as f32,
            initial: self.common.lr as f32,
            first: step == 1,
        }
    }
}

impl RpropBuilder {
    /// `(eta_minus, eta_plus)`, with `0 < eta_minus < 1 < eta_plus` (PyTorch's `etas`,
    /// default `(0.5, 1.2)`).
    pub fn etas(mut self, eta_minus: f64, eta_plus: f64) -> Self {
        self.config.eta_minus = eta_minus;
        self.config.eta_plus = eta_plus;
        self
    }

    /// `(step_min, step_max)`, finite with `0 <= step_min <= step_max` (PyTorch's
    /// `step_sizes`, default `(1e-6, 50)`).
    pub fn step_sizes(mut self, step_min: f64, step_max: f64) -> Self {
        self.config.step_min = step_min;
        self.config.step_max = step_max;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 < eta_minus < 1 < eta_plus`, also in `f32`;
    /// `0 <= step_min <= step_max`, finite; no weight decay.
    pub fn build(self) -> Result<Rprop, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Rprop step.
#[derive(Clone, Copy, Debug)]
struct RpropUpdate {
    input: GradientIn,
    eta_minus: f32,
    eta_plus: f32,
    step_min: f32,
    step_max: f32,
    /// The step size of step 1: the learning rate.
    initial: f32,
    /// Step 1: neither buffer is read.
    first: bool,
}

impl Update<2, 0> for RpropUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [prev, size]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let zero = simd.splat_f32s(0.0);
        let (prev, size) = if self.first {
            (zero, simd.splat_f32s(self.initial))
        } else {
            (prev, size)
        };
        let p = simd.mul_f32s(g, prev);
        let flipped = simd.less_than_f32s(p, zero);
        // 1 where the product is 0, eta_plus where positive, eta_minus where negative; a NaN
        // product stays NaN.
        let f = simd.select_f32s(simd.equal_f32s(p, p), simd.splat_f32s(1.0), p);
        let f = simd.select_f32s(
            simd.greater_than_f32s(p, zero),
            simd.splat_f32s(self.eta_plus),
            f,
        );
        let f = simd.select_f32s(flipped, simd.splat_f32s(self.eta_minus), f);
        // The clamp keeps a NaN (its comparisons are false).
        let size = simd.mul_f32s(size, f);
        let size = simd.select_f32s(
            simd.less_than_f32s(size, simd.splat_f32s(self.step_min)),
            simd.splat_f32s(self.step_min),
            size,
        );
        let size = simd.select_f32s(
            simd.greater_than_f32s(size, simd.splat_f32s(self.step_max)),
            simd.splat_f32s(self.step_max),
            size,
        );
        let g = simd.select_f32s(flipped, zero, g);
        let w = simd.sub_f32s(w, simd.mul_f32s(sign(simd, g), size));
        (w, [g, size], [])
    }
}

impl OptimizerConfig for Rprop {
    const FIELDS: (usize, usize) = (5, 1);
    const FLAG_NAMES: &'static [&'static str] = &["maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["prev", "step_size"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        (
            vec![
                self.lr(),
                self.eta_minus,
                self.eta_plus,
                self.step_min,
                self.step_max,
            ],
            vec![u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Rprop::builder(nums[0])
            .etas(nums[1], nums[2])
            .step_sizes(nums[3], nums[4])
            .maximize(flag(flags[0])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Rprop, scale, step| c.update(step, scale), 2);
}
