//! Many tensors in one call, LAMB, and the checked training step.
//!
//! A model has hundreds of tensors. [`Executor::step_many`] steps all of them with one
//! optimizer config in one call: the tensors are cut into balanced chunks across all of them
//! (whole small tensors, pieces of large ones) and the chunks spread over the threads in one
//! parallel region. Each tensor brings its own weights, state buffers and gradient (a
//! [`TensorStep`]), and optionally a second, lower-precision copy of its new weights (the
//! model copy of `f32` master weights), written in the same pass.
//!
//! Every element gets exactly the bits that stepping its tensor alone would give it, on every
//! backend and thread count; with stochastic rounding, the elements are numbered one tensor
//! after the other from [`StochasticRounding::index_base`](crate::StochasticRounding), so
//! stepping tensor `k` alone gives the same bits when its `index_base` is the sum of the
//! lengths of the tensors before it.
//!
//! [`Executor::check_and_step`] is the common mixed-precision step: one read pass over every
//! gradient for the global norm and non-finite values, then (if every value was finite) the
//! update with the inverse loss scale and the clipping coefficient folded into one gradient
//! multiplier. When a gradient holds an infinity or a NaN nothing is written, and the caller
//! lowers its loss scale.

use core::marker::PhantomData;

use super::lamb::{LambApply, LambMoments};
use super::optimizer_calls;
use super::{adagrad::Adagrad, adam::Adam, lamb::Lamb, lion::Lion, momentum::Momentum};
use super::{momentum::Sgd, rmsprop::Rmsprop};
use crate::Executor;
#[cfg(doc)]
use crate::StochasticRounding;
use crate::element::{Element, bf16, f16};
use crate::error::{Error, same_len};
use crate::executor::{GradNorm, clip_coefficient};
use crate::reduce::{blocks, pairwise_sum};
use crate::stream::{Buffers, Elementwise, Update};

/// One tensor of a multi-tensor step: its weights, its state buffers (in the order
/// [`Optimizer::state_buffers`] names them), its gradient, and optionally a model copy that
/// receives the new weights in another element type (`C`).
///
/// ```
/// use optkern::{TensorStep, bf16};
///
/// // f32 master weights with Adam's two f32 moments, a bf16 gradient and a bf16 model copy.
/// let (mut w, mut m, mut v) = (vec![0.0f32; 8], vec![0.0f32; 8], vec![0.0f32; 8]);
/// let (g, mut model) = (vec![bf16::ONE; 8], vec![bf16::ZERO; 8]);
/// let tensor = TensorStep::new(&mut w, vec![&mut m[..], &mut v[..]], &g).model_copy(&mut model);
/// # let _ = tensor;
/// ```
#[derive(Debug)]
pub struct TensorStep<'a, W, T, G, C = W> {
    /// The weights (read and written).
    pub weights: &'a mut [W],
    /// The optimizer's state buffers, as [`Optimizer::state_buffers`] lists them.
    pub state: Vec<&'a mut [T]>,
    /// The gradient (only read).
    pub grad: &'a [G],
    /// A second copy of the new weights, in `C` (written only).
    pub model_copy: Option<&'a mut [C]>,
}

impl<'a, W, T, G> TensorStep<'a, W, T, G, W> {
    /// A tensor without a model copy.
    pub fn new(weights: &'a mut [W], state: Vec<&'a mut [T]>, grad: &'a [G]) -> Self {
        TensorStep {
            weights,
            state,
            grad,
            model_copy: None,
        }
    }
}

impl<'a, W, T, G, C> TensorStep<'a, W, T, G, C> {
    /// The same tensor, writing its new weights to `copy` too (rounded to `C`, stochastically
    /// when the executor says so).
    pub fn model_copy<D>(self, copy: &'a mut [D]) -> TensorStep<'a, W, T, G, D> {
        TensorStep {
            weights: self.weights,
            state: self.state,
            grad: self.grad,
            model_copy: Some(copy),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

impl<W: Element, T: Element, G: Element, C: Element> TensorStep<'_, W, T, G, C> {
    /// Checks the tensor against the optimizer: the number of state buffers and every length.
    fn check(&self, call: &'static str, names: &[&'static str]) -> Result<(), Error> {
        if self.state.len() != names.len() {
            return Err(Error::StateBufferCount {
                call,
                expected: names.len(),
                given: self.state.len(),
            });
        }
        let n = self.weights.len();
        for (s, name) in self.state.iter().zip(names) {
            same_len(call, name, s.len(), n)?;
        }
        same_len(call, "gradient", self.grad.len(), n)?;
        if let Some(c) = &self.model_copy {
            same_len(call, "model copy", c.len(), n)?;
        }
        Ok(())
    }

    /// The tensor's buffers for a kernel with `N` state buffers (checked before) and `R` sums.
    fn buffers<'s, const N: usize, const R: usize>(
        &'s mut self,
        with_copy: bool,
        sums: [&'s mut [f64]; R],
    ) -> Buffers<'s, W, T, G, C, N, R> {
        let mut state = self.state.iter_mut();
        Buffers {
            w: &mut *self.weights,
            state: core::array::from_fn(|_| &mut **state.next().expect("checked state count")),
            g: self.grad,
            copy: if with_copy {
                self.model_copy.as_deref_mut()
            } else {
                None
            },
            index: 0,
            sums,
        }
    }
}

/// Any optimizer config of the crate, for the calls that step many tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Optimizer {
    /// Plain SGD (no state).
    Sgd(Sgd),
    /// SGD with momentum, in any of its forms (one buffer: the velocity).
    Momentum(Momentum),
    /// Adam, AdamW, AMSGrad.
    Adam(Adam),
    /// RMSprop.
    Rmsprop(Rmsprop),
    /// Adagrad.
    Adagrad(Adagrad),
    /// Lion.
    Lion(Lion),
    /// LAMB.
    Lamb(Lamb),
}

macro_rules! optimizer_from {
    ($($variant:ident),*) => {$(
        impl From<$variant> for Optimizer {
            fn from(config: $variant) -> Optimizer {
                Optimizer::$variant(config)
            }
        }
    )*};
}
optimizer_from!(Sgd, Momentum, Adam, Rmsprop, Adagrad, Lion, Lamb);

impl Optimizer {
    /// The state buffers each tensor needs with this config, in the order a [`TensorStep`]
    /// gives them:
    ///
    /// | optimizer | buffers |
    /// |---|---|
    /// | SGD | none |
    /// | momentum | `velocity` |
    /// | Adam, AdamW | `m`, `v` |
    /// | AMSGrad | `m`, `v`, `v_max` |
    /// | RMSprop | `square_avg`, then `grad_avg` if centered, then `momentum_buffer` if the momentum is above 0 |
    /// | Adagrad | `sum` |
    /// | Lion | `m` |
    /// | LAMB | `m`, `v` |
    pub fn state_buffers(&self) -> &'static [&'static str] {
        match self {
            Optimizer::Sgd(_) => &[],
            Optimizer::Momentum(_) => &["velocity"],
            Optimizer::Adam(c) if c.amsgrad() => &["m", "v", "v_max"],
            Optimizer::Adam(_) | Optimizer::Lamb(_) => &["m", "v"],
            Optimizer::Rmsprop(c) => match (c.centered(), c.momentum() > 0.0) {
                (false, false) => &["square_avg"],
                (true, false) => &["square_avg", "grad_avg"],
                (false, true) => &["square_avg", "momentum_buffer"],
                (true, true) => &["square_avg", "grad_avg", "momentum_buffer"],
            },
            Optimizer::Adagrad(_) => &["sum"],
            Optimizer::Lion(_) => &["m"],
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(c) => c.lr(),
            Optimizer::Momentum(c) => c.lr(),
            Optimizer::Adam(c) => c.lr(),
            Optimizer::Rmsprop(c) => c.lr(),
            Optimizer::Adagrad(c) => c.lr(),
            Optimizer::Lion(c) => c.lr(),
            Optimizer::Lamb(c) => c.lr(),
        }
    }

    /// Changes the learning rate (for a schedule), checking it as the config's own `set_lr`
    /// does; nothing changes when it fails.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        match self {
            Optimizer::Sgd(c) => c.set_lr(lr),
            Optimizer::Momentum(c) => c.set_lr(lr),
            Optimizer::Adam(c) => c.set_lr(lr),
            Optimizer::Rmsprop(c) => c.set_lr(lr),
            Optimizer::Adagrad(c) => c.set_lr(lr),
            Optimizer::Lion(c) => c.set_lr(lr),
            Optimizer::Lamb(c) => c.set_lr(lr),
        }
    }
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
    /// One step of `optimizer` on every tensor of `tensors`, in one parallel region.
    ///
    /// The tensors are cut into balanced chunks across all of them (whole small tensors,
    /// pieces of large ones) that spread over the threads together. Each element gets the bits
    /// that the single-tensor call would give it, on every backend and thread count. With
    /// stochastic rounding, elements are numbered one tensor after the other from
    /// [`StochasticRounding::index_base`]: tensor `k` stepped alone with an `index_base` of
    /// the lengths of the tensors before it (plus the base) gets the same bits. The model
    /// copies get the new weights rounded to their type. For LAMB the trust ratio is per tensor and the
    /// clipping by `max_grad_norm` uses the norm of all the gradients together. `step` counts
    /// from 1.
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
        self.check_many(tensors, optimizer, step)?;
        self.step_many_checked(tensors, optimizer, step);
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
    /// let exec = Executor::new()?.grad_scale(1.0 / 1024.0)?;
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
        if let Some(max) = max_norm {
            crate::error::positive("max_norm", max)?;
        }
        self.check_many(tensors, optimizer, step)?;
        let grads: Vec<&[G]> = tensors.iter().map(|t| t.grad).collect();
        let grad_norm = self.grad_norm(&grads);
        if !grad_norm.is_finite() {
            return Ok(StepReport {
                grad_norm: Some(grad_norm),
                applied: false,
                multiplier: 0.0,
            });
        }
        let scale = self.gradient_multiplier();
        let clip = match max_norm {
            Some(max) => clip_coefficient(grad_norm.norm() * scale.abs(), max),
            None => 1.0,
        };
        let multiplier = scale * clip;
        self.grad_scale(multiplier)?
            .step_many_checked(tensors, optimizer, step);
        Ok(StepReport {
            grad_norm: Some(grad_norm),
            applied: true,
            multiplier,
        })
    }

    /// Checks everything [`step_many`](Executor::step_many) checks.
    fn check_many<W: Element, T: Element, G: Element, C: Element>(
        &self,
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

    /// [`step_many`](Executor::step_many) after its checks.
    fn step_many_checked<W: Element, T: Element, G: Element, C: Element>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        optimizer: &Optimizer,
        step: u64,
    ) {
        let scale = self.gradient_multiplier();
        match optimizer {
            Optimizer::Sgd(c) => self.many::<_, _, _, _, _, 0>(tensors, c.update(scale), step),
            Optimizer::Momentum(c) => {
                self.many::<_, _, _, _, _, 1>(tensors, c.update(step == 1, scale), step)
            }
            Optimizer::Adam(c) if c.amsgrad() => {
                self.many::<_, _, _, _, _, 3>(tensors, c.update(step, scale), step)
            }
            Optimizer::Adam(c) => {
                self.many::<_, _, _, _, _, 2>(tensors, c.update(step, scale), step)
            }
            Optimizer::Rmsprop(c) => match optimizer.state_buffers().len() {
                1 => self.many::<_, _, _, _, _, 1>(tensors, c.update(scale), step),
                2 => self.many::<_, _, _, _, _, 2>(tensors, c.update(scale), step),
                _ => self.many::<_, _, _, _, _, 3>(tensors, c.update(scale), step),
            },
            Optimizer::Adagrad(c) => {
                self.many::<_, _, _, _, _, 1>(tensors, c.update(step, scale), step)
            }
            Optimizer::Lion(c) => self.many::<_, _, _, _, _, 1>(tensors, c.update(scale), step),
            Optimizer::Lamb(c) => self.lamb_many(tensors, c, step),
        }
    }

    /// One elementwise update over every tensor.
    fn many<U, W, T, G, C, const N: usize>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        update: U,
        step: u64,
    ) where
        U: Update<N, 0>,
        W: Element,
        T: Element,
        G: Element,
        C: Element,
    {
        let kernels = tensors
            .iter_mut()
            .map(|t| Elementwise {
                update,
                buffers: t.buffers::<N, 0>(true, []),
                rounding: None,
            })
            .collect();
        self.run_elementwise_many(kernels, step);
    }

    /// LAMB over every tensor: the optional global-norm pass, the moments pass (with the
    /// per-tensor sums of squares), the trust ratios, the weights pass.
    fn lamb_many<W: Element, T: Element, G: Element, C: Element>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        config: &Lamb,
        step: u64,
    ) {
        let mut scale = self.gradient_multiplier();
        if let Some(max) = config.max_grad_norm() {
            // timm: the gradients are divided by `norm / max_grad_norm` when the norm is above
            // it (a NaN norm compares false and clips nothing).
            let grads: Vec<&[G]> = tensors.iter().map(|t| t.grad).collect();
            let norm = self.grad_norm(&grads).norm() * scale.abs();
            if norm > max {
                scale /= norm / max;
            }
        }
        let c = config.coefficients(step, scale);

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
            })
            .collect();
        self.run_elementwise_many(kernels, step);

        let kernels = tensors
            .iter_mut()
            .zip(&sums)
            .map(|(t, [w_sq, u_sq])| {
                let trust = config.trust_ratio(pairwise_sum(w_sq), pairwise_sum(u_sq));
                Elementwise {
                    update: LambApply {
                        c,
                        step_size: (config.lr() * trust) as f32,
                    },
                    buffers: t.buffers::<2, 0>(true, []),
                    rounding: None,
                }
            })
            .collect();
        self.run_elementwise_many(kernels, step);
    }

    /// One LAMB step on one tensor: weights `w`, moments `m` and `v`, gradient `g`, of any
    /// element types; `step` counts from 1. The clipping by `max_grad_norm` uses this tensor's
    /// gradient norm; to clip by the norm of a whole model, step its tensors together with
    /// [`Executor::step_many`].
    ///
    /// Fails, writing nothing, if a length differs or `step` is 0.
    pub fn lamb_step<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        m: &mut [T],
        v: &mut [T],
        g: &[G],
        config: &Lamb,
        step: u64,
    ) -> Result<(), Error> {
        const CALL: &str = "lamb_step";
        if step == 0 {
            return Err(Error::InvalidStep);
        }
        let tensor = TensorStep::new(w, vec![m, v], g);
        tensor.check(CALL, Optimizer::Lamb(*config).state_buffers())?;
        self.lamb_many(&mut [tensor], config, step);
        Ok(())
    }
}

optimizer_calls! {
    /// One LAMB step on one tensor, for any mix of element types; see [`Executor::lamb_step`].
    ///
    /// ```
    /// use optkern::Lamb;
    ///
    /// let lamb = Lamb::builder(1e-2).build().unwrap();
    /// let (mut w, mut m, mut v, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
    /// optkern::lamb_step(&mut w, &mut m, &mut v, &g, &lamb, 1);
    /// assert!(w[0] < 1.0);
    /// ```
    fn lamb_step / try_lamb_step(w: weights, m: state, v: state, g: gradient; config: &Lamb, step: u64);
    f32 => lamb_step_f32 / try_lamb_step_f32,
    f16 => lamb_step_f16 / try_lamb_step_f16,
    bf16 => lamb_step_bf16 / try_lamb_step_bf16,
}
