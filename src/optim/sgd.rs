//! Plain SGD, as `torch.optim.SGD` with `momentum=0`: no state.
//!
//! One step:
//!
//! ```text
//! g  = (maximize ? -g : g) + l2 * w            (L2 weight decay)
//! w  = w * (1 - lr * wd)                       (decoupled weight decay, if chosen instead)
//! w -= lr * g
//! ```
//!
//! In `f32`: `w = fma(-lr, g, w)`.
//!
//! Checkpoint record: numbers `lr`, weight decay; flags weight-decay mode, maximize.

use super::{Common, GradientIn, OptimizerConfig, checked, common_options, elementwise_step, flag};
use super::{weight_decay_from, weight_decay_parts};
use crate::arch::Lanes;
use crate::driver::Update;
use crate::error::{CheckpointError, Error};

/// A validated configuration of plain SGD (no velocity): `w -= lr * g`, with optional weight
/// decay and maximize, as `torch.optim.SGD` with `momentum=0`. Build it with [`Sgd::builder`]
/// (or [`Sgd::new`] for the defaults).
///
/// ```
/// use optkern::{Sgd, WeightDecay};
///
/// // torch.optim.SGD(lr=0.1, weight_decay=1e-4)
/// let sgd = Sgd::builder(0.1).weight_decay(WeightDecay::L2(1e-4)).build()?;
/// assert_eq!(sgd.lr(), 0.1);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    common: Common,
}

/// Collects the options of an [`Sgd`] config; [`build`](SgdBuilder::build) checks them.
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the config"]
pub struct SgdBuilder {
    config: Sgd,
}

common_options!(Sgd, SgdBuilder);

impl Sgd {
    /// Plain SGD with learning rate `lr`, no weight decay, minimizing.
    pub fn builder(lr: f64) -> SgdBuilder {
        SgdBuilder {
            config: Sgd {
                common: Common::new(lr),
            },
        }
    }

    /// `Sgd::builder(lr).build()`: plain SGD with the defaults.
    pub fn new(lr: f64) -> Result<Sgd, Error> {
        Sgd::builder(lr).build()
    }

    fn validate(&self) -> Result<(), Error> {
        self.common.validate()
    }

    fn update(&self, scale: f64) -> SgdUpdate {
        SgdUpdate {
            input: self.common.gradient_in(scale),
            lr: self.lr() as f32,
        }
    }

    /// The config of the quick calls (`sgd_step_f32`, ...): the defaults with `lr`.
    pub(crate) fn sgd_quick(lr: f32) -> Result<(Sgd, u64), Error> {
        Ok((Sgd::new(lr.into())?, 1))
    }
}

impl SgdBuilder {
    /// Checks every option and returns the config.
    ///
    /// Requirements: `lr` finite and `>= 0`; weight decay finite and `>= 0`.
    pub fn build(self) -> Result<Sgd, Error> {
        self.config.validate()?;
        Ok(self.config)
    }
}

impl OptimizerConfig for Sgd {
    const FIELDS: (usize, usize) = (2, 2);
    const FLAG_NAMES: &'static [&'static str] = &["weight_decay", "maximize"];

    fn state_buffers(&self) -> &'static [&'static str] {
        &[]
    }

    fn fields(&self) -> (Vec<f64>, Vec<u8>) {
        let (mode, wd) = weight_decay_parts(self.weight_decay());
        (vec![self.lr(), wd], vec![mode, u8::from(self.maximize())])
    }

    fn from_fields(nums: &[f64], flags: &[u8]) -> Result<Self, CheckpointError> {
        let builder = Sgd::builder(nums[0])
            .weight_decay(weight_decay_from(flags[0], nums[1])?)
            .maximize(flag(flags[1])?);
        checked(builder.build())
    }

    elementwise_step!(|c: &Sgd, scale, _| c.update(scale), 0);
}

/// The coefficients of one plain SGD step.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SgdUpdate {
    input: GradientIn,
    lr: f32,
}

impl Update<0, 0> for SgdUpdate {
    #[inline(always)]
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        state: [S::f32s; 0],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; 0], [S::f32s; 0]) {
        let g = self.input.gradient(simd, g, w);
        let w = self.input.decayed(simd, w);
        (
            simd.mul_add_f32s(simd.splat_f32s(-self.lr), g, w),
            state,
            [],
        )
    }
}
