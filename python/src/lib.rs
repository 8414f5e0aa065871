//! `optkern._optkern`: the extension behind `optkern.torch`. It steps lists of torch tensors
//! in place with the crate's [`Executor::step_many`], with the GIL released. Raw memory is
//! reached only through [`tensors`], which checks every tensor of a call first.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use optkern::{
    Adadelta, Adagrad, Adam, Adamax, Ademamix, Adopt, Asgd, DType, Element, Executor, Lamb, Lion,
    Momentum, Nadam, Optimizer, Radam, Rmsprop, Rprop, ScheduleFreeAdamw, ScheduleFreeSgd, Sgd,
    StochasticRounding, Subnormals, TensorStep, Threads, WeightDecay, bf16, f16,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyTuple};

mod reference;
mod tensors;
use tensors::{Access, Checked, inspect, torch_name};

fn value_error(e: optkern::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn num(h: &Bound<'_, PyDict>, key: &str, default: f64) -> PyResult<f64> {
    match h.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<f64>().map_err(|_| {
            PyTypeError::new_err(format!(
                "optkern: {key} must be a number, not {}",
                v.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        }),
        _ => Ok(default),
    }
}

/// A count of steps: a non-negative integer (0 when absent).
fn steps(h: &Bound<'_, PyDict>, key: &str) -> PyResult<u64> {
    match h.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<u64>().map_err(|_| {
            PyValueError::new_err(format!(
                "optkern: {key} must be a non-negative integer, not {}",
                v.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        }),
        _ => Ok(0),
    }
}

fn flag(h: &Bound<'_, PyDict>, key: &str) -> PyResult<bool> {
    match h.get_item(key)? {
        Some(v) if !v.is_none() => v.is_truthy(),
        _ => Ok(false),
    }
}

fn decay(wd: f64, decoupled: bool) -> WeightDecay {
    match (wd, decoupled) {
        (0.0, _) => WeightDecay::None,
        (wd, true) => WeightDecay::Decoupled(wd),
        (wd, false) => WeightDecay::L2(wd),
    }
}

/// The crate's config for `kind` from hyperparameters named as the crate names them (the
/// Python layer maps torch's names and defaults to these).
fn config(kind: &str, h: &Bound<'_, PyDict>) -> PyResult<Optimizer> {
    let lr = num(h, "lr", f64::NAN)?;
    let wd = decay(num(h, "weight_decay", 0.0)?, flag(h, "decoupled")?);
    let maximize = flag(h, "maximize")?;
    let (b1, b2) = (num(h, "beta1", 0.9)?, num(h, "beta2", 0.999)?);
    let built: Result<Optimizer, optkern::Error> = match kind {
        "sgd" => Sgd::builder(lr)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "momentum" => Momentum::heavy_ball(lr, num(h, "momentum", 0.0)?)
            .dampening(num(h, "dampening", 0.0)?)
            .nesterov(flag(h, "nesterov")?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "adam" => Adam::builder(lr)
            .betas(b1, b2)
            .eps(num(h, "eps", 1e-8)?)
            .weight_decay(wd)
            .amsgrad(flag(h, "amsgrad")?)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "adamax" => Adamax::builder(lr)
            .betas(b1, b2)
            .eps(num(h, "eps", 1e-8)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "rmsprop" => Rmsprop::builder(lr)
            .alpha(num(h, "alpha", 0.99)?)
            .eps(num(h, "eps", 1e-8)?)
            .momentum(num(h, "momentum", 0.0)?)
            .centered(flag(h, "centered")?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "adagrad" => Adagrad::builder(lr)
            .lr_decay(num(h, "lr_decay", 0.0)?)
            .initial_accumulator_value(num(h, "initial_accumulator_value", 0.0)?)
            .eps(num(h, "eps", 1e-10)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "adadelta" => Adadelta::builder(lr)
            .rho(num(h, "rho", 0.9)?)
            .eps(num(h, "eps", 1e-6)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "nadam" => Nadam::builder(lr)
            .betas(b1, b2)
            .eps(num(h, "eps", 1e-8)?)
            .momentum_decay(num(h, "momentum_decay", 4e-3)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "radam" => Radam::builder(lr)
            .betas(b1, b2)
            .eps(num(h, "eps", 1e-8)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "rprop" => Rprop::builder(lr)
            .etas(num(h, "eta_minus", 0.5)?, num(h, "eta_plus", 1.2)?)
            .step_sizes(num(h, "step_min", 1e-6)?, num(h, "step_max", 50.0)?)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "asgd" => Asgd::builder(lr)
            .lambd(num(h, "lambd", 1e-4)?)
            .alpha(num(h, "alpha", 0.75)?)
            .t0(num(h, "t0", 1e6)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "adopt" => Adopt::builder(lr)
            .betas(b1, num(h, "beta2", 0.9999)?)
            .eps(num(h, "eps", 1e-6)?)
            .clip(flag(h, "clip")?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "ademamix" => {
            let warmup = match h.get_item("t_alpha_beta3")? {
                Some(v) if !v.is_none() => Some(v.extract::<f64>()?),
                _ => None,
            };
            Ademamix::builder(lr)
                .betas(b1, b2)
                .beta3(num(h, "beta3", 0.9999)?)
                .alpha(num(h, "alpha", 5.0)?)
                .t_alpha_beta3(warmup)
                .eps(num(h, "eps", 1e-8)?)
                .weight_decay(wd)
                .maximize(maximize)
                .build()
                .map(Into::into)
        }
        "schedulefree_adamw" => ScheduleFreeAdamw::builder(lr)
            .betas(b1, b2)
            .eps(num(h, "eps", 1e-8)?)
            .warmup_steps(steps(h, "warmup_steps")?)
            .r(num(h, "r", 0.0)?)
            .weight_lr_power(num(h, "weight_lr_power", 2.0)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "schedulefree_sgd" => ScheduleFreeSgd::builder(lr)
            .momentum(num(h, "momentum", 0.9)?)
            .warmup_steps(steps(h, "warmup_steps")?)
            .r(num(h, "r", 0.0)?)
            .weight_lr_power(num(h, "weight_lr_power", 2.0)?)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "lion" => Lion::builder(lr)
            .betas(b1, b2)
            .weight_decay(wd)
            .maximize(maximize)
            .build()
            .map(Into::into),
        "lamb" => {
            let max_grad_norm = match h.get_item("max_grad_norm")? {
                Some(v) if !v.is_none() => Some(v.extract::<f64>()?),
                _ => None,
            };
            Lamb::builder(lr)
                .betas(b1, b2)
                .eps(num(h, "eps", 1e-6)?)
                .weight_decay(wd)
                .bias_correction(flag(h, "bias_correction")?)
                .grad_averaging(flag(h, "grad_averaging")?)
                .max_grad_norm(max_grad_norm)
                .trust_clip(flag(h, "trust_clip")?)
                .always_adapt(flag(h, "always_adapt")?)
                .maximize(maximize)
                .build()
                .map(Into::into)
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "optkern: unknown optimizer kind {other:?}"
            )));
        }
    };
    built.map_err(value_error)
}

/// The names of the state buffers the crate's config for `kind` uses, in the order the
/// kernels take them.
#[pyfunction]
fn state_buffers(kind: &str, hyper: &Bound<'_, PyDict>) -> PyResult<Vec<&'static str>> {
    Ok(config(kind, hyper)?.state_buffers().to_vec())
}

/// Checks the hyperparameters as the kernels will use them (in `f32`), raising ValueError
/// with the crate's message if one is refused.
#[pyfunction]
fn validate(kind: &str, hyper: &Bound<'_, PyDict>) -> PyResult<()> {
    config(kind, hyper).map(|_| ())
}

/// NAdam's momentum product `mu_1 * ... * mu_step` (torch's state `mu_product`) for the
/// hyperparameters of a `"nadam"` config, as the crate computes it (`Nadam::mu_product`).
#[pyfunction]
fn nadam_mu_product(hyper: &Bound<'_, PyDict>, step: u64) -> PyResult<f64> {
    match config("nadam", hyper)? {
        Optimizer::Nadam(c) => Ok(c.mu_product(step)),
        _ => unreachable!("a NAdam config"),
    }
}

/// ASGD's `(eta, mu)` of step `step` (from 1) for the hyperparameters of an `"asgd"` config,
/// as the crate computes them (`Asgd::eta`, `Asgd::mu`): torch's state `eta` and `mu` after
/// step `step - 1`.
#[pyfunction]
fn asgd_schedule(hyper: &Bound<'_, PyDict>, step: u64) -> PyResult<(f32, f32)> {
    match config("asgd", hyper)? {
        Optimizer::Asgd(c) => Ok((c.eta(step), c.mu(step))),
        _ => unreachable!("an ASGD config"),
    }
}

/// The backend the crate chose for this CPU: "avx512", "avx2", "neon" or "scalar".
#[pyfunction]
fn backend() -> PyResult<String> {
    Ok(Executor::new().map_err(value_error)?.backend().to_string())
}

/// One rayon pool per thread count, created on first use and kept.
fn pool(threads: usize) -> PyResult<Arc<rayon::ThreadPool>> {
    static POOLS: Mutex<Option<HashMap<usize, Arc<rayon::ThreadPool>>>> = Mutex::new(None);
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    let map = pools.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("optkern-{i}"))
        .build()
        .map_err(|e| {
            PyValueError::new_err(format!("optkern: cannot start {threads} threads: {e}"))
        })?;
    let p = Arc::new(p);
    map.insert(threads, p.clone());
    Ok(p)
}

/// The dtypes of one tensor of a step: weights, state, gradient, model copy (`None`: none).
type Combo = (DType, DType, DType, Option<DType>);

/// The combinations the extension compiles (each one instantiates every optimizer's
/// kernels): every buffer of one type; bf16/f16 parameters with f32 state; f32 master
/// weights with f32 state, a bf16/f16 gradient and a bf16/f16 model copy.
const COMBOS: [Combo; 7] = [
    (DType::F32, DType::F32, DType::F32, None),
    (DType::BF16, DType::BF16, DType::BF16, None),
    (DType::F16, DType::F16, DType::F16, None),
    (DType::BF16, DType::F32, DType::BF16, None),
    (DType::F16, DType::F32, DType::F16, None),
    (DType::F32, DType::F32, DType::BF16, Some(DType::BF16)),
    (DType::F32, DType::F32, DType::F16, Some(DType::F16)),
];

/// A tensor of the step, by index into the call's checked tensors.
struct Entry {
    weights: usize,
    grad: usize,
    state: Vec<usize>,
    copy: Option<usize>,
    /// The step counter to set to the crate's step once the step is done.
    counter: Option<usize>,
}

/// Where an entry's step number comes from.
enum StepOf {
    /// Given by the caller.
    Given(u64),
    /// One more than the count in the entry's step counter.
    Counter(usize),
}

/// One optimizer call as read, before the step counters are read.
struct Parsed {
    optimizer: Optimizer,
    entries: Vec<(Combo, Entry, StepOf)>,
}

/// One optimizer call: its config and tensors, by step number and dtype combination.
struct Call {
    optimizer: Optimizer,
    groups: Vec<(u64, Combo, Vec<Entry>)>,
}

/// What a tensor of a step is, for error messages.
#[derive(Clone, Copy)]
enum Part {
    Parameter,
    MasterWeights,
    Gradient,
    State(&'static str),
    Counter,
}

/// The tensors of a step as they are read: each one's address, access and name.
struct Tensors<'py> {
    raws: Vec<tensors::Raw>,
    access: Vec<Access>,
    names: Vec<(Bound<'py, PyAny>, Part)>,
}

/// "param_groups[0] parameter 3 gradient", from the entry's label and the part.
fn describe(label: &Bound<'_, PyAny>, part: Part) -> String {
    let label = label
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into());
    match part {
        Part::Parameter => format!("{label} parameter"),
        Part::MasterWeights => format!("{label} master weights"),
        Part::Gradient => format!("{label} gradient"),
        Part::State(name) => format!("{label} state {name:?}"),
        Part::Counter => format!("{label} step count"),
    }
}

impl<'py> Tensors<'py> {
    fn add(
        &mut self,
        obj: &Bound<'py, PyAny>,
        label: &Bound<'py, PyAny>,
        part: Part,
        access: Access,
    ) -> PyResult<usize> {
        self.raws.push(inspect(obj, &|| describe(label, part))?);
        self.access.push(access);
        self.names.push((label.clone(), part));
        Ok(self.raws.len() - 1)
    }

    fn name(&self, i: usize) -> String {
        let (label, part) = &self.names[i];
        describe(label, *part)
    }
}

/// The largest step count a float32 counter holds exactly with its successor.
const MAX_COUNT: f32 = 16_777_215.0;

/// Reads one call `(kind, hyper, entries)`, checking each tensor and its lengths.
fn parse_call<'py>(call: &Bound<'py, PyAny>, tensors: &mut Tensors<'py>) -> PyResult<Parsed> {
    let py = call.py();
    let call = call.cast::<PyTuple>()?;
    if call.len() != 3 {
        return Err(PyTypeError::new_err(
            "optkern: a call is (kind, hyper, entries)",
        ));
    }
    let kind: String = call.get_item(0)?.extract()?;
    let hyper = call.get_item(1)?.cast_into::<PyDict>()?;
    let entries = call.get_item(2)?.cast_into::<PyList>()?;
    let optimizer = config(&kind, &hyper)?;
    let names = optimizer.state_buffers();
    let n_state = names.len();
    let mut list: Vec<(Combo, Entry, StepOf)> = Vec::with_capacity(entries.len());
    for entry in entries.iter() {
        let entry = entry.cast_into::<PyTuple>()?;
        if entry.len() != 6 {
            return Err(PyTypeError::new_err(
                "optkern: an entry is (label, weights, grad, state, copy, step)",
            ));
        }
        let label = entry.get_item(0)?;
        let (w, g, state, copy, step) = (
            entry.get_item(1)?,
            entry.get_item(2)?,
            entry.get_item(3)?,
            entry.get_item(4)?,
            entry.get_item(5)?,
        );
        let state = state.cast_into::<PyList>()?;
        if state.len() != n_state {
            return Err(PyValueError::new_err(format!(
                "optkern: {}: {} state tensors given, {kind} uses {n_state}",
                label.str()?,
                state.len()
            )));
        }
        let wi = tensors.add(
            &w,
            &label,
            if copy.is_none() {
                Part::Parameter
            } else {
                Part::MasterWeights
            },
            Access::Write,
        )?;
        let gi = tensors.add(&g, &label, Part::Gradient, Access::Read)?;
        let mut si = Vec::with_capacity(n_state);
        for (k, s) in state.iter().enumerate() {
            si.push(tensors.add(&s, &label, Part::State(names[k]), Access::Write)?);
        }
        let ci = if copy.is_none() {
            None
        } else {
            Some(tensors.add(&copy, &label, Part::Parameter, Access::Write)?)
        };
        // (An int is told apart first: asking a tensor for an int raises, slowly.)
        let (step_of, counter) = if step.is_instance_of::<PyInt>() {
            let n: u64 = step.extract().map_err(|_| {
                PyValueError::new_err(format!(
                    "optkern: {}: a step number is an integer from 1",
                    label.str().map(|s| s.to_string()).unwrap_or_default()
                ))
            })?;
            if n == 0 {
                return Err(PyValueError::new_err(format!(
                    "optkern: {}: steps count from 1",
                    label.str()?
                )));
            }
            (StepOf::Given(n), None)
        } else {
            let k = tensors.add(&step, &label, Part::Counter, Access::Write)?;
            let raw = &tensors.raws[k];
            if raw.dtype != DType::F32 || raw.len != 1 {
                return Err(PyTypeError::new_err(format!(
                    "optkern: {}: a step count is a float32 tensor of one element (torch's \"step\"), not {} of {} elements",
                    tensors.name(k),
                    torch_name(raw.dtype),
                    raw.len
                )));
            }
            (StepOf::Counter(k), Some(k))
        };
        // Shapes: the gradient has the parameter's shape, the state and the copy its numel.
        let shape = w.getattr(intern!(py, "shape"))?;
        let gshape = g.getattr(intern!(py, "shape"))?;
        if !gshape.eq(&shape)? {
            return Err(PyValueError::new_err(format!(
                "optkern: {}: the gradient's shape {} differs from the parameter's {}",
                label.str()?,
                gshape.str()?,
                shape.str()?
            )));
        }
        let raws = &tensors.raws;
        if let Some(c) = ci
            && raws[c].len != raws[wi].len
        {
            return Err(PyValueError::new_err(format!(
                "optkern: {}: the parameter has {} elements, its master weights {}",
                label.str()?,
                raws[c].len,
                raws[wi].len
            )));
        }
        for &s in &si {
            if raws[s].len != raws[wi].len {
                return Err(PyValueError::new_err(format!(
                    "optkern: {}: {} elements, the parameter has {}",
                    tensors.name(s),
                    raws[s].len,
                    raws[wi].len
                )));
            }
        }
        if si.windows(2).any(|p| raws[p[0]].dtype != raws[p[1]].dtype) {
            return Err(PyTypeError::new_err(format!(
                "optkern: {}: the state tensors have different dtypes",
                label.str()?
            )));
        }
        let combo: Combo = (
            raws[wi].dtype,
            si.first().map_or(raws[wi].dtype, |&s| raws[s].dtype),
            raws[gi].dtype,
            ci.map(|c| raws[c].dtype),
        );
        if !COMBOS.contains(&combo) {
            return Err(PyTypeError::new_err(format!(
                "optkern: {}: unsupported dtypes (parameter {}, state {}, gradient {}{}); supported: every tensor in one dtype, bfloat16/float16 parameters with float32 state, float32 master weights for bfloat16/float16 parameters",
                label.str()?,
                torch_name(combo.3.unwrap_or(combo.0)),
                torch_name(combo.1),
                torch_name(combo.2),
                if combo.3.is_some() {
                    ", float32 master weights"
                } else {
                    ""
                }
            )));
        }
        list.push((
            combo,
            Entry {
                weights: wi,
                grad: gi,
                state: si,
                copy: ci,
                counter,
            },
            step_of,
        ));
    }
    Ok(Parsed {
        optimizer,
        entries: list,
    })
}

/// Groups a parsed call's entries by step number and dtype combination (in order of first
/// appearance), reading the step counters.
fn resolve(parsed: Parsed, checked: &Checked, tensors: &Tensors<'_>) -> PyResult<Call> {
    let mut groups: Vec<(u64, Combo, Vec<Entry>)> = Vec::new();
    for (combo, entry, step_of) in parsed.entries {
        let step = match step_of {
            StepOf::Given(n) => n,
            StepOf::Counter(k) => {
                // SAFETY: no slice of any tensor of the call exists yet; the counter was
                // checked to be one float32 element.
                let count = unsafe { checked.slice::<f32>(k)[0] };
                if !(0.0..=MAX_COUNT).contains(&count) || count.fract() != 0.0 {
                    return Err(PyValueError::new_err(format!(
                        "optkern: {} is {count}; a step count is a whole number from 0 to {MAX_COUNT}",
                        tensors.name(k)
                    )));
                }
                count as u64 + 1
            }
        };
        match groups
            .iter_mut()
            .find(|(n, c, _)| *n == step && *c == combo)
        {
            Some((_, _, members)) => members.push(entry),
            None => groups.push((step, combo, vec![entry])),
        }
    }
    if groups.len() > 1 && optimizer_clips(&parsed.optimizer) {
        return Err(PyValueError::new_err(
            "optkern: LAMB with max_grad_norm clips by the norm of all the gradients together: every parameter of the optimizer needs the same step count and the same dtypes",
        ));
    }
    Ok(Call {
        optimizer: parsed.optimizer,
        groups,
    })
}

/// Steps every tensor of `calls` with the crate's `step_many`, one call per optimizer call,
/// step number and dtype combination.
///
/// `calls`: a list of `(kind, hyper, entries)`, with `entries` a list of `(label, weights,
/// grad, [state...], copy or None, step)`, the state tensors in the order of
/// [`state_buffers`]; `copy` (the parameter, when `weights` are master weights) receives
/// the new weights rounded to its dtype. `step` is the crate's step number for the entry
/// (an int from 1), or a step counter: a float32 tensor of one element holding the number of
/// steps taken (torch's `state["step"]`), whose successor is the step number and which is
/// set to it once every tensor is stepped. `label` names the parameter in error messages.
/// Every tensor of every call is checked (see `tensors.rs`), with its lengths, dtypes and
/// overlaps with all the others, and every counter read, before anything is written; then
/// the kernels run with the GIL released, on a pool of `threads` threads (1: the calling
/// thread). `grad_scale` multiplies every gradient value as it is read. `seed` turns on
/// stochastic rounding of bf16/f16 weights and copies, with elements numbered from
/// `index_base` in the order of the calls, and within a call by step number and dtype
/// combination (in order of first appearance).
#[pyfunction]
#[pyo3(signature = (calls, threads=1, grad_scale=None, flush_subnormals=false, seed=None, index_base=0))]
fn step(
    py: Python<'_>,
    calls: &Bound<'_, PyList>,
    threads: usize,
    grad_scale: Option<f64>,
    flush_subnormals: bool,
    seed: Option<u64>,
    index_base: u64,
) -> PyResult<()> {
    let mut tensors = Tensors {
        raws: Vec::new(),
        access: Vec::new(),
        names: Vec::new(),
    };
    let mut parsed = Vec::with_capacity(calls.len());
    for call in calls.iter() {
        parsed.push(parse_call(&call, &mut tensors)?);
    }
    let checked = Checked::new(tensors.raws.clone(), &tensors.access, &|i| tensors.name(i))?;
    let parsed = parsed
        .into_iter()
        .map(|p| resolve(p, &checked, &tensors))
        .collect::<PyResult<Vec<Call>>>()?;
    let mut exec = Executor::new()
        .map_err(value_error)?
        .with_threads(if threads > 1 {
            Threads::parallel()
        } else {
            Threads::Sequential
        });
    if let Some(scale) = grad_scale {
        exec = exec.with_grad_scale(scale).map_err(value_error)?;
    }
    if flush_subnormals {
        exec = exec.with_subnormals(Subnormals::Flush);
    }
    let total: usize = parsed
        .iter()
        .flat_map(|c| &c.groups)
        .flat_map(|(_, _, m)| m)
        .map(|e| checked.len(e.weights))
        .sum();
    if seed.is_some() && index_base.checked_add(total as u64).is_none() {
        return Err(PyValueError::new_err(
            "optkern: index_base plus the number of elements overflows",
        ));
    }
    let pool = if threads > 1 {
        Some(pool(threads)?)
    } else {
        None
    };
    py.detach(|| -> Result<(), optkern::Error> {
        let run = || -> Result<(), optkern::Error> {
            let mut base = index_base;
            for call in &parsed {
                for (step, combo, members) in &call.groups {
                    let exec = match seed {
                        Some(seed) => exec.with_stochastic_rounding(Some(StochasticRounding {
                            seed,
                            index_base: base,
                        })),
                        None => exec,
                    };
                    base += members
                        .iter()
                        .map(|e| checked.len(e.weights) as u64)
                        .sum::<u64>();
                    // SAFETY: every index of `checked` belongs to one entry, and each entry to
                    // one group of one call, so each is taken once (the counters are not taken
                    // here); the tensor objects are held by `calls` for the whole call.
                    unsafe { dispatch(&exec, &checked, *combo, members, &call.optimizer, *step)? };
                }
            }
            Ok(())
        };
        match &pool {
            Some(p) => p.install(run),
            None => run(),
        }
    })
    .map_err(value_error)?;
    // Count the step in the counters.
    for call in &parsed {
        for (step, _, members) in &call.groups {
            for k in members.iter().filter_map(|e| e.counter) {
                // SAFETY: the kernels' slices are gone; each counter belongs to one entry and
                // overlaps no other tensor of the call, so this is its only slice.
                unsafe { checked.slice_mut::<f32>(k)[0] = *step as f32 };
            }
        }
    }
    Ok(())
}

fn optimizer_clips(o: &Optimizer) -> bool {
    matches!(o, Optimizer::Lamb(l) if l.max_grad_norm().is_some())
}

/// Steps one combination.
///
/// # Safety
/// As [`Checked::slice_mut`], for every index of `members`.
unsafe fn dispatch(
    exec: &Executor,
    checked: &Checked,
    combo: Combo,
    members: &[Entry],
    optimizer: &Optimizer,
    step: u64,
) -> Result<(), optkern::Error> {
    // SAFETY (each arm): forwarded from this function's contract.
    unsafe {
        match combo {
            (DType::F32, DType::F32, DType::F32, None) => {
                run::<f32, f32, f32, f32>(exec, checked, members, optimizer, step)
            }
            (DType::BF16, DType::BF16, DType::BF16, None) => {
                run::<bf16, bf16, bf16, bf16>(exec, checked, members, optimizer, step)
            }
            (DType::F16, DType::F16, DType::F16, None) => {
                run::<f16, f16, f16, f16>(exec, checked, members, optimizer, step)
            }
            (DType::BF16, DType::F32, DType::BF16, None) => {
                run::<bf16, f32, bf16, bf16>(exec, checked, members, optimizer, step)
            }
            (DType::F16, DType::F32, DType::F16, None) => {
                run::<f16, f32, f16, f16>(exec, checked, members, optimizer, step)
            }
            (DType::F32, DType::F32, DType::BF16, Some(DType::BF16)) => {
                run::<f32, f32, bf16, bf16>(exec, checked, members, optimizer, step)
            }
            (DType::F32, DType::F32, DType::F16, Some(DType::F16)) => {
                run::<f32, f32, f16, f16>(exec, checked, members, optimizer, step)
            }
            _ => unreachable!("optkern: combination not in COMBOS"),
        }
    }
}

/// # Safety
/// As [`Checked::slice_mut`], for every index of `members`.
unsafe fn run<W: Element, T: Element, G: Element, C: Element>(
    exec: &Executor,
    checked: &Checked,
    members: &[Entry],
    optimizer: &Optimizer,
    step: u64,
) -> Result<(), optkern::Error> {
    let mut tensors: Vec<TensorStep<'_, W, T, G, C>> = Vec::with_capacity(members.len());
    for e in members {
        // SAFETY: forwarded from this function's contract; each index is taken once here.
        unsafe {
            let weights = checked.slice_mut::<W>(e.weights);
            let state = e.state.iter().map(|&s| checked.slice_mut::<T>(s)).collect();
            let grad = checked.slice::<G>(e.grad);
            let copy = e.copy.map(|c| checked.slice_mut::<C>(c));
            tensors.push(TensorStep {
                weights,
                state,
                grad,
                model_copy: copy,
            });
        }
    }
    exec.step_many(&mut tensors, optimizer, step)
}

#[pymodule]
fn _optkern(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(step, m)?)?;
    m.add_function(wrap_pyfunction!(state_buffers, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(nadam_mu_product, m)?)?;
    m.add_function(wrap_pyfunction!(asgd_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(backend, m)?)?;
    m.add_class::<reference::Reference>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
