//! ADOPT (Taniguchi et al. 2024: Adam that converges with any `beta2`, by normalizing the
//! gradient with the second moment of the step before), with the semantics of
//! `pytorch_optimizer` 4.1's `ADOPT` and its default clipping.
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g = (maximize ? -g : g) + l2 * w             (L2 weight decay)
//! w = w * (1 - lr * wd)                        (decoupled weight decay: weight_decouple)
//! step 1:  v = g * g                           (nothing else: w moves only by the decay)
//! step t:  n = g / max(sqrt(v), eps)           (v of the step before; eps a floor)
//!          n = clamp(n, -t^0.25, t^0.25)       (the default clip_lambda; optional)
//!          m = beta1 * m + (1 - beta1) * n
//!          w = w - lr * m
//!          v = beta2 * v + (1 - beta2) * g * g
//! ```
//!
//! There is no bias correction. On step 1 neither buffer is read: `v` becomes `g * g` and `m`
//! is left as it is (zero, as the library creates it). The clip bound `t^0.25` is computed
//! once per call in `f64` as `sqrt(sqrt(t))` (two correctly rounded roots: the same bits on
//! every machine) and rounded to `f32`. A NaN propagates through the floor and the clip (as
//! `torch.clamp`).
//!
//! In `f32`: `n = g / max(sqrt(v), eps)` (one division, no estimate, on every backend),
//! `m = lerp(m, n, 1-beta1)` as PyTorch's `exp_avg.lerp_` (see Adam), `w = fma(-lr, m, w)`,
//! `v = fma(1-beta2, g*g, beta2*v)`. The library's `fixed_decay` (decay not scaled by `lr`)
//! is not modelled.
//!
//! State: `m` and `v` per tensor (the library's `exp_avg` and `exp_avg_sq`), both starting at
//! zero. Checkpoint record: numbers `lr`, beta1, beta2, eps, weight decay; flags weight-decay
//! mode, maximize, clip.

use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag};
use super::{betas_option, elementwise_step, eps_option};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};

/// A validated ADOPT configuration. Build it with [`Adopt::builder`], then
/// [`AdoptBuilder::build`].
///
/// ```
/// // pytorch_optimizer.ADOPT(lr=1e-3, betas=(0.9, 0.9999), eps=1e-6)
/// let adopt = optkern::Adopt::builder(1e-3).build()?;
/// let (mut w, mut m, mut v) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// optkern::adopt_step(&mut w, &mut m, &mut v, &vec![0.5f32; 64], &adopt, 1);
/// assert_eq!((w[0], v[0]), (1.0, 0.25)); // step 1 only keeps g * g
/// optkern::adopt_step(&mut w, &mut m, &mut v, &vec![0.5f32; 64], &adopt, 2);
/// // n = g / sqrt(v) = 1, m = 0.1, w -= lr * m.
/// assert!((w[0] - (1.0 - 1e-4)).abs() < 1e-7);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adopt {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
    clip: bool,
}

/// Collects the options of an [`Adopt`] config; [`build`](AdoptBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdoptBuilder {
    config: Adopt,
}

common_options!(Adopt, AdoptBuilder);
betas_option!(Adopt, AdoptBuilder);
eps_option!(Adopt, AdoptBuilder);

impl Adopt {
    /// ADOPT with `pytorch_optimizer`'s defaults: `betas = (0.9, 0.9999)`, `eps = 1e-6`, the
    /// clip `t^0.25`, no weight decay. (Its default `lr` is `1e-3`.)
    pub fn builder(lr: f64) -> AdoptBuilder {
        AdoptBuilder {
            config: Adopt {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.9999,
                eps: 1e-6,
                clip: true,
            },
        }
    }

    /// Whether the normalized gradient is clipped to `[-t^0.25, t^0.25]`.
    pub fn clip(&self) -> bool {
        self.clip
    }

    /// The clip bound of step `step`, `t^0.25`, as the kernels use it.
    pub fn clip_bound(step: u64) -> f32 {
        (step as f64).sqrt().sqrt() as f32
    }

    /// The config of the quick calls (`adopt_step_f32`, ...): the library's defaults with
    /// `lr`.
    pub(crate) fn adopt_quick(lr: f32, step: u64) -> Result<(Adopt, u64), Error> {
        Ok((Adopt::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> AdoptUpdate {
        AdoptUpdate {
            input: self.common.gradient_in(scale),
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            eps: self.eps as f32,
            lr: self.common.lr as f32,
            clip: if self.clip {
                Adopt::clip_bound(step)
            } else {
                f32::INFINITY
            },
            first: step == 1,
        }
    }
}

impl AdoptBuilder {
    /// Clip the normalized gradient to `[-t^0.25, t^0.25]` (on by default: the library's
    /// default `clip_lambda`; off: its `clip_lambda=None`).
    pub fn clip(mut self, clip: bool) -> Self {
        self.config.clip = clip;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; `eps` finite and `> 0`;
    /// weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Adopt, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one ADOPT step.
#[derive(Clone, Copy, Debug)]
struct AdoptUpdate {
    input: GradientIn,
    lerp: Lerp,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    lr: f32,
    /// The clip bound (infinite without clipping).
    clip: f32,
    /// Step 1: `v = g * g`, nothing else.
    first: bool,
}

impl Update<2, 0> for AdoptUpdate {
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
        let g2 = simd.mul_f32s(g, g);
        if self.first {
            return (w, [m, g2], []);
        }
        let eps = simd.splat_f32s(self.eps);
        let root = simd.sqrt_f32s(v);
        // The floor keeps a NaN (the comparison is false).
        let denom = simd.select_f32s(simd.less_than_f32s(root, eps), eps, root);
        let n = simd.div_f32s(g, denom);
        let (lo, hi) = (simd.splat_f32s(-self.clip), simd.splat_f32s(self.clip));
        let n = simd.select_f32s(simd.less_than_f32s(n, lo), lo, n);
        let n = simd.select_f32s(simd.greater_than_f32s(n, hi), hi, n);
        let m = self.lerp.apply(simd, m, n);
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.lr), m, w);
        let v = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta2),
            g2,
            simd.mul_f32s(simd.splat_f32s(self.beta2), v),
        );
        (w, [m, v], [])
    }
}

impl OptimizerConfig for Adopt {
    const FIELDS: (usize, usize) = (5, 3);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize", "clip"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![self.lr(), self.beta1, self.beta2, self.eps, wd],
            vec![mode, u8::from(self.maximize()), u8::from(self.clip)],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Adopt::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay_from(flags[0], nums[4])?)
            .maximize(flag(flags[1])?)
            .clip(flag(flags[2])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Adopt, scale, step| c.update(step, scale), 2);
}
