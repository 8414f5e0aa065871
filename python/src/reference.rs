//! `optkern._optkern.Reference`: the crate's own [`StatefulOptimizer`] over torch tensors, for
//! the test suite. It keeps its state in Rust, counts its own steps and numbers the model's
//! elements itself, so a test can step the same buffers with it and with `optkern.torch` and
//! compare the bits: the Python layer's state handling, step counts and hyperparameter
//! mapping are then checked against the crate's. Its tensors pass the same checks as a step's
//! (see `tensors.rs`).
use optkern::{DType, Element, StatefulOptimizer, StochasticRounding, Subnormals, bf16, f16};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::tensors::{Access, Checked, Raw, inspect, torch_name};
use crate::{config, value_error};

enum Inner {
    F32(StatefulOptimizer<f32>),
    BF16(StatefulOptimizer<bf16>),
    F16(StatefulOptimizer<f16>),
}

/// A [`StatefulOptimizer`] of the crate, stepping lists of torch tensors in place.
#[pyclass(module = "optkern._optkern", unsendable)]
pub struct Reference {
    inner: Inner,
}

fn build<T: Element>(
    kind: &str,
    hyper: &Bound<'_, PyDict>,
    seed: Option<u64>,
    flush: bool,
) -> PyResult<StatefulOptimizer<T>> {
    let opt = StatefulOptimizer::<T>::new(config(kind, hyper)?)
        .map_err(value_error)?
        .with_stochastic_rounding(seed.map(StochasticRounding::new))
        .map_err(value_error)?;
    Ok(if flush {
        opt.with_subnormals(Subnormals::Flush)
    } else {
        opt
    })
}

#[pymethods]
impl Reference {
    /// `Reference(kind, hyper, state_dtype, seed=None, flush_subnormals=False)`: `kind` and
    /// `hyper` as in a step's call; `state_dtype` "float32", "bfloat16" or "float16".
    #[new]
    #[pyo3(signature = (kind, hyper, state_dtype, seed=None, flush_subnormals=false))]
    fn new(
        kind: &str,
        hyper: &Bound<'_, PyDict>,
        state_dtype: &str,
        seed: Option<u64>,
        flush_subnormals: bool,
    ) -> PyResult<Self> {
        let inner = match state_dtype {
            "float32" => Inner::F32(build(kind, hyper, seed, flush_subnormals)?),
            "bfloat16" => Inner::BF16(build(kind, hyper, seed, flush_subnormals)?),
            "float16" => Inner::F16(build(kind, hyper, seed, flush_subnormals)?),
            other => {
                return Err(PyValueError::new_err(format!(
                    "optkern: state_dtype {other:?}: float32, bfloat16 or float16"
                )));
            }
        };
        Ok(Reference { inner })
    }

    /// The number of steps taken.
    fn steps(&self) -> u64 {
        match &self.inner {
            Inner::F32(o) => o.steps(),
            Inner::BF16(o) => o.steps(),
            Inner::F16(o) => o.steps(),
        }
    }

    /// Sets the learning rate for the next steps.
    fn set_lr(&mut self, lr: f64) -> PyResult<()> {
        match &mut self.inner {
            Inner::F32(o) => o.set_lr(lr),
            Inner::BF16(o) => o.set_lr(lr),
            Inner::F16(o) => o.set_lr(lr),
        }
        .map_err(value_error)
    }

    /// Sets the multiplier of every gradient value as it is read.
    fn set_grad_scale(&mut self, scale: f64) -> PyResult<()> {
        match &mut self.inner {
            Inner::F32(o) => o.set_grad_scale(scale),
            Inner::BF16(o) => o.set_grad_scale(scale),
            Inner::F16(o) => o.set_grad_scale(scale),
        }
        .map_err(value_error)
    }

    /// One step of the model `weights` (a list of tensors, one dtype) with `grads`, writing
    /// the new weights rounded into `copies` when given (float32 master weights, their
    /// bfloat16/float16 parameters).
    #[pyo3(signature = (weights, grads, copies=None))]
    fn step(
        &mut self,
        py: Python<'_>,
        weights: &Bound<'_, PyList>,
        grads: &Bound<'_, PyList>,
        copies: Option<&Bound<'_, PyList>>,
    ) -> PyResult<()> {
        let mut raws: Vec<Raw> = Vec::new();
        let mut access = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut take = |list: &Bound<'_, PyList>, what: &str, a: Access| -> PyResult<Vec<usize>> {
            let mut out = Vec::with_capacity(list.len());
            for (k, t) in list.iter().enumerate() {
                let name = format!("reference {what} {k}");
                raws.push(inspect(&t, &|| name.clone())?);
                access.push(a);
                names.push(name);
                out.push(raws.len() - 1);
            }
            Ok(out)
        };
        let w = take(weights, "weights", Access::Write)?;
        let g = take(grads, "gradient", Access::Read)?;
        let c = match copies {
            Some(list) => Some(take(list, "copy", Access::Write)?),
            None => None,
        };
        let one = |idx: &[usize], what: &str| -> PyResult<Option<DType>> {
            let first = idx.first().map(|&i| raws[i].dtype);
            if idx.iter().any(|&i| Some(raws[i].dtype) != first) {
                return Err(PyTypeError::new_err(format!(
                    "optkern: reference {what}: one dtype for all"
                )));
            }
            Ok(first)
        };
        let (wd, gd) = (one(&w, "weights")?, one(&g, "gradients")?);
        let cd = match &c {
            Some(c) => one(c, "copies")?,
            None => None,
        };
        let checked = Checked::new(raws, &access, &|i| names[i].clone())?;
        let (Some(wd), Some(gd)) = (wd, gd) else {
            return Ok(());
        };
        let (w, g) = (&w[..], &g[..]);
        let c = c.as_deref();
        // SAFETY (every arm): each index of `checked` is in one of `w`, `g`, `c` once, and the
        // tensors are held by the lists for the whole call.
        let result = py.detach(|| unsafe {
            match (&mut self.inner, wd, gd, cd, c) {
                (Inner::F32(o), DType::F32, DType::F32, None, None) => {
                    plain::<f32, f32, f32>(o, &checked, w, g)
                }
                (Inner::F32(o), DType::BF16, DType::BF16, None, None) => {
                    plain::<bf16, f32, bf16>(o, &checked, w, g)
                }
                (Inner::F32(o), DType::F16, DType::F16, None, None) => {
                    plain::<f16, f32, f16>(o, &checked, w, g)
                }
                (Inner::F32(o), DType::F32, DType::BF16, Some(DType::BF16), Some(c)) => {
                    with_copies::<f32, f32, bf16, bf16>(o, &checked, w, g, c)
                }
                (Inner::F32(o), DType::F32, DType::F16, Some(DType::F16), Some(c)) => {
                    with_copies::<f32, f32, f16, f16>(o, &checked, w, g, c)
                }
                (Inner::BF16(o), DType::BF16, DType::BF16, None, None) => {
                    plain::<bf16, bf16, bf16>(o, &checked, w, g)
                }
                (Inner::F16(o), DType::F16, DType::F16, None, None) => {
                    plain::<f16, f16, f16>(o, &checked, w, g)
                }
                _ => Err(optkern::Error::IncompatibleOptions {
                    reason: "reference: this combination of dtypes is not one the extension steps",
                }),
            }
        });
        result.map_err(|e| {
            PyTypeError::new_err(format!(
                "optkern: reference step (weights {}, gradients {}): {e}",
                torch_name(wd),
                torch_name(gd)
            ))
        })
    }
}

/// # Safety
/// As [`Checked::slice_mut`] for every index of `w` and `g`.
unsafe fn plain<W: Element, T: Element, G: Element>(
    o: &mut StatefulOptimizer<T>,
    checked: &Checked,
    w: &[usize],
    g: &[usize],
) -> Result<(), optkern::Error> {
    // SAFETY: forwarded from this function's contract; each index is taken once.
    let (mut ws, gs): (Vec<&mut [W]>, Vec<&[G]>) = unsafe {
        (
            w.iter().map(|&i| checked.slice_mut::<W>(i)).collect(),
            g.iter().map(|&i| checked.slice::<G>(i)).collect(),
        )
    };
    o.step(&mut ws, &gs).map(|_| ())
}

/// # Safety
/// As [`Checked::slice_mut`] for every index of `w`, `g` and `c`.
unsafe fn with_copies<W: Element, T: Element, G: Element, C: Element>(
    o: &mut StatefulOptimizer<T>,
    checked: &Checked,
    w: &[usize],
    g: &[usize],
    c: &[usize],
) -> Result<(), optkern::Error> {
    // SAFETY: forwarded from this function's contract; each index is taken once.
    let (mut ws, gs): (Vec<&mut [W]>, Vec<&[G]>) = unsafe {
        (
            w.iter().map(|&i| checked.slice_mut::<W>(i)).collect(),
            g.iter().map(|&i| checked.slice::<G>(i)).collect(),
        )
    };
    // SAFETY: as above.
    let mut cs: Vec<&mut [C]> = unsafe { c.iter().map(|&i| checked.slice_mut::<C>(i)).collect() };
    o.step_with_copies(&mut ws, &gs, &mut cs).map(|_| ())
}
