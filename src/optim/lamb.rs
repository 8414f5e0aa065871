//! LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning"), with timm's semantics
//! (`timm.optim.Lamb`, the NVLAMB variant of NVIDIA's FusedLAMB).
//!
//! One step, with `t` the step number (from 1), for each tensor:
//!
//! ```text
//! g  = g / max(1, global_norm / max_grad_norm)  (optional; the norm of every tensor's gradient)
//! m  = beta1 * m + (1 - beta1) * g              (with grad_averaging; else beta1 * m + g)
//! v  = beta2 * v + (1 - beta2) * g * g
//! w  = w * (1 - lr * wd)                        (decoupled weight decay only)
//! u  = (m / bc1) / (sqrt(v) / sqrt(bc2) + eps)  (bias corrections; 1 when turned off)
//! u += wd * w                                   (L2 weight decay, the default)
//! r  = |w| / |u|, or 1 where either norm is 0   (trust ratio; clipped at 1 with trust_clip)
//! w -= lr * r * u                               (r only when wd != 0 or always_adapt)
//! ```
//!
//! The norms are per tensor, computed with the crate's deterministic reductions (the same bits
//! on every backend and thread count). So a step is two passes over memory: the first updates
//! `m` and `v` and accumulates `|w|^2` and `|u|^2`; the second recomputes `u` from the stored `m`
//! and `v` (the first pass uses them rounded to the state type too, so both agree) and
//! updates the weights. With `max_grad_norm`, a gradient-norm pass comes first. Each pass is
//! one parallel region over all the tensors of a call.
//!
//! Weight decay: [`WeightDecay::L2`] is timm's default (`wd * w` added to the update, not to
//! the gradient), [`WeightDecay::Decoupled`] its `decoupled_decay`; `L2(0)` is stored as
//! [`WeightDecay::None`], which it equals.
//!
//! State: `m`, `v` per tensor. Checkpoint record: numbers `lr`, beta1, beta2, eps, weight decay,
//! max grad norm (0 when off); flags decoupled, grad averaging, bias correction, max grad norm
//! on, trust clip, always adapt, maximize.
//!
//! ```
//! use optkern::Lamb;
//!
//! let lamb = Lamb::builder(1e-2).build().unwrap();
//! let (mut w, mut m, mut v, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
//! optkern::lamb_step(&mut w, &mut m, &mut v, &g, &lamb, 1);
//! assert!(w[0] < 1.0);
//! ```

use core::marker::PhantomData;

use pulp::Simd;

use super::{Common, GradientIn, Lerp, MALFORMED_FLAG, OptimizerConfig, WeightDecay};
use super::{betas_option, bias_corrections, checked, common_options, eps_option, flag};
use crate::arch::Lanes;
use crate::driver::{Context, Elementwise, TensorStep, Update, round_trip};
use crate::element::Element;
use crate::error::{CheckpointError, Error, positive, unit_interval_open};
use crate::reduce::{blocks, pairwise_sum};

/// A validated LAMB configuration. Build it with [`Lamb::builder`], then
/// [`LambBuilder::build`].
///
/// ```
/// use optkern::{Lamb, WeightDecay};
///
/// // timm.optim.Lamb(params, lr=1e-3, weight_decay=0.01, max_grad_norm=None)
/// let lamb = Lamb::builder(1e-3).weight_decay(WeightDecay::L2(0.01)).max_grad_norm(None).build()?;
/// assert_eq!(lamb.eps(), 1e-6);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lamb {
    common: Common,
    beta1: f64,
    beta2: f64,
    eps: f64,
    grad_averaging: bool,
    bias_correction: bool,
    max_grad_norm: Option<f64>,
    trust_clip: bool,
    always_adapt: bool,
}

/// Collects the options of a [`Lamb`] config; [`build`](LambBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct LambBuilder {
    config: Lamb,
}

common_options!(Lamb, LambBuilder);
betas_option!(Lamb, LambBuilder);
eps_option!(Lamb, LambBuilder);

impl Lamb {
    /// LAMB with timm's defaults: `betas = (0.9, 0.999)`, `eps = 1e-6`, `weight_decay = 0.01`
    /// (added to the update), gradient averaging and bias correction on, `max_grad_norm = 1.0`,
    /// no trust clipping, adaptation only where the weight decay is non-zero.
    pub fn builder(lr: f64) -> LambBuilder {
        LambBuilder {
            config: Lamb {
                common: Common {
                    weight_decay: WeightDecay::L2(0.01),
                    ..Common::new(lr)
                },
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
                grad_averaging: true,
                bias_correction: true,
                max_grad_norm: Some(1.0),
                trust_clip: false,
                always_adapt: false,
            },
        }
    }

    /// Whether the first moment averages the gradient (`1 - beta1` on `g`).
    pub fn grad_averaging(&self) -> bool {
        self.grad_averaging
    }
    /// Whether the moments are bias-corrected.
    pub fn bias_correction(&self) -> bool {
        self.bias_correction
    }
    /// The global gradient norm above which gradients are scaled down, if any.
    pub fn max_grad_norm(&self) -> Option<f64> {
        self.max_grad_norm
    }
    /// Whether the trust ratio is clipped at 1 (LAMBC).
    pub fn trust_clip(&self) -> bool {
        self.trust_clip
    }
    /// Whether the trust ratio applies even where the weight decay is 0.
    pub fn always_adapt(&self) -> bool {
        self.always_adapt
    }
    /// The config of the quick calls (`lamb_step_f32`, ...): timm's defaults with `lr`.
    pub(crate) fn lamb_quick(lr: f32, step: u64) -> Result<(Lamb, u64), Error> {
        Ok((Lamb::builder(lr.into()).build()?, step))
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()?;
        unit_interval_open("beta1", self.beta1)?;
        unit_interval_open("beta2", self.beta2)?;
        positive("eps", self.eps)?;
        if let Some(max) = self.max_grad_norm {
            positive("max_grad_norm", max)?;
        }
        Ok(())
    }

    /// The weight decay's value, and whether it is decoupled.
    fn decay_parts(&self) -> (f64, bool) {
        match self.common.weight_decay {
            WeightDecay::None => (0.0, false),
            WeightDecay::L2(wd) => (wd, false),
            WeightDecay::Decoupled(wd) => (wd, true),
        }
    }

    /// Whether the trust ratio applies.
    pub(crate) fn adapts(&self) -> bool {
        self.decay_parts().0 != 0.0 || self.always_adapt
    }

    /// The trust ratio of a tensor from its squared norms.
    pub(crate) fn trust_ratio(&self, w_sq: f64, u_sq: f64) -> f64 {
        if !self.adapts() {
            return 1.0;
        }
        let ratio = if w_sq > 0.0 && u_sq > 0.0 {
            (w_sq / u_sq).sqrt()
        } else {
            1.0
        };
        if self.trust_clip {
            ratio.min(1.0)
        } else {
            ratio
        }
    }

    /// The coefficients of step `step`, with the gradient multiplier `scale`; computed once
    /// per call.
    pub(crate) fn coefficients(&self, step: u64, scale: f64) -> LambCoefficients {
        let (bc1, bc2) = if self.bias_correction {
            bias_corrections(self.beta1, self.beta2, step)
        } else {
            (1.0, 1.0)
        };
        // The L2 term goes into the update direction, not the gradient: the gradient is read
        // with the decoupled decay only.
        let (wd, decoupled) = self.decay_parts();
        let decay = if decoupled {
            WeightDecay::Decoupled(wd)
        } else {
            WeightDecay::None
        };
        let l2 = if decoupled { 0.0 } else { wd as f32 };
        LambCoefficients {
            input: GradientIn::new(self.common.maximize, decay, self.common.lr, scale),
            first: Lerp::new(1.0 - self.beta1),
            grad_averaging: self.grad_averaging,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            bc1: bc1 as f32,
            k: (1.0 / bc2.sqrt()) as f32,
            eps: self.eps as f32,
            l2,
            with_l2: l2 != 0.0,
        }
    }
}

impl LambBuilder {
    /// Gradient averaging: `(1 - beta1)` on the gradient in the first moment (on by default).
    pub fn grad_averaging(mut self, on: bool) -> Self {
        self.config.grad_averaging = on;
        self
    }
    /// Bias correction of both moments (on by default).
    pub fn bias_correction(mut self, on: bool) -> Self {
        self.config.bias_correction = on;
        self
    }
    /// Scale every gradient down by `max(1, global_norm / max_grad_norm)` (timm's default is
    /// `Some(1.0)`; `None` turns it off).
    pub fn max_grad_norm(mut self, max_grad_norm: Option<f64>) -> Self {
        self.config.max_grad_norm = max_grad_norm;
        self
    }
    /// Clip the trust ratio at 1 (LAMBC).
    pub fn trust_clip(mut self, on: bool) -> Self {
        self.config.trust_clip = on;
        self
    }
    /// Apply the trust ratio even where the weight decay is 0.
    pub fn always_adapt(mut self, on: bool) -> Self {
        self.config.always_adapt = on;
        self
    }

    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` and the weight decay finite and `>= 0`; `0 <= beta1, beta2 < 1`;
    /// `eps` and `max_grad_norm` finite and `> 0`. An L2 decay of 0 becomes
    /// [`WeightDecay::None`].
    pub fn build(mut self) -> Result<Lamb, Error> {
        self.config.validate()?;
        if self.config.common.weight_decay == WeightDecay::L2(0.0) {
            self.config.common.weight_decay = WeightDecay::None;
        }
        Ok(self.config)
    }
}

/// The per-call coefficients both passes share.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambCoefficients {
    input: GradientIn,
    first: Lerp,
    grad_averaging: bool,
    beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    bc1: f32,
    k: f32,
    eps: f32,
    l2: f32,
    /// `l2 != 0`, decided once per call rather than per vector.
    with_l2: bool,
}

impl LambCoefficients {
    /// The update direction `u` from the (decayed) weights and the moments as stored.
    #[inline(always)]
    fn direction<S: Simd>(self, simd: S, w: S::f32s, m: S::f32s, v: S::f32s) -> S::f32s {
        let denom = simd.mul_add_f32s(
            simd.sqrt_f32s(v),
            simd.splat_f32s(self.k),
            simd.splat_f32s(self.eps),
        );
        let u = simd.div_f32s(simd.div_f32s(m, simd.splat_f32s(self.bc1)), denom);
        if self.with_l2 {
            simd.mul_add_f32s(simd.splat_f32s(self.l2), w, u)
        } else {
            u
        }
    }
}

/// LAMB's first pass: the moments (written), and the vectors whose squares give `|w|^2` and
/// `|u|^2` (the weights are only read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambMoments<T> {
    c: LambCoefficients,
    state_type: PhantomData<T>,
}

impl<T: Element> Update<2, 2> for LambMoments<T> {
    const WRITES_WEIGHTS: bool = false;

    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 2]) {
        let c = self.c;
        let g = c.input.gradient(simd, g, w);
        let w = c.input.decayed(simd, w);
        let m = if c.grad_averaging {
            c.first.apply(simd, m, g)
        } else {
            simd.add_f32s(simd.mul_f32s(simd.splat_f32s(c.beta1), m), g)
        };
        let v = simd.mul_add_f32s(
            simd.splat_f32s(c.one_minus_beta2),
            simd.mul_f32s(g, g),
            simd.mul_f32s(simd.splat_f32s(c.beta2), v),
        );
        // The second pass reads the moments back as stored: use them so here too.
        // SAFETY: reached from Isa::run, as every Update.
        let (m_stored, v_stored) =
            unsafe { (round_trip::<S, T>(simd, m), round_trip::<S, T>(simd, v)) };
        let u = c.direction(simd, w, m_stored, v_stored);
        (w, [m, v], [w, u])
    }
}

/// LAMB's second pass: the weights, from the stored moments and the tensor's trust ratio
/// (`step_size = lr * trust`); the moments are only read, the gradient not at all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LambApply {
    c: LambCoefficients,
    step_size: f32,
}

impl Update<2, 0> for LambApply {
    const WRITES_STATE: bool = false;
    const READS_GRADIENT: bool = false;

    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        [m, v]: [S::f32s; 2],
        _g: S::f32s,
    ) -> (S::f32s, [S::f32s; 2], [S::f32s; 0]) {
        let w = self.c.input.decayed(simd, w);
        let u = self.c.direction(simd, w, m, v);
        (
            simd.mul_add_f32s(simd.splat_f32s(-self.step_size), u, w),
            [m, v],
            [],
        )
    }
}

impl OptimizerConfig for Lamb {
    const FIELDS: (usize, usize) = (6, 7);
    const FLAG_NAMES: &'static [&'static str] = &[
        "weight_decay",
        "grad_averaging",
        "bias_correction",
        "max_grad_norm",
        "trust_clip",
        "always_adapt",
        "maximize",
    ];

    fn state_buffers(&self) -> &'static [&'static str] {
        &["m", "v"]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (wd, decoupled) = self.decay_parts();
        let max = self.max_grad_norm;
        let b = u8::from;
        (
            vec![
                self.lr(),
                self.beta1,
                self.beta2,
                self.eps,
                wd,
                max.unwrap_or(0.0),
            ],
            vec![
                b(decoupled),
                b(self.grad_averaging),
                b(self.bias_correction),
                b(max.is_some()),
                b(self.trust_clip),
                b(self.always_adapt),
                b(self.maximize()),
            ],
        )
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let decay = if flag(flags[0])? {
            WeightDecay::Decoupled(nums[4])
        } else {
            WeightDecay::L2(nums[4])
        };
        let max = match flag(flags[3])? {
            true => Some(nums[5]),
            false if nums[5].to_bits() == 0 => None,
            false => return Err(MALFORMED_FLAG),
        };
        let builder = Lamb::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(decay)
            .grad_averaging(flag(flags[1])?)
            .bias_correction(flag(flags[2])?)
            .max_grad_norm(max)
            .trust_clip(flag(flags[4])?)
            .always_adapt(flag(flags[5])?)
            .maximize(flag(flags[6])?);
        checked(builder.build())
    }

    /// The optional global-norm pass, the moments pass (with the per-tensor sums of squares),
    /// the trust ratios, the weights pass.
    fn step_many<W: Element, T: Element, G: Element, C: Element>(
        &self,
        ctx: &Context,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        step: u64,
    ) {
        let mut scale = ctx.grad_scale;
        if let Some(max) = self.max_grad_norm {
            // timm: the gradients are divided by `norm / max_grad_norm` when the norm is above
            // it (a NaN norm compares false and clips nothing).
            let grads: Vec<&[G]> = tensors.iter().map(|t| t.grad).collect();
            let norm = ctx.grad_norm(&grads).norm() * scale.abs();
            if norm > max {
                scale /= norm / max;
            }
        }
        let c = self.coefficients(step, scale);

        let mut sums: Vec<[Vec<f64>; 2]> = tensors
            .iter()
            .map(|t| [vec![0.0; blocks(t.len())], vec![0.0; blocks(t.len())]])
            .collect();
        let moments = LambMoments {
            c,
            state_type: PhantomData::<T>,
        };
        let kernels = tensors
            .iter_mut()
            .zip(&mut sums)
            .map(|(t, [w_sq, u_sq])| Elementwise {
                update: moments,
                buffers: t.buffers::<2, 2>(false, [&mut w_sq[..], &mut u_sq[..]]),
                rounding: None,
                flush: false,
            })
            .collect();
        ctx.run_many(kernels, step);

        let kernels = tensors
            .iter_mut()
            .zip(&sums)
            .map(|(t, [w_sq, u_sq])| {
                let trust = self.trust_ratio(pairwise_sum(w_sq), pairwise_sum(u_sq));
                Elementwise {
                    update: LambApply {
                        c,
                        step_size: (self.lr() * trust) as f32,
                    },
                    buffers: t.buffers::<2, 0>(true, []),
                    rounding: None,
                    flush: false,
                }
            })
            .collect();
        ctx.run_many(kernels, step);
    }
}
