//! AdEMAMix (Pagliardini et al. 2024: Adam with a second, slow exponential moving average of
//! the gradient mixed into the numerator), with the semantics of `pytorch_optimizer` 4.1's
//! `AdEMAMix`, its warm-up of `alpha` and `beta3` included.
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g       = (maximize ? -g : g) + l2 * w         (L2 weight decay)
//! w       = w * (1 - lr * wd)                    (decoupled weight decay: weight_decouple)
//! alpha_t = min(t * alpha / T, alpha)            (alpha without a warm-up T)
//! beta3_t = min(exp(ln(beta1) ln(beta3) / ((1 - t/T) ln(beta3) + (t/T) ln(beta1))), beta3)
//!                                                (beta3 without a warm-up)
//! m       = beta1 * m + (1 - beta1) * g
//! v       = beta2 * v + (1 - beta2) * g * g
//! slow    = beta3_t * slow + (1 - beta3_t) * g   (not bias-corrected)
//! denom   = sqrt(v) / sqrt(1 - beta2^t) + eps
//! w      -= lr * (m / (1 - beta1^t) + alpha_t * slow) / denom
//! ```
//!
//! The coefficients are computed once per call in `f64` (`exp` and `ln` by `libm`, pure
//! arithmetic with the same bits on every machine; `beta^t` by repeated squaring) and rounded
//! once to `f32`: `a = lr / (1 - beta1^t)`, `b = lr * alpha_t`, `k = 1 / sqrt(1 - beta2^t)`.
//! In `f32` each element computes both averages as PyTorch's `lerp` (see Adam),
//! `v = fma(1-beta2, g*g, beta2*v)`, `denom = fma(sqrt(v), k, eps)` and
//! `w = w - fma(a, m, b*slow) / denom` (one division, no estimate, on every backend). The
//! library's `fixed_decay`, `cautious` and `stable_adamw` options are not modelled.
//!
//! State: `m`, `v` and `slow` per tensor (the library's `exp_avg`, `exp_avg_sq` and
//! `exp_avg_slow`), all starting at zero. Checkpoint record: numbers `lr`, beta1, beta2,
//! beta3, alpha, warm-up `T` (0 for none), eps, weight decay; flags weight-decay mode,
//! maximize.

use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag};
use super::{betas_option, bias_corrections, elementwise_step, eps_option};
use super::{first_step_size, weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, non_negative, positive, unit_interval_open};

/// A validated AdEMAMix configuration. Build it with [`Ademamix::builder`], then
/// [`AdemamixBuilder::build`].
///
/// ```
/// // pytorch_optimizer.AdEMAMix(lr=1e-3, betas=(0.9, 0.999, 0.9999), alpha=5.0,
/// //                            t_alpha_beta3=1e5)
/// let ademamix = optkern::Ademamix::builder(1e-3).t_alpha_beta3(Some(1e5)).build()?;
/// assert_eq!(ademamix.alpha_at(50_000), 2.5);
/// let (mut w, mut m, mut v, mut slow) =
///     (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// optkern::ademamix_step(&mut w, &mut m, &mut v, &mut slow, &vec![0.5f32; 64], &ademamix, 1);
/// // Step 1: the Adam step of lr, and lr * alpha_1 * slow / denom, tiny (about 5e-9).
/// assert!((w[0] - (1.0 - 1e-3)).abs() < 1e-6);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ademamix {
    common: Common,
    beta1: f64,
    beta2: f64,
    beta3: f64,
    alpha: f64,
    warmup: Option<f64>,
    eps: f64,
}

/// Collects the options of an [`Ademamix`] config; [`build`](AdemamixBuilder::build) checks
/// them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AdemamixBuilder {
    config: Ademamix,
}

common_options!(Ademamix, AdemamixBuilder);
betas_option!(Ademamix, AdemamixBuilder);
eps_option!(Ademamix, AdemamixBuilder);

impl Ademamix {
    /// AdEMAMix with `pytorch_optimizer`'s defaults: `betas = (0.9, 0.999)`, `beta3 =
    /// 0.9999`, `alpha = 5`, no warm-up, `eps = 1e-8`, no weight decay. (Its default `lr` is
    /// `1e-3`.)
    pub fn builder(lr: f64) -> AdemamixBuilder {
        AdemamixBuilder {
            config: Ademamix {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                beta3: 0.9999,
                alpha: 5.0,
                warmup: None,
                eps: 1e-8,
            },
        }
    }

    /// The decay of the slow average (after its warm-up).
    pub fn beta3(&self) -> f64 {
        self.beta3
    }
    /// The weight of the slow average (after its warm-up).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// The warm-up length `T` of `alpha` and `beta3` (the library's `t_alpha_beta3`).
    pub fn t_alpha_beta3(&self) -> Option<f64> {
        self.warmup
    }

    /// `alpha_t` of step `step` (from 1), in `f64`.
    pub fn alpha_at(&self, step: u64) -> f64 {
        match self.warmup {
            None => self.alpha,
            Some(t) => (step as f64 * self.alpha / t).min(self.alpha),
        }
    }

    /// `beta3_t` of step `step` (from 1), in `f64`.
    pub fn beta3_at(&self, step: u64) -> f64 {
        match self.warmup {
            None => self.beta3,
            Some(t) => {
                let (ln1, ln3) = (libm::log(self.beta1), libm::log(self.beta3));
                let x = step as f64 / t;
                libm::exp(ln1 * ln3 / ((1.0 - x) * ln3 + x * ln1)).min(self.beta3)
            }
        }
    }

    /// The config of the quick calls (`ademamix_step_f32`, ...): the library's defaults with
    /// `lr`.
    pub(crate) fn ademamix_quick(lr: f32, step: u64) -> Result<(Ademamix, u64), Error> {
        Ok((Ademamix::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        unit_interval_open("beta3", self.beta3)?;
        non_negative("alpha", self.alpha)?;
        positive("eps", self.eps)?;
        first_step_size(self.common.lr, self.beta1)?;
        non_negative("lr * alpha", self.common.lr * self.alpha)?;
        if let Some(t) = self.warmup {
            positive("t_alpha_beta3", t)?;
            // The schedule of beta3 takes the logarithms of beta1 and beta3.
            if self.beta1 == 0.0 || self.beta3 == 0.0 {
                return Err(Error::InvalidHyperparameter {
                    name: if self.beta1 == 0.0 { "beta1" } else { "beta3" },
                    value: 0.0,
                    requirement: "> 0 with a warm-up (t_alpha_beta3): the schedule of beta3 \
                                  takes its logarithm",
                });
            }
        }
        Ok(())
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> AdemamixUpdate {
        let (bc1, bc2) = bias_corrections(self.beta1, self.beta2, step);
        let lr = self.common.lr;
        AdemamixUpdate {
            input: self.common.gradient_in(scale),
            lerp: Lerp::new(1.0 - self.beta1),
            slow: Lerp::new(1.0 - self.beta3_at(step)),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            k: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
            fast_step: (lr / bc1) as f32,
            slow_step: (lr * self.alpha_at(step)) as f32,
        }
    }
}

impl AdemamixBuilder {
    /// The decay of the slow average, in `[0, 1)` (default 0.9999).
    pub fn beta3(mut self, beta3: f64) -> Self {
        self.config.beta3 = beta3;
        self
    }
    /// The weight of the slow average, finite and `>= 0` (default 5).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.config.alpha = alpha;
        self
    }
    /// The warm-up of `alpha` and `beta3` over `T` steps (the library's `t_alpha_beta3`;
    /// `None`, the default, for none): finite and `> 0`.
    pub fn t_alpha_beta3(mut self, steps: Option<f64>) -> Self {
        self.config.warmup = steps;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2, beta3 < 1` (`beta1`, `beta3`
    /// above 0 with a warm-up); `alpha` finite and `>= 0`; `T` finite and `> 0`; `eps` finite
    /// and `> 0`; weight decay finite and `>= 0`; `lr / (1 - beta1)` and `lr * alpha` finite
    /// in `f32`.
    pub fn build(self) -> Result<Ademamix, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one AdEMAMix step.
#[derive(Clone, Copy, Debug)]
struct AdemamixUpdate {
    input: GradientIn,
    lerp: Lerp,
    slow: Lerp,
    beta2: f32,
    one_minus_beta2: f32,
    k: f32,
    eps: f32,
    fast_step: f32,
    slow_step: f32,
}

impl Update<3, 0> for AdemamixUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v, slow]: [S::f32s; 3],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 3], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        let m = self.lerp.apply(simd, m, g);
        let slow = self.slow.apply(simd, slow, g);
        let v = simd.mul_add_f32s(
            simd.splat_f32s(self.one_minus_beta2),
            simd.mul_f32s(g, g),
            simd.mul_f32s(simd.splat_f32s(self.beta2), v),
        );
        let denom = simd.mul_add_f32s(
            simd.sqrt_f32s(v),
            simd.splat_f32s(self.k),
            simd.splat_f32s(self.eps),
        );
        let num = simd.mul_add_f32s(
            simd.splat_f32s(self.fast_step),
            m,
            simd.mul_f32s(simd.splat_f32s(self.slow_step), slow),
        );
        let w = simd.sub_f32s(w, simd.div_f32s(num, denom));
        (w, [m, v, slow], [])
    }
}

impl OptimizerConfig for Ademamix {
    const FIELDS: (usize, usize) = (8, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "v", "slow"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![
                self.lr(),
                self.beta1,
                self.beta2,
                self.beta3,
                self.alpha,
                self.warmup.unwrap_or(0.0),
                self.eps,
                wd,
            ],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Ademamix::builder(nums[0])
            .betas(nums[1], nums[2])
            .beta3(nums[3])
            .alpha(nums[4])
            // Only the bits of +0 mean none: -0 is a warm-up the builder refuses.
            .t_alpha_beta3((nums[5].to_bits() != 0).then_some(nums[5]))
            .eps(nums[6])
            .weight_decay(weight_decay_from(flags[0], nums[7])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Ademamix, scale, step| c.update(step, scale), 3);
}
