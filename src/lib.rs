//! Fused, hand-vectorized optimizer-update kernels for training neural networks on CPUs.
//!
//! Each kernel reads the weights, the optimizer state and the gradient once, updates them in
//! one pass and writes them back, over `f32`, [`f16`](struct@crate::f16) and [`bf16`] buffers in any mix. It runs on
//! the best instruction set of the machine, chosen at run time (AVX-512, AVX2+FMA+F16C, NEON, or a
//! portable scalar fallback), and splits large buffers across the threads of the
//! current rayon pool.
//!
//! ```
//! // PyTorch's torch.optim.SGD(lr=0.1, momentum=0.9), one step on f32 buffers.
//! let mut w = vec![1.0f32; 4096];
//! let mut v = vec![0.0f32; 4096]; // the velocity starts at zero
//! let g = vec![0.5f32; 4096];
//! optkern::momentum_step_f32(&mut w, &mut v, &g, 0.1, 0.9);
//! assert_eq!(w[0], 0.95);
//! ```
//!
//! # The numerics contract
//!
//! - **Bit-identical across backends and thread counts.** For the same inputs, every backend
//!   and every thread count produce the same bits. Every operation used is correctly rounded
//!   (add, multiply, divide, square root, fused multiply-add, conversions rounding to nearest
//!   even), in the same order everywhere; the tail of a buffer goes through the same formula
//!   as full vectors; scalar coefficients are computed once per call. The one exception is the
//!   payload of a NaN *produced* by arithmetic (for instance `inf - inf`): it is a NaN on every
//!   backend, but which NaN is not specified (Rust and LLVM leave NaN payloads unspecified, and
//!   CPUs differ).
//! - **Whatever floating-point environment the caller left.** Every call runs in the IEEE 754
//!   default environment (round to nearest even, subnormals kept, exceptions masked), on the
//!   caller's thread and on every pool thread that runs a part of it: it sets the control register
//!   (MXCSR on x86-64, FPCR on aarch64) on entry when the caller changed it, and puts the caller's
//!   back on exit, also when a call unwinds. Flush-to-zero, denormals-are-zero or a directed
//!   rounding mode set by the caller (`torch.set_flush_denormal(True)`, fast-math code,
//!   `fesetround`) change no bit of a result; the exception flags raised during a call stay raised.
//! - **Subnormals kept, or flushed on request.** By default ([`Subnormals::Keep`]) subnormal
//!   values are IEEE 754 values like any other, as in PyTorch. [`Subnormals::Flush`] (per
//!   [`Executor`] or [`StatefulOptimizer`], saved in checkpoints) turns every subnormal value a
//!   step reads or stores into a zero of its sign, by comparison and select, not by the
//!   hardware's modes: the same bits on every backend and thread count. It keeps state that
//!   decays where gradients are zero from sticking in the subnormal range, where Intel CPUs
//!   slow down.
//! - **Compute in `f32`, store in the buffer's type**: half-precision values widen exactly and
//!   results narrow with round-to-nearest-even, bit for bit as `half::bf16::from_f32` (all 2^32
//!   inputs) and `half::f16::from_f32` (all non-NaN inputs) do; see [`element`].
//! - **The semantics of the frameworks people use.** [`Momentum`] follows PyTorch's `SGD`
//!   (heavy ball, dampening, Nesterov, weight decay, maximize, the first step), the form with
//!   the learning rate inside the velocity that TensorFlow/Keras use, and the moving-average
//!   form; [`Adam`] (Adam, AdamW, AMSGrad, with PyTorch's or Keras' epsilon), [`Rmsprop`],
//!   [`Adagrad`] follow PyTorch (with Keras' options where it differs), [`Lion`] follows the
//!   paper and lion-pytorch, [`Lamb`] follows timm, [`Adamax`], [`Adadelta`], [`Nadam`]
//!   (NAdam, NAdamW), [`Radam`] (RAdam, RAdamW), [`Rprop`] and [`Asgd`] follow PyTorch,
//!   [`Adopt`] and [`Ademamix`] follow `pytorch_optimizer`. Each optimizer's module
//!   ([`optim`]) documents its formula, its order of operations, its state buffers and its
//!   checkpoint record.
//! - **Nothing is written by a call that fails.** Lengths and hyperparameters are checked first.
//!   Calls that panic on bad input have a `try_` twin returning [`Error`].
//!
//! # Optimizers that own their state
//!
//! [`StatefulOptimizer`] wraps any config with its state (allocated at the first step, in the
//! element type you choose), steps a whole model per call, takes a new learning rate between
//! steps (see [`schedule`]), carries the mixed-precision options below, and saves and loads
//! checkpoints in a versioned, checksummed format ([`checkpoint`]) that resume bit-exactly.
//!
//! ```
//! use optkern::{Adam, StatefulOptimizer};
//!
//! let mut opt = StatefulOptimizer::<f32>::new(Adam::builder(1e-3).build()?)?;
//! let (mut w, mut b, gw, gb) = (vec![1.0f32; 100], vec![0.0f32; 10], vec![0.5f32; 100], vec![0.1f32; 10]);
//! opt.step(&mut [&mut w[..], &mut b[..]], &[&gw[..], &gb[..]])?;
//! let resumed = StatefulOptimizer::<f32>::from_checkpoint(&opt.save())?;
//! assert_eq!(resumed.steps(), 1);
//! # Ok::<(), optkern::Error>(())
//! ```
//!
//! # Whole training steps
//!
//! [`Executor::step_many`] steps many tensors (a [`TensorStep`] each) with any [`Optimizer`] in
//! one parallel region per pass over memory, optionally writing a bf16/f16 model copy of `f32`
//! master weights in the same pass. [`Executor::with_grad_scale`] folds a gradient multiplier
//! into any step,
//! [`Executor::grad_norm`] is a deterministic global norm with a non-finite check, and
//! [`Executor::check_and_step`] combines them into the usual loss-scaled, clipped step.
//! [`Executor::with_stochastic_rounding`] rounds bf16/f16 weights stochastically (see
//! [`rounding`]).
//!
//! # Naming
//!
//! For every optimizer `X`: `X_step(buffers.., &config, step)` is the configured call for
//! buffers of any element types, and `X_step_f32`, `X_step_f16`, `X_step_bf16` the quick calls
//! (every buffer of one type, the defaults of the library the optimizer follows, its bare
//! scalars: `momentum_step_f32(w, v, g, lr, mu)`, `adam_step_f32(w, m, v, g, lr, step)`);
//! `Executor::X_step` is the configured call on a chosen executor. Every call that panics has a
//! `try_` twin, and every panic message starts with `optkern: `. Config builders take plain
//! option methods, the same ones for the options every optimizer has (`maximize`,
//! `weight_decay`); [`Executor`] and [`StatefulOptimizer`] take `with_*` options and read them
//! back with the bare noun (`with_threads` / `threads`), and `set_*` changes a stateful
//! optimizer between steps.
//!
//! # Backends
//!
//! [`Backend::detect`] picks the best backend the CPU supports, once. The environment variable
//! `OPTKERN_BACKEND=scalar|avx2|avx512|neon` overrides that choice (a backend the CPU lacks is an
//! error, never an illegal instruction). An [`Executor`] runs any available backend explicitly,
//! sequentially or across threads ([`Threads`]).

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

// The modules form a one-way stack, bottom first; each uses only those before it (see
// ARCHITECTURE.md; scripts/module-graph.py checks it):
//
//   element, error, reduce, arch, rounding, backend   element types, errors, reductions,
//                                                     instruction sets, rounding, detection
//   parallel, driver                                  the chunked split, the one kernel driver
//   optim (registry, one file per optimizer)          the optimizers
//   executor                                          single-tensor and many-tensor calls
//   checkpoint, schedule, calls, stateful             the format, schedules, the free
//                                                     functions, stateful optimizers
mod arch;
mod backend;
mod calls;
pub mod checkpoint;
mod driver;
pub mod element;
mod error;
mod executor;
pub mod optim;
mod parallel;
mod reduce;
pub mod rounding;
pub mod schedule;
mod stateful;

/// Setting a thread's floating-point controls, for the crate's own environment tests; not part
/// of the API.
#[cfg(feature = "emulated-backends")]
#[doc(hidden)]
pub mod fp_environment_for_tests {
    /// Sets flush-to-zero and denormals-are-zero (`flush`; FZ and FZ16 on aarch64) and round
    /// toward zero (`toward_zero`) on this thread; returns the previous control register.
    pub fn set(flush: bool, toward_zero: bool) -> u64 {
        crate::arch::fpenv::set_for_tests(flush, toward_zero)
    }

    /// Puts back a value [`set`] returned.
    pub fn restore(previous: u64) {
        crate::arch::fpenv::restore_for_tests(previous)
    }

    /// This thread's control register.
    pub fn current() -> u64 {
        crate::arch::fpenv::current_for_tests()
    }
}

pub use backend::Backend;
pub use calls::*;
pub use driver::TensorStep;
pub use element::{AlignedBuffer, DType, Element, bf16, f16, zeroed};
pub use error::{CheckpointError, Error};
pub use executor::{Executor, StepReport};
pub use optim::WeightDecay;
pub use optim::adadelta::{Adadelta, AdadeltaBuilder};
pub use optim::adagrad::{Adagrad, AdagradBuilder};
pub use optim::adam::{Adam, AdamBuilder, EpsilonPlacement};
pub use optim::adamax::{Adamax, AdamaxBuilder};
pub use optim::ademamix::{Ademamix, AdemamixBuilder};
pub use optim::adopt::{Adopt, AdoptBuilder};
pub use optim::asgd::{Asgd, AsgdBuilder};
pub use optim::lamb::{Lamb, LambBuilder};
pub use optim::lion::{Lion, LionBuilder};
pub use optim::momentum::{Momentum, MomentumBuilder, MomentumForm};
pub use optim::nadam::{Nadam, NadamBuilder};
pub use optim::radam::{Radam, RadamBuilder};
pub use optim::registry::Optimizer;
pub use optim::rmsprop::{Rmsprop, RmspropBuilder};
pub use optim::rprop::{Rprop, RpropBuilder};
pub use optim::schedulefree::{
    ScheduleFreeAdamw, ScheduleFreeAdamwBuilder, ScheduleFreeSgd, ScheduleFreeSgdBuilder,
};
pub use optim::sgd::{Sgd, SgdBuilder};
pub use parallel::Threads;
pub use reduce::GradNorm;
pub use rounding::{StochasticRounding, Subnormals};
pub use stateful::StatefulOptimizer;

/// What the crate was built for, recorded by its build script: the target, the target
/// features enabled at compile time for all code (the scalar backend and a user's plain loops
/// are compiled with these only), and the compiler.
#[derive(Clone, Copy, Debug)]
pub struct BuildInfo {
    /// The target triple, e.g. `x86_64-unknown-linux-gnu`.
    pub target: &'static str,
    /// The target features enabled for all code, comma-separated (e.g. `fxsr,sse,sse2`).
    pub target_features: &'static str,
    /// The compiler's version line.
    pub rustc: &'static str,
}

/// What the crate was built for.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        target: env!("OPTKERN_BUILD_TARGET"),
        target_features: env!("OPTKERN_BUILD_TARGET_FEATURES"),
        rustc: env!("OPTKERN_BUILD_RUSTC"),
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
