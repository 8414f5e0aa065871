//! ASGD (averaged SGD; Polyak & Juditsky 1992, with the step-size decay of Bottou 2012), with
//! the semantics of PyTorch's `torch.optim.ASGD`.
//!
//! The weights follow SGD with a decaying step size and a shrinkage by `lambd`; the buffer
//! `ax` keeps their running average from step `t0` on, which never feeds back into the
//! weights (read it as the averaged model). One step, with `t` the step number (from 1):
//!
//! ```text
//! eta_t = lr / (1 + lambd * lr * (t - 1))^alpha     (eta_1 = lr)
//! mu_t  = 1 / max(1, t - 1 - t0)                    (mu_1 = 1)
//! g     = (maximize ? -g : g) + l2 * w              (L2 weight decay: PyTorch's weight_decay)
//! w     = w * (1 - lambd * eta_t)
//! w    -= eta_t * g
//! ax    = w                  if mu_t = 1
//! ax   += (w - ax) * mu_t    otherwise
//! ```
//!
//! PyTorch computes `eta` and `mu` at the end of each step for the next one and keeps them as
//! `f32` tensors; the crate computes those of step `t` at step `t`, in `f64`
//! (`x^alpha` by `libm`'s `pow`, the same bits on every machine), rounds them to `f32` as
//! PyTorch stores them, and takes `1 - lambd * eta` in `f64` from the rounded `eta`, as
//! PyTorch does; [`Asgd::eta`] and [`Asgd::mu`] give them (PyTorch's state `eta` and `mu`
//! after step `t` are those of step `t + 1`). With a learning-rate schedule, `eta_t` uses the
//! rate of the call (PyTorch's, the rate of the step before). Whether `mu_t` is 1 is decided
//! per call on its `f32` value, as PyTorch's `mu.item() != 1`.
//!
//! In `f32`: `w = fma(-eta, g, w * decay)`, and `ax = fma(w - ax, mu, ax)` (PyTorch rounds the
//! product first). Decoupled weight decay is refused: ASGD's own shrinkage is the decay.
//!
//! State: `ax` per tensor (PyTorch's name), starting at zero. Checkpoint record: numbers `lr`,
//! lambd, alpha, t0, weight decay; flag maximize.

use super::elementwise_step;
use super::{Common, GradientIn, OptimizerConfig, checked, common_options, flag};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, finite, non_negative};
use crate::optim::WeightDecay;

/// A validated ASGD configuration. Build it with [`Asgd::builder`], then
/// [`AsgdBuilder::build`].
///
/// ```
/// // torch.optim.ASGD(lr=0.01, lambd=1e-4, alpha=0.75, t0=1e6)
/// let asgd = optkern::Asgd::builder(0.01).build()?;
/// let (mut w, mut ax) = (vec![1.0f32; 64], vec![0.0f32; 64]);
/// optkern::asgd_step(&mut w, &mut ax, &vec![0.5f32; 64], &asgd, 1);
/// // w * (1 - lambd * lr) - lr * g, and the average is the weights until step t0.
/// assert!((w[0] - (1.0 - 1e-6 - 0.005)).abs() < 1e-6);
/// assert_eq!(ax[0], w[0]);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Asgd {
    common: Common,
    lambd: f64,
    alpha: f64,
    t0: f64,
}

/// Collects the options of an [`Asgd`] config; [`build`](AsgdBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct AsgdBuilder {
    config: Asgd,
}

common_options!(Asgd, AsgdBuilder);

impl Asgd {
    /// ASGD with PyTorch's defaults: `lambd = 1e-4`, `alpha = 0.75`, `t0 = 1e6`, no weight
    /// decay. (PyTorch's default `lr` is `1e-2`.)
    pub fn builder(lr: f64) -> AsgdBuilder {
        AsgdBuilder {
            config: Asgd {
                common: Common::new(lr),
                lambd: 1e-4,
                alpha: 0.75,
                t0: 1e6,
            },
        }
    }

    /// The decay term `lambd`.
    pub fn lambd(&self) -> f64 {
        self.lambd
    }
    /// The power `alpha` of the step-size decay.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    /// The step `t0` after which the average starts.
    pub fn t0(&self) -> f64 {
        self.t0
    }

    /// The step size `eta` of step `step` (from 1), rounded to `f32` as PyTorch stores it.
    pub fn eta(&self, step: u64) -> f32 {
        let lr = self.common.lr;
        let t = step.saturating_sub(1) as f64;
        (lr / libm::pow(1.0 + self.lambd * lr * t, self.alpha)) as f32
    }

    /// The averaging weight `mu` of step `step` (from 1), rounded to `f32` as PyTorch stores
    /// it.
    pub fn mu(&self, step: u64) -> f32 {
        let t = step.saturating_sub(1) as f64;
        (1.0 / (t - self.t0).max(1.0)) as f32
    }

    /// The config of the quick calls (`asgd_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn asgd_quick(lr: f32, step: u64) -> Result<(Asgd, u64), Error> {
        Ok((Asgd::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        if let WeightDecay::Decoupled(wd) = self.common.weight_decay {
            return Err(Error::InvalidHyperparameter {
                name: "weight_decay",
                value: wd,
                requirement: "L2 or none: ASGD's decay is its own `lambd` (PyTorch's ASGD has \
                              L2 weight decay only)",
            });
        }
        non_negative("lambd", self.lambd)?;
        non_negative("alpha", self.alpha)?;
        non_negative("t0", self.t0)?;
        finite("t0", self.t0)?;
        // eta is largest at step 1 (lr): the shrinkage 1 - lambd * eta is then at its
        // smallest and must not be negative.
        if 1.0 - self.lambd * f64::from(self.common.lr as f32) < 0.0 {
            return Err(Error::InvalidHyperparameter {
                name: "lambd",
                value: self.lambd,
                requirement: "at most 1 / lr (the weights are multiplied by 1 - lambd * eta, \
                              which must not be negative)",
            });
        }
        Ok(())
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> AsgdUpdate {
        let eta = self.eta(step);
        let mu = self.mu(step);
        AsgdUpdate {
            input: self.common.gradient_in(scale),
            eta,
            shrink: (1.0 - self.lambd * f64::from(eta)) as f32,
            mu,
            copy: mu == 1.0,
        }
    }
}

impl AsgdBuilder {
    /// The decay term `lambd` (finite, `>= 0`, at most `1 / lr`; PyTorch's default `1e-4`).
    pub fn lambd(mut self, lambd: f64) -> Self {
        self.config.lambd = lambd;
        self
    }
    /// The power of the step-size decay (finite, `>= 0`; PyTorch's default 0.75).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.config.alpha = alpha;
        self
    }
    /// The point at which averaging starts (finite, `>= 0`; PyTorch's default `1e6`).
    pub fn t0(mut self, t0: f64) -> Self {
        self.config.t0 = t0;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `lambd`, `alpha` finite and `>= 0` (also in
    /// `f32`), `lambd * lr <= 1`; `t0` finite and `>= 0`; weight decay L2 (finite, `>= 0`) or
    /// none.
    pub fn build(self) -> Result<Asgd, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one ASGD step.
#[derive(Clone, Copy, Debug)]
struct AsgdUpdate {
    input: GradientIn,
    eta: f32,
    shrink: f32,
    mu: f32,
    /// `mu == 1`: the average is the weights.
    copy: bool,
}

impl Update<1, 0> for AsgdUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [ax]: [S::f32s; 1],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 1], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = simd.mul_f32s(w, simd.splat_f32s(self.shrink));
        let w = simd.mul_add_f32s(simd.splat_f32s(-self.eta), g, w);
        let ax = if self.copy {
            w
        } else {
            simd.mul_add_f32s(simd.sub_f32s(w, ax), simd.splat_f32s(self.mu), ax)
        };
        (w, [ax], [])
    }
}

impl OptimizerConfig for Asgd {
    const FIELDS: (usize, usize) = (5, 1);
    const FLAG_NAMES: &'static [&'static str] = &["maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["ax"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let wd = match self.weight_decay() {
            WeightDecay::L2(wd) => wd,
            _ => 0.0,
        };
        (
            vec![self.lr(), self.lambd, self.alpha, self.t0, wd],
            vec![u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        // Only the bits of +0 mean none (so that -0 is read back as it was written).
        let wd = if nums[4].to_bits() == 0 {
            WeightDecay::None
        } else {
            WeightDecay::L2(nums[4])
        };
        let builder = Asgd::builder(nums[0])
            .lambd(nums[1])
            .alpha(nums[2])
            .t0(nums[3])
            .weight_decay(wd)
            .maximize(flag(flags[0])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Asgd, scale, step| c.update(step, scale), 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's schedule: eta_1 = lr, mu = 1 until step t0 + 2.
    #[test]
    fn schedule_by_step() {
        let asgd = Asgd::builder(0.01).lambd(1e-2).t0(2.0).build().unwrap();
        assert_eq!(asgd.eta(1), 0.01);
        let eta3 = 0.01 / (1.0 + 1e-2 * 0.01 * 2.0f64).powf(0.75);
        assert!((f64::from(asgd.eta(3)) - eta3).abs() <= 1e-9);
        assert_eq!(
            [1, 2, 3, 4, 5, 6].map(|t| asgd.mu(t)),
            [1.0, 1.0, 1.0, 1.0, 0.5, 1.0 / 3.0]
        );
    }
}
