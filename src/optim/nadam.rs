//! NAdam (Dozat 2016: Adam with Nesterov momentum), with the semantics of PyTorch's
//! `torch.optim.NAdam`, its momentum schedule (`momentum_decay`) and its
//! `decoupled_weight_decay` (NAdamW).
//!
//! One step, with `t` the step number (from 1):
//!
//! ```text
//! g       = (maximize ? -g : g) + l2 * w     (L2 weight decay: PyTorch's weight_decay)
//! w       = w * (1 - lr * wd)                (decoupled weight decay: NAdamW)
//! mu_t    = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))
//! P_t     = mu_1 * mu_2 * ... * mu_t         (PyTorch's state `mu_product`)
//! m       = beta1 * m + (1 - beta1) * g
//! v       = beta2 * v + (1 - beta2) * g * g
//! denom   = sqrt(v / (1 - beta2^t)) + eps
//! w      -= lr * (1 - mu_t) / (1 - P_t) * g / denom
//!         + lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / denom
//! ```
//!
//! The coefficients are computed once per call in `f64`: `0.96^x` by `libm`'s `pow` (pure
//! arithmetic, the same bits on every machine, unlike the platform's `powf`), `beta2^t` by
//! repeated squaring, and the product `P_t` step by step, `P_t = P_{t-1} * mu_t`. Once the
//! product is below `2^-80`, `1 - P_t` and `1 - P_t * mu_{t+1}` are exactly 1 in `f64` at
//! that step and every later one, so the product is not carried further; the last product
//! computed is kept per thread, so that consecutive steps cost one factor each. (PyTorch keeps
//! `P_t` as an `f32` tensor and rounds it at every step; the two agree to `f32` rounding.)
//! Then `k = 1/sqrt(1 - beta2^t)`, `a = lr * (1 - mu_t) / (1 - P_t)` and
//! `b = lr * mu_{t+1} / (1 - P_t * mu_{t+1})` are rounded once to `f32`.
//!
//! In `f32` each element computes `m = lerp(m, g, 1-beta1)` as PyTorch's `exp_avg.lerp_`
//! (see Adam), `v = fma(1-beta2, g*g, beta2*v)`, `denom = fma(sqrt(v), k, eps)` and
//! `w = w - fma(a, g, b*m) / denom`: one division, no estimate, on every backend (PyTorch
//! subtracts the two terms one after the other).
//!
//! State: `m` and `v` per tensor (PyTorch's `exp_avg` and `exp_avg_sq`), both starting at
//! zero; PyTorch's third state entry, `mu_product`, is [`Nadam::mu_product`] of the step.
//! Checkpoint record: numbers `lr`, beta1, beta2, eps, momentum decay, weight decay; flags
//! weight-decay mode, maximize.

use std::cell::Cell;

use super::{Common, GradientIn, Lerp, OptimizerConfig, checked, common_options, flag};
use super::{betas_option, elementwise_step, eps_option, pow_u64};
use super::{first_step_size, weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error, non_negative, positive, unit_interval_open};

/// A validated NAdam (or NAdamW) configuration. Build it with [`Nadam::builder`], then
/// [`NadamBuilder::build`].
///
/// ```
/// use optkern::{Nadam, WeightDecay};
///
/// // torch.optim.NAdam(lr=2e-3, weight_decay=0.01, decoupled_weight_decay=True): NAdamW
/// let nadamw = Nadam::builder(2e-3).weight_decay(WeightDecay::Decoupled(0.01)).build()?;
/// let (mut w, mut m, mut v) = (vec![1.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
/// let g = vec![0.5f32; 64];
/// optkern::nadam_step(&mut w, &mut m, &mut v, &g, &nadamw, 1);
/// // Step 1: the gradient term moves each weight by lr (g / sqrt(v_hat) = 1), the momentum
/// // term by lr * mu_2 / (1 - mu_1 mu_2) * m / sqrt(v_hat), about 0.056 lr, after the decay.
/// let mu = (nadamw.momentum_at(1), nadamw.momentum_at(2));
/// let want = (1.0 - 2e-5) - 2e-3 * (1.0 + mu.1 / (1.0 - mu.0 * mu.1) * 0.1);
/// assert!((f64::from(w[0]) - want).abs() < 1e-6);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nadam {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
    momentum_decay: f64,
}

/// Collects the options of a [`Nadam`] config; [`build`](NadamBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct NadamBuilder {
    config: Nadam,
}

common_options!(Nadam, NadamBuilder);
betas_option!(Nadam, NadamBuilder);
eps_option!(Nadam, NadamBuilder);

/// Below this, `1 - P` is exactly 1 in `f64` (its spacing below 1 is `2^-53`).
const NEGLIGIBLE_PRODUCT: f64 = 1.0 / (1u128 << 80) as f64;

thread_local! {
    /// The last momentum product computed on this thread: `(beta1, momentum_decay)` as bits,
    /// the step, and the product through that step.
    static LAST_PRODUCT: Cell<(u64, u64, u64, f64)> = const { Cell::new((0, 0, 0, 1.0)) };
}

impl Nadam {
    /// NAdam with PyTorch's defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`,
    /// `momentum_decay = 4e-3`, no weight decay. (PyTorch's default `lr` is `2e-3`.)
    pub fn builder(lr: f64) -> NadamBuilder {
        NadamBuilder {
            config: Nadam {
                common: Common::new(lr),
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                momentum_decay: 4e-3,
            },
        }
    }

    /// The momentum decay `psi` of the schedule `mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi))`.
    pub fn momentum_decay(&self) -> f64 {
        self.momentum_decay
    }

    /// The momentum coefficient `mu_t` of step `step`, in `f64`.
    pub fn momentum_at(&self, step: u64) -> f64 {
        self.beta1 * (1.0 - 0.5 * libm::pow(0.96, step as f64 * self.momentum_decay))
    }

    /// The product `mu_1 * ... * mu_step` (PyTorch's `mu_product` after step `step`; 1 for
    /// step 0), in `f64`. Once it falls below `2^-80` it is no longer multiplied out (it no
    /// longer changes any step: `1 - P` is exactly 1): from there on the value returned is the
    /// last product computed, below `2^-80`, not the product itself.
    pub fn mu_product(&self, step: u64) -> f64 {
        let key = (self.beta1.to_bits(), self.momentum_decay.to_bits());
        let (mut t, mut product) = LAST_PRODUCT.with(|last| {
            let (beta1, decay, t, product) = last.get();
            if (beta1, decay) == key && t <= step {
                (t, product)
            } else {
                (0, 1.0)
            }
        });
        while t < step && product >= NEGLIGIBLE_PRODUCT {
            t += 1;
            product *= self.momentum_at(t);
        }
        LAST_PRODUCT.with(|last| last.set((key.0, key.1, t, product)));
        product
    }

    /// The config of the quick calls (`nadam_step_f32`, ...): PyTorch's defaults with `lr`.
    pub(crate) fn nadam_quick(lr: f32, step: u64) -> Result<(Nadam, u64), Error> {
        Ok((Nadam::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        non_negative("momentum_decay", self.momentum_decay)?;
        // Both step sizes are at most lr / (1 - beta1): `1 - P_t >= 1 - mu_1 >= 1 - beta1`,
        // and `P_t * mu_{t+1} <= beta1`.
        first_step_size(self.common.lr, self.beta1)
    }

    /// The coefficients of step `step` (from 1), computed once per call.
    fn update(&self, step: u64, scale: f64) -> NadamUpdate {
        let lr = self.common.lr;
        let bc2 = 1.0 - pow_u64(self.beta2, step);
        let (mu, mu_next) = (self.momentum_at(step), self.momentum_at(step + 1));
        let product = self.mu_product(step);
        NadamUpdate {
            input: self.common.gradient_in(scale),
            lerp: Lerp::new(1.0 - self.beta1),
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            k: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
            grad_step: (lr * (1.0 - mu) / (1.0 - product)) as f32,
            momentum_step: (lr * mu_next / (1.0 - product * mu_next)) as f32,
        }
    }
}

impl NadamBuilder {
    /// The momentum decay `psi` (PyTorch's `momentum_decay`, default `4e-3`; finite and
    /// `>= 0`; 0 gives the constant `mu = beta1 / 2`).
    pub fn momentum_decay(mut self, momentum_decay: f64) -> Self {
        self.config.momentum_decay = momentum_decay;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; `0 <= beta1, beta2 < 1`; `eps` finite and `> 0`;
    /// momentum decay finite and `>= 0`; weight decay finite and `>= 0`; `lr / (1 - beta1)`
    /// finite in `f32` (it bounds both step sizes).
    pub fn build(self) -> Result<Nadam, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// The coefficients of one NAdam step.
#[derive(Clone, Copy, Debug)]
struct NadamUpdate {
    input: GradientIn,
    lerp: Lerp,
    beta2: f32,
    one_minus_beta2: f32,
    k: f32,
    eps: f32,
    grad_step: f32,
    momentum_step: f32,
}

impl Update<2, 0> for NadamUpdate {
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
        let m = self.lerp.apply(simd, m, g);
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
            simd.splat_f32s(self.grad_step),
            g,
            simd.mul_f32s(simd.splat_f32s(self.momentum_step), m),
        );
        let w = simd.sub_f32s(w, simd.div_f32s(num, denom));
        (w, [m, v], [])
    }
}

impl OptimizerConfig for Nadam {
    const FIELDS: (usize, usize) = (6, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (
            vec![
                self.lr(),
                self.beta1,
                self.beta2,
                self.eps,
                self.momentum_decay,
                wd,
            ],
            vec![mode, u8::from(self.maximize())],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Nadam::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .momentum_decay(nums[4])
            .weight_decay(weight_decay_from(flags[0], nums[5])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Nadam, scale, step| c.update(step, scale), 2);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product carried per thread is the product multiplied out from step 1, whatever
    /// the order of the calls, and stops changing once negligible.
    #[test]
    fn mu_product_is_the_running_product() {
        let nadam = Nadam::builder(1e-3).build().unwrap();
        let from_one = |step: u64| {
            let mut p = 1.0f64;
            for t in 1..=step {
                if p < NEGLIGIBLE_PRODUCT {
                    break;
                }
                p *= nadam.momentum_at(t);
            }
            p
        };
        for step in [0u64, 1, 2, 3, 10, 9, 500, 7, 2000, 2001, 1] {
            assert_eq!(nadam.mu_product(step).to_bits(), from_one(step).to_bits());
        }
        let other = Nadam::builder(1e-3).betas(0.5, 0.9).build().unwrap();
        let three = (1..=3).fold(1.0f64, |p, t| p * other.momentum_at(t));
        assert_eq!(other.mu_product(3).to_bits(), three.to_bits());
        assert_eq!(nadam.mu_product(3).to_bits(), from_one(3).to_bits());
        assert!(nadam.mu_product(10_000) < NEGLIGIBLE_PRODUCT);
        // PyTorch's first factor at its defaults: 0.9 * (1 - 0.5 * 0.96^0.004).
        let mu1 = 0.9 * (1.0 - 0.5 * 0.96f64.powf(0.004));
        assert!((nadam.momentum_at(1) - mu1).abs() <= 1e-16);
    }
}
