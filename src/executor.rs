//! [`Executor`]: which backend runs a call and how it is split across threads; the
//! single-tensor calls of every optimizer (generated from the registry), the many-tensor step,
//! the checked mixed-precision step, the gradient norm and conversions.

use crate::arch::fpenv::Environment;
use crate::backend::Backend;
use crate::driver::{Context, TensorStep};
use crate::element::{DType, Element, Slice, SliceMut, bf16, f16};
use crate::error::{Error, finite, positive, same_len};
use crate::optim::OptimizerConfig;
use crate::optim::registry::{Optimizer, registry};
use crate::optim::schedulefree::{Switch, check_switch, switch_weights};
use crate::parallel::Threads;
use crate::reduce::{GradNorm, clip_coefficient};
use crate::rounding::{StochasticRounding, Subnormals};

/// Runs the kernels on a chosen backend with a chosen thread policy.
///
/// The free functions of the crate (`momentum_step_f32`, ...) use `Executor::new()`: the
/// default backend (see [`Backend::detect`]) and [`Threads::parallel`]. Build one yourself to
/// pin a backend (to compare targets, or to test), or to run sequentially:
///
/// ```
/// use optkern::{Backend, Executor, Momentum, Threads};
///
/// let exec = Executor::with_backend(Backend::Scalar)?.with_threads(Threads::Sequential);
/// let config = Momentum::heavy_ball(0.1, 0.9).build()?;
/// let (mut w, mut v, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
/// exec.momentum_step(&mut w, &mut v, &g, &config, 1)?;
/// assert_eq!(w[0], 1.0 - 0.1 * 0.5);
/// # Ok::<(), optkern::Error>(())
/// ```
///
/// Its options follow the crate's naming rule: `with_*` returns a changed copy, the bare noun
/// reads the option back (`with_threads` / `threads`, `with_grad_scale` / `grad_scale`,
/// `with_stochastic_rounding` / `stochastic_rounding`).
#[derive(Clone, Copy, Debug)]
pub struct Executor {
    backend: Backend,
    ctx: Context,
}

/// What [`Executor::check_and_step`] found and did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// The norm of the gradients as given (before any multiplier), when the step computed it
    /// ([`Executor::check_and_step`] always does).
    pub grad_norm: Option<GradNorm>,
    /// Whether the update ran: `false` when a gradient value was infinite or NaN (then nothing
    /// was written).
    pub applied: bool,
    /// The gradient multiplier the update used: the executor's (the inverse loss scale)
    /// times the clipping coefficient; 0 when skipped.
    pub multiplier: f64,
}

impl Executor {
    /// The default backend ([`Backend::detect`], which honours `OPTKERN_BACKEND`) with the
    /// default thread policy.
    pub fn new() -> Result<Executor, Error> {
        Executor::with_backend(Backend::detect()?)
    }

    /// A chosen backend, with the default thread policy. Fails if the CPU cannot run it.
    pub fn with_backend(backend: Backend) -> Result<Executor, Error> {
        let isa = backend
            .isa()
            .ok_or_else(|| backend.unavailable("explicit choice"))?;
        Ok(Executor {
            backend,
            ctx: Context {
                isa,
                threads: Threads::default(),
                grad_scale: 1.0,
                rounding: None,
                subnormals: Subnormals::Keep,
            },
        })
    }

    /// The same executor with another thread policy.
    pub fn with_threads(self, threads: Threads) -> Executor {
        Executor {
            ctx: Context {
                threads,
                ..self.ctx
            },
            ..self
        }
    }

    /// The same executor, multiplying every gradient value by `scale` as it is read (the
    /// inverse loss scale times a clipping coefficient, say): the gradient buffers are not
    /// written. The multiplier is rounded once to `f32` (with the sign of `maximize` folded
    /// in). Fails if `scale` is not finite.
    pub fn with_grad_scale(self, scale: f64) -> Result<Executor, Error> {
        finite("grad_scale", scale)?;
        Ok(Executor {
            ctx: self.ctx.with_grad_scale(scale),
            ..self
        })
    }

    /// The same executor, storing bf16 and f16 weights (and model copies) with stochastic
    /// rounding (`Some`) or with round-to-nearest-even (`None`, the default). The random bits
    /// depend on the seed, the step and each element's index only.
    pub fn with_stochastic_rounding(self, rounding: Option<StochasticRounding>) -> Executor {
        Executor {
            ctx: Context {
                rounding,
                ..self.ctx
            },
            ..self
        }
    }

    /// The same executor with another subnormal policy ([`Subnormals::Keep`], the IEEE 754
    /// default, or [`Subnormals::Flush`]; see there for exactly what is flushed).
    ///
    /// ```
    /// use optkern::{Executor, Momentum, Subnormals};
    ///
    /// let config = Momentum::heavy_ball(0.1, 0.9).build()?;
    /// let (mut w, mut v, g) = (vec![1.0f32; 4], vec![1e-40f32; 4], vec![0.0f32; 4]);
    /// let exec = Executor::new()?.with_subnormals(Subnormals::Flush);
    /// exec.momentum_step(&mut w, &mut v, &g, &config, 2)?;
    /// assert_eq!(v, [0.0; 4]); // read as 0, not decayed to 9e-41
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn with_subnormals(self, subnormals: Subnormals) -> Executor {
        Executor {
            ctx: Context {
                subnormals,
                ..self.ctx
            },
            ..self
        }
    }

    /// The subnormal policy.
    pub fn subnormals(&self) -> Subnormals {
        self.ctx.subnormals
    }

    /// The backend that runs the kernels.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The thread policy.
    pub fn threads(&self) -> Threads {
        self.ctx.threads
    }

    /// The gradient multiplier (1 unless set with [`Executor::with_grad_scale`]).
    pub fn grad_scale(&self) -> f64 {
        self.ctx.grad_scale
    }

    /// The stochastic rounding in use, if any.
    pub fn stochastic_rounding(&self) -> Option<StochasticRounding> {
        self.ctx.rounding
    }

    /// The L2 norm of all of `grads` together, and whether any value is infinite or NaN: one
    /// read pass, split across threads, with the same bits on every backend, vector width,
    /// chunking and thread count (see [`GradNorm`] for the fixed blocking).
    ///
    /// ```
    /// use optkern::{Executor, bf16};
    ///
    /// let (a, b) = (vec![3.0f32; 100], vec![4.0f32; 100]);
    /// let exec = Executor::new()?;
    /// let norm = exec.grad_norm(&[&a[..], &b[..]]);
    /// assert_eq!(norm.norm(), 50.0);
    /// assert!(norm.is_finite());
    /// assert!(!exec.grad_norm(&[&[bf16::ONE, bf16::NAN][..]]).is_finite());
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn grad_norm<G: Element>(&self, grads: &[&[G]]) -> GradNorm {
        let _env = Environment::enter();
        self.ctx.grad_norm(grads)
    }

    /// Converts `src` into `dst`, element by element: widening to `f32` is exact, narrowing
    /// rounds to nearest even (see [`crate::element`]); the same bits on every backend.
    ///
    /// ```
    /// use optkern::{Executor, bf16};
    ///
    /// let src = [1.0f32, 1.00390625, 3.0e38];
    /// let mut dst = [bf16::ZERO; 3];
    /// Executor::new()?.convert(&src, &mut dst)?;
    /// assert_eq!(dst, [bf16::from_f32(1.0), bf16::from_f32(1.0), bf16::from_f32(3.0e38)]);
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn convert<A: Element, B: Element>(&self, src: &[A], dst: &mut [B]) -> Result<(), Error> {
        same_len("convert", "destination", dst.len(), src.len())?;
        let _env = Environment::enter();
        self.ctx.convert(src, dst);
        Ok(())
    }

    /// One step of `optimizer` on every tensor of `tensors`.
    ///
    /// The tensors are cut into balanced chunks across all of them (whole small tensors,
    /// pieces of large ones) that spread over the threads together: one parallel region per
    /// pass over memory (one for the elementwise optimizers; LAMB makes two, and a third for
    /// its `max_grad_norm`). Each element gets the bits that the single-tensor call would give
    /// it, on every backend and thread count. With stochastic rounding, elements are numbered
    /// one tensor after the other from [`StochasticRounding::index_base`]: tensor `k` stepped
    /// alone with an `index_base` of the lengths of the tensors before it (plus the base) gets
    /// the same bits. The model copies get the new weights rounded to their type. For LAMB the
    /// trust ratio is per tensor and the clipping by `max_grad_norm` uses the norm of all the
    /// gradients together. `step` counts from 1.
    ///
    /// Fails, writing nothing, if `step` is 0 or a tensor has the wrong number of state
    /// buffers or a buffer of the wrong length ([`Error::InTensor`] says which).
    ///
    /// ```
    /// use optkern::{Adam, Executor, Optimizer, TensorStep};
    ///
    /// let adam: Optimizer = Adam::builder(1e-3).build()?.into();
    /// let (mut w1, mut m1, mut v1, g1) = (vec![1.0f32; 300], vec![0.0f32; 300], vec![0.0f32; 300], vec![0.5f32; 300]);
    /// let (mut w2, mut m2, mut v2, g2) = (vec![2.0f32; 70], vec![0.0f32; 70], vec![0.0f32; 70], vec![-1.0f32; 70]);
    /// let mut tensors = vec![
    ///     TensorStep::new(&mut w1, vec![&mut m1[..], &mut v1[..]], &g1),
    ///     TensorStep::new(&mut w2, vec![&mut m2[..], &mut v2[..]], &g2),
    /// ];
    /// Executor::new()?.step_many(&mut tensors, &adam, 1)?;
    /// drop(tensors);
    /// assert!(w1[0] < 1.0 && w2[0] > 2.0);
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn step_many<W: Element, T: Element, G: Element, C: Element>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        optimizer: &Optimizer,
        step: u64,
    ) -> Result<(), Error> {
        check_many(tensors, optimizer, step)?;
        self.check_indices(tensors.iter().map(|t| t.weights.len()).sum())?;
        let _env = Environment::enter();
        optimizer.step_many(&self.ctx, tensors, step);
        Ok(())
    }

    /// The common mixed-precision step: computes the norm of all the gradients (one read
    /// pass); if any value is infinite or NaN, returns without writing anything; otherwise
    /// steps every tensor with the executor's gradient multiplier times, when `max_norm` is
    /// given, PyTorch's clipping coefficient `min(1, max_norm / (norm + 1e-6))` of the
    /// multiplied gradients' norm (as `clip_grad_norm_` after unscaling). Two passes over the
    /// gradients in all, one over everything else.
    ///
    /// ```
    /// use optkern::{Executor, Momentum, Optimizer, TensorStep};
    ///
    /// let sgd: Optimizer = Momentum::heavy_ball(0.1, 0.9).build()?.into();
    /// let (mut w, mut v) = (vec![1.0f32; 4], vec![0.0f32; 4]);
    /// let g = vec![1024.0f32, 0.0, 0.0, f32::INFINITY]; // loss scale 1024, overflowed
    /// let exec = Executor::new()?.with_grad_scale(1.0 / 1024.0)?;
    /// let report = exec.check_and_step(&mut [TensorStep::new(&mut w, vec![&mut v[..]], &g)], &sgd, 1, Some(1.0))?;
    /// assert!(!report.applied);
    /// assert_eq!(w, [1.0; 4]);
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn check_and_step<W: Element, T: Element, G: Element, C: Element>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        optimizer: &Optimizer,
        step: u64,
        max_norm: Option<f64>,
    ) -> Result<StepReport, Error> {
        let _env = Environment::enter();
        if let Some(max) = max_norm {
            positive("max_norm", max)?;
        }
        check_many(tensors, optimizer, step)?;
        self.check_indices(tensors.iter().map(|t| t.weights.len()).sum())?;
        let grads: Vec<&[G]> = tensors.iter().map(|t| t.grad).collect();
        let grad_norm = self.grad_norm(&grads);
        if !grad_norm.is_finite() {
            return Ok(StepReport {
                grad_norm: Some(grad_norm),
                applied: false,
                multiplier: 0.0,
            });
        }
        let scale = self.ctx.grad_scale;
        let clip = match max_norm {
            Some(max) => clip_coefficient(grad_norm.norm() * scale.abs(), max),
            None => 1.0,
        };
        let multiplier = scale * clip;
        // Finite: the scale is finite and the coefficient is in (0, 1].
        optimizer.step_many(&self.ctx.with_grad_scale(multiplier), tensors, step);
        Ok(StepReport {
            grad_norm: Some(grad_norm),
            applied: true,
            multiplier,
        })
    }

    /// One tensor: checks its named state buffers (`given`, in the optimizer's order; `None`
    /// for an optional one left out) against what `config` uses, then every length, then steps
    /// it. Nothing is written when a check fails.
    ///
    /// Generic over the config type, not the [`Optimizer`] enum, so that each call compiles
    /// only its own optimizer's kernels.
    fn step_one<W: Element, T: Element, G: Element, O: OptimizerConfig>(
        &self,
        call: &'static str,
        w: &mut [W],
        given: &mut [(&'static str, Option<&mut [T]>)],
        g: &[G],
        config: &O,
        step: u64,
    ) -> Result<(), Error> {
        let _env = Environment::enter();
        let names = config.state_buffers();
        for (name, buffer) in given.iter() {
            let needed = names.contains(name);
            if needed != buffer.is_some() {
                return Err(Error::StateBuffer {
                    call,
                    buffer: name,
                    needed,
                });
            }
        }
        if let Some(missing) = names.iter().find(|n| !given.iter().any(|(g, _)| g == *n)) {
            return Err(Error::StateBuffer {
                call,
                buffer: missing,
                needed: true,
            });
        }
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        let state = given.iter_mut().filter_map(|(_, b)| b.take()).collect();
        let mut tensor = [TensorStep::new(w, state, g)];
        tensor[0].check(call, names)?;
        self.check_indices(tensor[0].weights.len())?;
        config.step_many(&self.ctx, &mut tensor, step);
        Ok(())
    }

    /// Checks that stochastic rounding, if on, can number `elements` elements from its
    /// `index_base` without running past `u64::MAX` (checked before anything is written, so
    /// that no chunk wraps or panics part-way through a call).
    fn check_indices(&self, elements: usize) -> Result<(), Error> {
        match self.ctx.rounding {
            Some(r) if r.index_base.checked_add(elements as u64).is_none() => {
                Err(Error::RoundingIndexOverflow {
                    index_base: r.index_base,
                    elements,
                })
            }
            _ => Ok(()),
        }
    }

    /// [`step_one`](Self::step_one) for an optimizer with no state buffers, the element types
    /// known at run time: the weights' and the gradient's pick the kernel (nine of them).
    fn erased_stateless<O: OptimizerConfig>(
        &self,
        call: &'static str,
        w: SliceMut<'_>,
        g: Slice<'_>,
        config: &O,
        step: u64,
    ) -> Result<(), Error> {
        match w {
            SliceMut::F32(w) => self.erased_grad::<_, f32, _>(call, w, &mut [], g, config, step),
            SliceMut::F16(w) => self.erased_grad::<_, f32, _>(call, w, &mut [], g, config, step),
            SliceMut::BF16(w) => self.erased_grad::<_, f32, _>(call, w, &mut [], g, config, step),
        }
    }

    /// [`step_one`](Self::step_one), the element types known at run time (the state buffers
    /// given all have one type: the typed calls take them so): the weights', the state's and
    /// the gradient's pick the kernel (27 of them).
    fn erased<O: OptimizerConfig>(
        &self,
        call: &'static str,
        w: SliceMut<'_>,
        given: &mut [(&'static str, Option<SliceMut<'_>>)],
        g: Slice<'_>,
        config: &O,
        step: u64,
    ) -> Result<(), Error> {
        match w {
            SliceMut::F32(w) => self.erased_state(call, w, given, g, config, step),
            SliceMut::F16(w) => self.erased_state(call, w, given, g, config, step),
            SliceMut::BF16(w) => self.erased_state(call, w, given, g, config, step),
        }
    }

    fn erased_state<W: Element, O: OptimizerConfig>(
        &self,
        call: &'static str,
        w: &mut [W],
        given: &mut [(&'static str, Option<SliceMut<'_>>)],
        g: Slice<'_>,
        config: &O,
        step: u64,
    ) -> Result<(), Error> {
        let dtype = given
            .iter()
            .find_map(|(_, b)| b.as_ref().map(SliceMut::dtype))
            .unwrap_or(DType::F32);
        match dtype {
            DType::F32 => {
                self.erased_grad::<W, f32, O>(call, w, &mut restore(given), g, config, step)
            }
            DType::F16 => {
                self.erased_grad::<W, f16, O>(call, w, &mut restore(given), g, config, step)
            }
            DType::BF16 => {
                self.erased_grad::<W, bf16, O>(call, w, &mut restore(given), g, config, step)
            }
        }
    }

    fn erased_grad<W: Element, T: Element, O: OptimizerConfig>(
        &self,
        call: &'static str,
        w: &mut [W],
        given: &mut [(&'static str, Option<&mut [T]>)],
        g: Slice<'_>,
        config: &O,
        step: u64,
    ) -> Result<(), Error> {
        match g {
            Slice::F32(g) => self.step_one(call, w, given, g, config, step),
            Slice::F16(g) => self.step_one(call, w, given, g, config, step),
            Slice::BF16(g) => self.step_one(call, w, given, g, config, step),
        }
    }
}

/// The schedule-free weight switches (see [`crate::optim::schedulefree`]).
impl Executor {
    /// Schedule-free: turns the training weights `y` into the evaluation weights `x =
    /// lerp(y, z, 1 - 1/beta)` in place (the library's `optimizer.eval()`), with `z` the
    /// optimizer's `z` buffer and `beta` its `beta1` (AdamW) or `momentum` (SGD). Rounded to
    /// nearest even, on this executor's backend and threads. Fails, writing nothing, if the
    /// lengths differ or `beta` is not in `(0, 1)` (with `1 - 1/beta` finite in `f32`).
    pub fn schedulefree_eval<W: Element, T: Element>(
        &self,
        w: &mut [W],
        z: &[T],
        beta: f64,
    ) -> Result<(), Error> {
        let lens = (w.len(), z.len());
        self.schedulefree_switch(
            "schedulefree_eval",
            W::erase_mut(w),
            T::erase(z),
            lens,
            beta,
            Switch::ToEval,
        )
    }

    /// Schedule-free: turns the evaluation weights `x` back into the training weights `y =
    /// lerp(x, z, 1 - beta)` in place (the library's `optimizer.train()`); as
    /// [`schedulefree_eval`](Self::schedulefree_eval) otherwise. A switch and back rounds
    /// twice: `y` comes back to within a unit in the last place, not always bit for bit.
    pub fn schedulefree_train<W: Element, T: Element>(
        &self,
        w: &mut [W],
        z: &[T],
        beta: f64,
    ) -> Result<(), Error> {
        let lens = (w.len(), z.len());
        self.schedulefree_switch(
            "schedulefree_train",
            W::erase_mut(w),
            T::erase(z),
            lens,
            beta,
            Switch::ToTrain,
        )
    }

    /// Not generic: the nine kernels of the switch are compiled once, here.
    fn schedulefree_switch(
        &self,
        call: &'static str,
        w: SliceMut<'_>,
        z: Slice<'_>,
        (wn, zn): (usize, usize),
        beta: f64,
        to: Switch,
    ) -> Result<(), Error> {
        check_switch(beta)?;
        same_len(call, "z", zn, wn)?;
        let _env = Environment::enter();
        macro_rules! with_z {
            ($w:expr) => {
                match z {
                    Slice::F32(z) => switch_weights(&self.ctx, $w, z, beta, to),
                    Slice::F16(z) => switch_weights(&self.ctx, $w, z, beta, to),
                    Slice::BF16(z) => switch_weights(&self.ctx, $w, z, beta, to),
                }
            };
        }
        match w {
            SliceMut::F32(w) => with_z!(w),
            SliceMut::F16(w) => with_z!(w),
            SliceMut::BF16(w) => with_z!(w),
        }
        Ok(())
    }
}

/// The state buffers given, typed back (they share one type: the typed calls take them so).
fn restore<'a, T: Element>(
    given: &mut [(&'static str, Option<SliceMut<'a>>)],
) -> Vec<(&'static str, Option<&'a mut [T]>)> {
    given
        .iter_mut()
        .map(|(name, buffer)| {
            let typed = buffer
                .take()
                .map(|b| T::restore_mut(b).expect("one state type"));
            (*name, typed)
        })
        .collect()
}

/// Checks everything [`Executor::step_many`] checks.
fn check_many<W: Element, T: Element, G: Element, C: Element>(
    tensors: &[TensorStep<'_, W, T, G, C>],
    optimizer: &Optimizer,
    step: u64,
) -> Result<(), Error> {
    if step == 0 {
        return Err(Error::InvalidStep);
    }
    let names = optimizer.state_buffers();
    for (index, tensor) in tensors.iter().enumerate() {
        tensor
            .check("step_many", names)
            .map_err(|error| Error::InTensor {
                index,
                error: Box::new(error),
            })?;
    }
    Ok(())
}

/// Writes the executor's single-tensor call of every optimizer from the registry.
macro_rules! executor_calls {
    ([$(#[$doc:meta])*] $qdoc:tt $config:path, $call:ident, $try_call:ident,
        ($w:ident; $($s:ident),*; $($o:ident),*; $g:ident), $quick:ident, $scalars:tt, $typed:tt) => {
        impl Executor {
            executor_calls!(@call [$(#[$doc])*] $call, $config, $w; $($s),*; $($o),*; $g);
        }
    };
    (@call [$(#[$doc:meta])*] $call:ident, $config:path, $w:ident; ; ; $g:ident) => {
        executor_calls!(@emit [$(#[$doc])*
            ///
            /// On this executor's backend and threads, for weights and gradient of any element
            /// types; `step` counts from 1. Fails, writing nothing, if a length differs or
            /// `step` is 0.
        ] [W: Element, G: Element] [f32] $call, $config, $w; ; ; $g);
    };
    (@call [$(#[$doc:meta])*] $call:ident, $config:path, $w:ident; $($s:ident),*; $($o:ident),*; $g:ident) => {
        executor_calls!(@emit [$(#[$doc])*
            ///
            /// On this executor's backend and threads, for buffers of any element types (the
            /// state buffers all of one type); `step` counts from 1. Fails, writing nothing, if a
            /// length differs, the state buffers given are not those the config uses, or `step`
            /// is 0.
        ] [W: Element, T: Element, G: Element] [T] $call, $config, $w; $($s),*; $($o),*; $g);
    };
    (@emit [$(#[$doc:meta])*] [$($generics:tt)*] [$t:ty] $call:ident, $config:path,
        $w:ident; ; ; $g:ident) => {
        $(#[$doc])*
        pub fn $call<$($generics)*>(&self, $w: &mut [W], $g: &[G], config: &$config, step: u64)
            -> Result<(), Error> {
            // Not generic: the kernels behind it are compiled once, here (see `Sealed`).
            fn erased(exec: &Executor, w: SliceMut<'_>, g: Slice<'_>, config: &$config, step: u64)
                -> Result<(), Error> {
                exec.erased_stateless(stringify!($call), w, g, config, step)
            }
            erased(self, W::erase_mut($w), G::erase($g), config, step)
        }
    };
    (@emit [$(#[$doc:meta])*] [$($generics:tt)*] [$t:ty] $call:ident, $config:path,
        $w:ident; $($s:ident),*; $($o:ident),*; $g:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $call<$($generics)*>(&self, $w: &mut [W], $($s: &mut [$t],)* $($o: Option<&mut [$t]>,)*
            $g: &[G], config: &$config, step: u64) -> Result<(), Error> {
            // Not generic: the kernels behind it are compiled once, here (see `Sealed`).
            fn erased(
                exec: &Executor,
                w: SliceMut<'_>,
                given: &mut [(&'static str, Option<SliceMut<'_>>)],
                g: Slice<'_>,
                config: &$config,
                step: u64,
            ) -> Result<(), Error> {
                exec.erased(stringify!($call), w, given, g, config, step)
            }
            erased(
                self,
                W::erase_mut($w),
                &mut [$((stringify!($s), Some(T::erase_mut($s))),)* $((stringify!($o), $o.map(T::erase_mut)),)*],
                G::erase($g),
                config,
                step,
            )
        }
    };
}

registry!(calls, executor_calls);
