//! Optimizers that own their state: [`StatefulOptimizer`].

use core::fmt;

use crate::arch::fpenv::Environment;
use crate::checkpoint::{self, CheckpointError, Header};
use crate::driver::TensorStep;
use crate::element::{AlignedBuffer, DType, Element, zeroed};
use crate::error::{Error, positive};
use crate::executor::{Executor, StepReport};
use crate::optim::bias_corrections;
use crate::optim::registry::Optimizer;
use crate::rounding::{StochasticRounding, Subnormals};

/// The options of a [`StatefulOptimizer`] besides its config, all of which a checkpoint keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Options {
    steps: u64,
    grad_scale: f64,
    max_grad_norm: Option<f64>,
    skip_non_finite: bool,
    seed: Option<u64>,
    subnormals: Subnormals,
}

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
/// one call of [`Executor::step_many`], or of [`Executor::check_and_step`] when clipping or
/// skipping is on, with the step number `steps() + 1`, so its bits are those of the kernels
/// called by hand on the same buffers.
///
/// # Mixed precision
///
/// - Master weights: [`step_with_copies`](Self::step_with_copies) updates `f32` weights and
///   writes their bf16/f16 model copies in the same pass.
/// - [`with_stochastic_rounding`](Self::with_stochastic_rounding) rounds bf16/f16 weights (and
///   copies) stochastically; the elements are numbered across the model's tensors from 0.
/// - [`set_grad_scale`](Self::set_grad_scale) multiplies every gradient (the inverse of the loss
///   scale, say) as it is read.
/// - [`with_max_grad_norm`](Self::with_max_grad_norm) clips by the norm of all gradients
///   (after the multiplier), as PyTorch's `clip_grad_norm_`; with it, or with
///   [`with_skip_non_finite`](Self::with_skip_non_finite), a step whose gradients hold an
///   infinity or a NaN writes nothing and does not count (the report says so), as a gradient
///   scaler skips the optimizer step.
///
/// The options follow the crate's naming rule: `with_*` returns the changed optimizer,
/// `set_*` changes it in place between steps, and the bare noun reads the option back.
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
            .field("subnormals", &self.options.subnormals)
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
    /// gradient multiplier, stochastic-rounding seed and subnormal policy become the optimizer's (its
    /// `index_base` is not used: the optimizer numbers the model's elements from 0).
    pub fn with_executor(config: impl Into<Optimizer>, executor: Executor) -> Self {
        StatefulOptimizer {
            config: config.into(),
            executor: executor
                .with_grad_scale(1.0)
                .expect("1 is finite")
                .with_stochastic_rounding(None),
            options: Options {
                steps: 0,
                grad_scale: executor.grad_scale(),
                max_grad_norm: None,
                skip_non_finite: false,
                seed: executor.stochastic_rounding().map(|r| r.seed),
                subnormals: executor.subnormals(),
            },
            lengths: None,
            state: Vec::new(),
        }
    }

    /// The optimizer from a checkpoint written by [`save`](Self::save), on the default backend:
    /// config, steps, options and state as they were saved. Fails if the checkpoint is damaged
    /// or its state is not in `T` ([`Error::Checkpoint`]).
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self, Error> {
        let (header, payload) = checkpoint::parse(bytes)?;
        let mut opt = Self::with_executor(header.config, Executor::new()?);
        opt.restore(header, payload)?;
        Ok(opt)
    }

    /// The same optimizer, clipping the gradients to a global norm of at most `max_norm`
    /// (`None`: no clipping, the default). Clipping also skips steps with non-finite
    /// gradients. Fails if `max_norm` is not finite and positive.
    pub fn with_max_grad_norm(mut self, max_norm: Option<f64>) -> Result<Self, Error> {
        if let Some(max) = max_norm {
            positive("max_norm", max)?;
        }
        self.options.max_grad_norm = max_norm;
        Ok(self)
    }

    /// The clipping norm, if clipping is on.
    pub fn max_grad_norm(&self) -> Option<f64> {
        self.options.max_grad_norm
    }

    /// The same optimizer, skipping (writing nothing, not counting) any step whose gradients
    /// hold an infinity or a NaN. Costs one read pass over the gradients per step.
    pub fn with_skip_non_finite(mut self, skip: bool) -> Self {
        self.options.skip_non_finite = skip;
        self
    }

    /// Whether steps with an infinite or NaN gradient are skipped.
    pub fn skip_non_finite(&self) -> bool {
        self.options.skip_non_finite
    }

    /// The same optimizer, rounding bf16/f16 weights and model copies stochastically with
    /// `rounding`'s seed (`None`: round to nearest even, the default). See [`crate::rounding`].
    /// The optimizer numbers its model's elements from 0, one tensor after the other: fails
    /// if `rounding`'s `index_base` is not 0.
    pub fn with_stochastic_rounding(
        mut self,
        rounding: Option<StochasticRounding>,
    ) -> Result<Self, Error> {
        if rounding.is_some_and(|r| r.index_base != 0) {
            return Err(Error::IncompatibleOptions {
                reason: "a stateful optimizer numbers its model's elements from 0: index_base must be 0",
            });
        }
        self.options.seed = rounding.map(|r| r.seed);
        Ok(self)
    }

    /// The stochastic rounding in use, if any (its `index_base` is 0).
    pub fn stochastic_rounding(&self) -> Option<StochasticRounding> {
        self.options.seed.map(StochasticRounding::new)
    }

    /// The same optimizer with another subnormal policy (see [`Subnormals`]; the default is
    /// the executor's, [`Subnormals::Keep`] unless set there). Saved in checkpoints.
    pub fn with_subnormals(mut self, subnormals: Subnormals) -> Self {
        self.options.subnormals = subnormals;
        self
    }

    /// The subnormal policy.
    pub fn subnormals(&self) -> Subnormals {
        self.options.subnormals
    }

    /// Sets the gradient multiplier of the coming steps (the inverse loss scale, say). Fails,
    /// changing nothing, if `scale` is not finite.
    pub fn set_grad_scale(&mut self, scale: f64) -> Result<(), Error> {
        self.executor.with_grad_scale(scale)?;
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
        (t > 0).then(|| bias_corrections(b1, b2, t))
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
        let _env = Environment::enter();
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

        // The count stays below u64::MAX, as a checkpoint's must.
        let step = match self.options.steps.checked_add(1) {
            Some(step) if step < u64::MAX => step,
            _ => {
                return Err(Error::StepCountExhausted {
                    steps: self.options.steps,
                });
            }
        };
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
            .with_grad_scale(self.options.grad_scale)?
            .with_stochastic_rounding(self.options.seed.map(StochasticRounding::new))
            .with_subnormals(self.options.subnormals);
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

    /// Schedule-free optimizers: turns every tensor's training weights `y` into the
    /// evaluation weights `x` (the library's `optimizer.eval()`; see
    /// [`Executor::schedulefree_eval`]). Before the first step it does nothing (there is no
    /// `z` yet), as the library. The optimizer does not record which weights the caller holds:
    /// call [`schedulefree_train`](Self::schedulefree_train) before the next step.
    ///
    /// Fails, writing nothing, if the config is not a schedule-free one or the tensors are
    /// not those of the state ([`Error::TensorCount`], [`Error::ModelChanged`]).
    pub fn schedulefree_eval<W: Element>(&self, weights: &mut [&mut [W]]) -> Result<(), Error> {
        self.schedulefree_switch("StatefulOptimizer::schedulefree_eval", weights, true)
    }

    /// Schedule-free optimizers: turns every tensor's evaluation weights `x` back into the
    /// training weights `y` (the library's `optimizer.train()`); as
    /// [`schedulefree_eval`](Self::schedulefree_eval) otherwise.
    pub fn schedulefree_train<W: Element>(&self, weights: &mut [&mut [W]]) -> Result<(), Error> {
        self.schedulefree_switch("StatefulOptimizer::schedulefree_train", weights, false)
    }

    fn schedulefree_switch<W: Element>(
        &self,
        call: &'static str,
        weights: &mut [&mut [W]],
        to_eval: bool,
    ) -> Result<(), Error> {
        let Some(beta) = self.config.schedulefree_beta() else {
            return Err(Error::IncompatibleOptions {
                reason: "the eval/train weight switch is for a schedule-free optimizer only",
            });
        };
        let Some(lengths) = &self.lengths else {
            return Ok(());
        };
        if weights.len() != lengths.len() {
            return Err(Error::TensorCount {
                call,
                what: "weight tensors",
                given: weights.len(),
                expected: lengths.len(),
            });
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
        if self.options.steps == 0 {
            return Ok(());
        }
        let exec = self.executor.with_subnormals(self.options.subnormals);
        for (w, state) in weights.iter_mut().zip(&self.state) {
            // `z` is the first buffer of both optimizers.
            let z = &state[0][..];
            if to_eval {
                exec.schedulefree_eval(w, z, beta)?;
            } else {
                exec.schedulefree_train(w, z, beta)?;
            }
        }
        Ok(())
    }

    /// The checkpoint: the config, the step count, the options (gradient multiplier, clipping,
    /// skipping, stochastic-rounding seed, subnormal policy) and every state buffer, in the versioned,
    /// checksummed format documented in [`crate::checkpoint`]. The backend and thread policy
    /// are not saved: every backend gives the same bits.
    pub fn save(&self) -> Vec<u8> {
        let Options {
            steps,
            grad_scale,
            max_grad_norm,
            skip_non_finite,
            seed,
            subnormals,
        } = self.options;
        let header = Header {
            config: self.config,
            dtype: T::DTYPE,
            steps,
            grad_scale,
            max_grad_norm,
            skip_non_finite,
            seed,
            subnormals,
            lengths: self.lengths.clone(),
            buffers_per_tensor: self.config.state_buffers().len(),
        };
        checkpoint::write(&header, |out| {
            for buffer in self.state.iter().flatten() {
                for &x in buffer.iter() {
                    checkpoint::put_element(x, out);
                }
            }
        })
    }

    /// Restores a checkpoint written by [`save`](Self::save): config, step count, options and
    /// state become the saved ones (the backend and thread policy stay).
    ///
    /// Everything is checked before anything changes: the magic bytes, the length, the
    /// checksum, the version, the content (see [`crate::checkpoint`]); then that the checkpoint
    /// is of this optimizer, and, if this optimizer has stepped a model already, of a model
    /// with the same tensor lengths. On any failure ([`Error::Checkpoint`]) the optimizer is
    /// left exactly as it was.
    ///
    /// "This optimizer" means: the same kind ([`Optimizer::code`]), every discrete choice of
    /// the config the same (the flags of its checkpoint record, listed in each optimizer's
    /// module: AMSGrad or not, centered RMSprop or not, the momentum form, Nesterov, the
    /// weight-decay mode, `maximize`, ...: a state saved under another choice means something
    /// else or has other buffers), and the state in `T`. The numbers of the config (learning
    /// rate, betas, eps, decay values) are the file's: a run resumes with the hyperparameters
    /// it was saved with. [`from_checkpoint`](Self::from_checkpoint) takes any config.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let (header, payload) = checkpoint::parse(bytes)?;
        if header.config.code() != self.config.code() {
            return Err(CheckpointError::OptimizerMismatch {
                file: header.config.name(),
                expected: self.config.name(),
            }
            .into());
        }
        // The same optimizer: the same kind and every discrete choice of its config (the
        // flags of its checkpoint record); the numbers are the file's.
        let (_, _, mine) = self.config.fields();
        let (_, _, theirs) = header.config.fields();
        let names = self.config.flag_names();
        if let Some(k) = (0..names.len()).find(|&k| mine[k] != theirs[k]) {
            return Err(CheckpointError::ConfigMismatch {
                optimizer: self.config.name(),
                option: names[k],
                file: theirs[k],
                expected: mine[k],
            }
            .into());
        }
        if let (Some(mine), Some(file)) = (&self.lengths, &header.lengths) {
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
        self.restore(header, payload)
    }

    /// Takes a parsed checkpoint's content, if its state is in `T`.
    fn restore(&mut self, header: Header, payload: &[u8]) -> Result<(), Error> {
        if header.dtype != T::DTYPE {
            return Err(CheckpointError::DTypeMismatch {
                file: header.dtype,
                expected: T::DTYPE,
            }
            .into());
        }
        let size = T::DTYPE.size();
        let mut elements = payload.chunks_exact(size);
        let state = header
            .lengths
            .iter()
            .flatten()
            .map(|&len| {
                (0..header.buffers_per_tensor)
                    .map(|_| {
                        AlignedBuffer::from_iter(
                            64,
                            elements
                                .by_ref()
                                .take(len)
                                .map(checkpoint::get_element::<T>),
                        )
                    })
                    .collect()
            })
            .collect();
        self.config = header.config;
        self.options = Options {
            steps: header.steps,
            grad_scale: header.grad_scale,
            max_grad_norm: header.max_grad_norm,
            skip_non_finite: header.skip_non_finite,
            seed: header.seed,
            subnormals: header.subnormals,
        };
        self.lengths = header.lengths;
        self.state = state;
        Ok(())
    }
}
