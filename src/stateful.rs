//! Optimizers that own their state: [`StatefulOptimizer`].

use core::fmt;

use crate::checkpoint::{self, CheckpointError, Options};
use crate::optim::pow_u64;
use crate::{AlignedBuffer, DType, Element, Error, Executor, Optimizer, StepReport};
use crate::{StochasticRounding, TensorStep, zeroed};

/// An optimizer that owns its state and steps a whole model: any config of the crate (momentum
/// in its three forms, SGD, RMSprop, Adam/AdamW/AMSGrad, Adagrad, Lion, LAMB) with its state
/// buffers, kept in `T` (`f32` by default; `bf16` or `f16` to halve the memory), the step
/// count, and the mixed-precision options. A checkpoint ([`save`](Self::save),
/// [`load`](Self::load)) restores all of it, and a run resumed from one gets exactly the bits
/// of a run that never stopped.
///
/// ```
/// use optkern::{Adam, StatefulOptimizer};
///
/// // A model of two tensors, stepped by AdamW with its state in f32.
/// let (mut w1, mut b1) = (vec![0.5f32; 784 * 64], vec![0.0f32; 64]);
/// let (g1, gb1) = (vec![0.01f32; 784 * 64], vec![0.1f32; 64]);
/// let mut opt = StatefulOptimizer::<f32>::new(Adam::adamw(1e-3, 0.01).build()?)?;
/// for _ in 0..3 {
///     // ... compute the gradients g1, gb1 ...
///     opt.step(&mut [&mut w1[..], &mut b1[..]], &[&g1[..], &gb1[..]])?;
/// }
/// assert_eq!(opt.steps(), 3);
///
/// // Save, and resume later (in another process, on another machine or backend).
/// let checkpoint: Vec<u8> = opt.save();
/// let mut resumed = StatefulOptimizer::<f32>::from_checkpoint(&checkpoint)?;
/// assert_eq!(resumed.steps(), 3);
/// # Ok::<(), optkern::Error>(())
/// ```
///
/// # State
///
/// The state is allocated at the first step, zero-filled and aligned to the cache line, one
/// set of buffers (as [`Optimizer::state_buffers`] names them) per tensor of the model; from
/// then on every step must bring tensors of the same lengths, in the same order. Each step is
/// one call of [`Executor::step_many`] (or [`Executor::check_and_step`] when clipping or
/// skipping is on) with the step number `steps() + 1`, so its bits are those of the kernels
/// called by hand on the same buffers.
///
/// # Mixed precision
///
/// - Master weights: [`step_with_copies`](Self::step_with_copies) updates `f32` weights and
///   writes their bf16/f16 model copies in the same pass.
/// - [`stochastic_rounding`](Self::stochastic_rounding) rounds bf16/f16 weights (and copies)
///   stochastically; the elements are numbered across the model's tensors from 0.
/// - [`set_grad_scale`](Self::set_grad_scale) multiplies every gradient (the inverse of the loss
///   scale, say) as it is read.
/// - [`max_grad_norm`](Self::max_grad_norm) clips by the norm of all gradients (after the
///   multiplier), as PyTorch's `clip_grad_norm_`; with it, or with
///   [`skip_non_finite`](Self::skip_non_finite), a step whose gradients hold an infinity or a
///   NaN writes nothing and does not count (the report says so), as a gradient scaler skips
///   the optimizer step.
///
/// # Learning rate
///
/// [`set_lr`](Self::set_lr) changes the learning rate between steps, so a schedule is a plain
/// function of the step (see [`crate::schedule`]).
#[derive(Clone)]
pub struct StatefulOptimizer<T: Element = f32> {
    config: Optimizer,
    executor: Executor,
    options: Options,
    lengths: Option<Vec<usize>>,
    /// Per tensor, its state buffers; empty until the first step.
    state: Vec<Vec<AlignedBuffer<T>>>,
}

impl<T: Element> fmt::Debug for StatefulOptimizer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatefulOptimizer")
            .field("config", &self.config)
            .field("state_type", &T::DTYPE)
            .field("steps", &self.options.steps)
            .field("grad_scale", &self.options.grad_scale)
            .field("max_grad_norm", &self.options.max_grad_norm)
            .field("skip_non_finite", &self.options.skip_non_finite)
            .field("stochastic_rounding_seed", &self.options.seed)
            .field("tensor_lengths", &self.lengths)
            .field("backend", &self.executor.backend())
            .finish()
    }
}

impl<T: Element> StatefulOptimizer<T> {
    /// An optimizer for `config` (any optimizer config, or an [`Optimizer`]), on the default
    /// backend with the default thread policy. Fails only if `OPTKERN_BACKEND` is invalid.
    pub fn new(config: impl Into<Optimizer>) -> Result<Self, Error> {
        Ok(Self::with_executor(config, Executor::new()?))
    }

    /// An optimizer running on `executor`'s backend with its thread policy. The executor's
    /// gradient multiplier and stochastic-rounding seed become the optimizer's (its
    /// `index_base` is not used: the optimizer numbers the model's elements from 0).
    pub fn with_executor(config: impl Into<Optimizer>, executor: Executor) -> Self {
        StatefulOptimizer {
            config: config.into(),
            executor: executor.grad_scale(1.0).expect("1 is finite"),
            options: Options {
                steps: 0,
                grad_scale: executor.gradient_multiplier(),
                max_grad_norm: None,
                skip_non_finite: false,
                seed: executor.rounding().map(|r| r.seed),
            },
            lengths: None,
            state: Vec::new(),
        }
    }

    /// The optimizer from a checkpoint written by [`save`](Self::save), on the default backend:
    /// config, steps, options and state as they were saved. Fails if the checkpoint is damaged
    /// or its state is not in `T` ([`Error::Checkpoint`]).
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self, Error> {
        let parsed = checkpoint::parse(bytes)?;
        let mut opt = Self::with_executor(parsed.config, Executor::new()?);
        opt.restore(parsed)?;
        Ok(opt)
    }

    /// The same optimizer, clipping the gradients to a global norm of at most `max_norm`
    /// (`None`: no clipping, the default). Clipping also skips steps with non-finite
    /// gradients. Fails if `max_norm` is not finite and positive.
    pub fn max_grad_norm(mut self, max_norm: Option<f64>) -> Result<Self, Error> {
        if let Some(max) = max_norm {
            crate::error::positive("max_norm", max)?;
        }
        self.options.max_grad_norm = max_norm;
        Ok(self)
    }

    /// The same optimizer, skipping (writing nothing, not counting) any step whose gradients
    /// hold an infinity or a NaN. Costs one read pass over the gradients per step.
    pub fn skip_non_finite(mut self, skip: bool) -> Self {
        self.options.skip_non_finite = skip;
        self
    }

    /// The same optimizer, rounding bf16/f16 weights and model copies stochastically with
    /// this seed (`None`: round to nearest even, the default). See [`crate::rounding`].
    pub fn stochastic_rounding(mut self, seed: Option<u64>) -> Self {
        self.options.seed = seed;
        self
    }

    /// Sets the gradient multiplier of the coming steps (the inverse loss scale, say). Fails,
    /// changing nothing, if `scale` is not finite.
    pub fn set_grad_scale(&mut self, scale: f64) -> Result<(), Error> {
        self.executor.grad_scale(scale)?;
        self.options.grad_scale = scale;
        Ok(())
    }

    /// The gradient multiplier (1 unless set).
    pub fn grad_scale(&self) -> f64 {
        self.options.grad_scale
    }

    /// Sets the learning rate of the coming steps. Fails, changing nothing, if it is not
    /// finite and `>= 0`.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        self.config.set_lr(lr)
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr()
    }

    /// The config (with the current learning rate).
    pub fn config(&self) -> &Optimizer {
        &self.config
    }

    /// The executor that runs the steps (its backend and thread policy).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The steps taken so far (skipped steps do not count). The next step is `steps() + 1`.
    pub fn steps(&self) -> u64 {
        self.options.steps
    }

    /// The element type of the state.
    pub fn state_type(&self) -> DType {
        T::DTYPE
    }

    /// The lengths of the model's tensors, once the state is allocated.
    pub fn tensor_lengths(&self) -> Option<&[usize]> {
        self.lengths.as_deref()
    }

    /// The state buffers of tensor `tensor` (in the order of [`Optimizer::state_buffers`]), once
    /// allocated.
    pub fn state(&self, tensor: usize) -> Option<&[AlignedBuffer<T>]> {
        self.state.get(tensor).map(|s| &s[..])
    }

    /// Adam's and LAMB's bias corrections `(1 - beta1^t, 1 - beta2^t)` of the last step `t`
    /// taken, as the kernels computed them (in `f64`, by repeated squaring); `None` before the
    /// first step, for other optimizers, or with bias correction off.
    pub fn bias_corrections(&self) -> Option<(f64, f64)> {
        let t = self.options.steps;
        let (b1, b2) = match &self.config {
            Optimizer::Adam(c) if c.bias_correction() => c.betas(),
            Optimizer::Lamb(c) if c.bias_correction() => c.betas(),
            _ => return None,
        };
        (t > 0).then(|| (1.0 - pow_u64(b1, t), 1.0 - pow_u64(b2, t)))
    }

    /// Forgets the state and the step count (the next step is step 1 of a new run, on a model
    /// of any lengths); keeps the config and the options.
    pub fn reset(&mut self) {
        self.options.steps = 0;
        self.lengths = None;
        self.state = Vec::new();
    }

    /// One step of every tensor of the model: `weights[k]` with gradient `grads[k]`, in any
    /// element types. Returns what happened (with clipping or skipping on, the gradient norm
    /// and whether the step was applied; otherwise `grad_norm` is `None` and it was applied).
    ///
    /// Fails, writing nothing and counting nothing, if the lists differ in length, a gradient's
    /// length differs from its tensor's, or (after the first step) the model's tensors differ
    /// from those the state was made for ([`Error::ModelChanged`], [`Error::TensorCount`]).
    pub fn step<W: Element, G: Element>(
        &mut self,
        weights: &mut [&mut [W]],
        grads: &[&[G]],
    ) -> Result<StepReport, Error> {
        self.run::<W, G, W>(weights, grads, None)
    }

    /// [`step`](Self::step) that also writes the new weights into `copies[k]`, rounded to `C`
    /// (the bf16/f16 model copy of `f32` master weights), in the same pass.
    pub fn step_with_copies<W: Element, G: Element, C: Element>(
        &mut self,
        weights: &mut [&mut [W]],
        grads: &[&[G]],
        copies: &mut [&mut [C]],
    ) -> Result<StepReport, Error> {
        self.run(weights, grads, Some(copies))
    }

    fn run<W: Element, G: Element, C: Element>(
        &mut self,
        weights: &mut [&mut [W]],
        grads: &[&[G]],
        copies: Option<&mut [&mut [C]]>,
    ) -> Result<StepReport, Error> {
        const CALL: &str = "StatefulOptimizer::step";
        let count = |what, given, expected| Error::TensorCount {
            call: CALL,
            what,
            given,
            expected,
        };
        let n = weights.len();
        if let Some(lengths) = &self.lengths {
            if n != lengths.len() {
                return Err(count("weight tensors", n, lengths.len()));
            }
            for (tensor, (w, &expected)) in weights.iter().zip(lengths).enumerate() {
                if w.len() != expected {
                    return Err(Error::ModelChanged {
                        tensor,
                        len: w.len(),
                        expected,
                    });
                }
            }
        }
        if grads.len() != n {
            return Err(count("gradients", grads.len(), n));
        }
        if let Some(c) = &copies
            && c.len() != n
        {
            return Err(count("model copies", c.len(), n));
        }

        let step = self.options.steps + 1;
        let fresh = self.lengths.is_none();
        let buffers = self.config.state_buffers().len();
        let mut state = if fresh {
            weights
                .iter()
                .map(|w| (0..buffers).map(|_| zeroed::<T>(w.len())).collect())
                .collect()
        } else {
            core::mem::take(&mut self.state)
        };
        let exec = self
            .executor
            .grad_scale(self.options.grad_scale)?
            .stochastic_rounding(self.options.seed.map(|seed| StochasticRounding {
                seed,
                index_base: 0,
            }));
        let result = {
            let mut copies = copies.map(|c| c.iter_mut());
            let mut tensors: Vec<TensorStep<'_, W, T, G, C>> = weights
                .iter_mut()
                .zip(grads)
                .zip(state.iter_mut())
                .map(|((w, g), s)| TensorStep {
                    weights: w,
                    state: s.iter_mut().map(|b| &mut b[..]).collect(),
                    grad: g,
                    model_copy: copies.as_mut().map(|c| &mut **c.next().expect("counted")),
                })
                .collect();
            if self.options.max_grad_norm.is_some() || self.options.skip_non_finite {
                exec.check_and_step(&mut tensors, &self.config, step, self.options.max_grad_norm)
            } else {
                exec.step_many(&mut tensors, &self.config, step)
                    .map(|()| StepReport {
                        grad_norm: None,
                        applied: true,
                        multiplier: self.options.grad_scale,
                    })
            }
        };
        match result {
            Ok(report) => {
                if fresh {
                    self.lengths = Some(weights.iter().map(|w| w.len()).collect());
                }
                self.state = state;
                if report.applied {
                    self.options.steps = step;
                }
                Ok(report)
            }
            Err(error) => {
                if !fresh {
                    self.state = state;
                }
                Err(error)
            }
        }
    }

    /// The checkpoint: the config, the step count, the options (gradient multiplier, clipping,
    /// skipping, stochastic-rounding seed) and every state buffer, in the versioned,
    /// checksummed format documented in [`crate::checkpoint`]. The backend and thread policy
    /// are not saved: every backend gives the same bits.
    pub fn save(&self) -> Vec<u8> {
        checkpoint::write(
            &self.config,
            T::DTYPE,
            &self.options,
            self.lengths.as_deref(),
            self.config.state_buffers().len(),
            |out| {
                for buffer in self.state.iter().flatten() {
                    for &x in buffer.iter() {
                        x.put_le(out);
                    }
                }
            },
        )
    }

    /// Restores a checkpoint written by [`save`](Self::save): config, step count, options and
    /// state become the saved ones (the backend and thread policy stay).
    ///
    /// Everything is checked before anything changes: the magic bytes, the version, the length,
    /// the checksum, the content; then that the checkpoint is of this optimizer (same kind of
    /// optimizer, state in `T`) and, if this optimizer has stepped a model already, of a model
    /// with the same tensor lengths. On any failure ([`Error::Checkpoint`]) the optimizer is
    /// left exactly as it was.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let parsed = checkpoint::parse(bytes)?;
        if core::mem::discriminant(&parsed.config) != core::mem::discriminant(&self.config) {
            return Err(CheckpointError::OptimizerMismatch {
                file: checkpoint::optimizer_name(&parsed.config),
                expected: checkpoint::optimizer_name(&self.config),
            }
            .into());
        }
        if let (Some(mine), Some(file)) = (&self.lengths, &parsed.lengths) {
            if mine.len() != file.len() {
                return Err(CheckpointError::TensorCountMismatch {
                    file: file.len(),
                    expected: mine.len(),
                }
                .into());
            }
            for (tensor, (&file, &expected)) in file.iter().zip(mine).enumerate() {
                if file != expected {
                    return Err(CheckpointError::TensorLengthMismatch {
                        tensor,
                        file,
                        expected,
                    }
                    .into());
                }
            }
        }
        self.restore(parsed)
    }

    /// Takes a parsed checkpoint's content, if its state is in `T`.
    fn restore(&mut self, parsed: checkpoint::Parsed<'_>) -> Result<(), Error> {
        if parsed.dtype != T::DTYPE {
            return Err(CheckpointError::DTypeMismatch {
                file: parsed.dtype,
                expected: T::DTYPE,
            }
            .into());
        }
        let size = T::DTYPE.size();
        let mut elements = parsed.payload.chunks_exact(size);
        let state = parsed
            .lengths
            .iter()
            .flatten()
            .map(|&len| {
                (0..parsed.buffers_per_tensor)
                    .map(|_| {
                        AlignedBuffer::from_iter(64, elements.by_ref().take(len).map(T::get_le))
                    })
                    .collect()
            })
            .collect();
        self.config = parsed.config;
        self.options = parsed.options;
        self.lengths = parsed.lengths;
        self.state = state;
        Ok(())
    }
}
