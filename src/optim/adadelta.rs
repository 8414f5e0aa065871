//! Adadelta (Zeiler 2012), with the semantics of PyTorch's `torch.optim.Adadelta`.
//!
//! One step:
//!
//! ```text
//! g     = (maximize ? -g : g) + l2 * w          (L2 weight decay: PyTorch's weight_decay)
//! w     = w * (1 - lr * wd)                     (decoupled weight decay, if chosen instead)
//! sq    = rho * sq + (1 - rho) * g * g
//! delta = sqrt(acc + eps) / sqrt(sq + eps) * g  (eps inside both roots; acc of the step before)
//! acc   = rho * acc + (1 - rho) * delta * delta
//! w    -= lr * delta
//! ```
//!
//! Nothing depends on the step number: the first step is the same formula with both
//! accumulators at zero. In `f32` each element computes `sq = fma((1-rho)*g, g, rho*sq)`,
//! `delta = (sqrt(acc + eps) / sqrt(sq + eps)) * g` (two correctly rounded roots, one
//! division, no estimate, on every backend), `acc = fma((1-rho)*delta, delta, rho*acc)` and
//! `w = fma(-lr, delta, w)` (the weight `1 - rho` applied before the square, so that at
//! `rho = 1` an average keeps its value where the square would overflow); `rho`, `1 - rho`
//! (computed in `f64`), `eps` and `lr` are rounded once to `f32`.
//!
//! State: `square_avg` and `acc_delta` per tensor (PyTorch's names), both starting at zero.
//! Checkpoint record: numbers `lr`, rho, eps, weight decay; flags weight-decay mode, maximize.

use super::{Common, GradientIn, OptimizerConfig, checked, common_options, flag};
use super::{elementwise_step, eps_option};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_closed};

/// A validated Adadelta configuration. Build it with [`Adadelta::builder`], then
/// [`AdadeltaBuilder::build`].
///
/// ```
/// use optkern::{Adadelta, WeightDecay};
///
/// // torch.optim.Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.01)
/// let adadelta = Adadelta::builder(1.0).weight_decay(WeightDecay::L2(0.01)).build()?;
/// let (mut w, mut sq, mut acc) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// let g = vec![0.5f32; 64];
/// optkern::adadelta_step(&mut w, &mut sq, &mut acc, &g, &adadelta, 1);
/// // The first step is lr * sqrt(eps) / sqrt(0.1 g^2 + eps) * g: about 3.2e-3 here.
/// assert!((w[0] - (1.0 - 3.2e-3)).abs() < 1e-4);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adadelta {
    common: Common,
    rho: f64,
    eps: f64,
}

/// Collects the options of an [`Adadelta`] config; [`build`](AdadeltaBuilder::build) checks
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdadeltaBuilder {
    config: Adadelta,
}

common_options!(Adadelta, AdadeltaBuilder);
eps_option!(Adadelta, AdadeltaBuilder);

impl Adadelta {
    /// Adadelta with PyTorch's defaults: `rho = 0.9`, `eps = 1e-6`, no weight decay.
    /// (PyTorch's default `lr` is `1.0`.)
    pub fn builder(lr: f64) -> AdadeltaBuilder {
        AdadeltaBuilder {
            config: Adadelta {
                common: Common::new(lr),
                rho: 0.9,
                eps: 1e-6,
            },
        }
    }

    /// The decay of both running averages.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    /// The config of the quick calls (`adadelta_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn adadelta_quick(lr: f32) -> Result<(Adadelta, u64), Error> {
        Ok((Adadelta::builder(lr.into()).build()?, 1))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        // As PyTorch: at 1 the averages keep their starting zeros.
        unit_interval_closed("rho", self.rho)?;
        positive("eps", self.eps)
    }

    /// The coefficients of a step, computed once per call.
    fn update(&self, scale: f64) -> AdadeltaUpdate {
        AdadeltaUpdate {
            input: self.common.gradient_in(scale),
            rho: self.rho as f32,
            one_minus_rho: (1.0 - self.rho) as f32,
            eps: self.eps as f32,
            lr: self.common.lr as f32,
        }
    }
}

impl AdadeltaBuilder {
    /// The decay of both running averages, in `[0, 1]` (PyTorch's `rho`, default 0.9).
    pub fn rho(mut self, rho: f64) -> Self {
        self.config.rho = rho;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= rho <= 1`; `eps` finite and `> 0`, also in
    /// `f32`; weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Adadelta, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one Adadelta step.
#[derive(Clone, Copy, Debug)]
struct AdadeltaUpdate {
    input: GradientIn,
    rho: f32,
    one_minus_rho: f32,
    eps: f32,
    lr: f32,
}

impl Update<2, 0> for AdadeltaUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [sq, acc]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let (rho, one_minus_rho, eps) = (
            simd.splat_f32s(self.rho),
            simd.splat_f32s(self.one_minus_rho),
            simd.splat_f32s(self.eps),
        );
        // `(1 - rho) * x` first, then the fma with `x`: at `rho = 1` the average keeps its
        // value even where `x * x` would overflow (0 * inf would be a NaN).
        let sq = simd.mul_add_f32s(simd.mul_f32s(one_minus_rho, g), g, simd.mul_f32s(rho, sq));
        let std = simd.sqrt_f32s(simd.add_f32s(sq, eps));
        let rms_delta = simd.sqrt_f32s(simd.add_f32s(acc, eps));
        let delta = simd.mul_f32s(simd.div_f32s(rms_delta, std), g);
        let acc = simd.mul_add_f32s(
            simd.mul_f32s(one_minus_rho, delta),
            delta,
            simd.mul_f32s(rho, acc),
        );
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.lr), delta, w);
        (w, [sq, acc], [])
    }
}

impl OptimizerConfig for Adadelta {
    const FIELDS: (usize, usize) = (4, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["square_avg", "acc_delta"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.rho, self.eps, wd],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Adadelta::builder(nums[0])
            .rho(nums[1])
            .eps(nums[2])
            .weight_decay(weight_decay_from(flags[0], nums[3])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Adadelta, scale, _| c.update(scale), 2);
}
