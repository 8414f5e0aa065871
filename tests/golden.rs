//! Reference trajectories from PyTorch, Keras, lion-pytorch and timm (see the README of the
//! golden directory): every case file in `OPTKERN_GOLDEN_DIR` (default `tests/golden`, the
//! crate's own copy) is run step by step on every backend, with each case's
//! hyperparameters mapped onto the crate's configs in general, not case by case.
//!
//! Tolerances, from the golden README: f32 weights (after every step) and state (after the
//! last) agree within `1e-5*|ref| + 1e-6*max|ref|`; bf16 and f16 values are equal or one unit
//! in the last place apart; a scalar state entry (NAdam's `mu_product`) is compared, as f32,
//! with the value the crate computes from the config and the number of steps. An optimizer
//! the crate does not have yet is counted as unsupported; an optimizer name or an option this
//! runner does not understand is a failure.
//! Prints `golden: P passed, F failed, U unsupported` and fails if F > 0.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::cases::{CASES, Mapped};
use common::hyper::Hyper;
use common::{backends, sequential};
use optkern::{Backend, DType, Element, Executor, TensorStep, bf16, f16};
use serde_json::Value;

/// The optimizers the golden READMEs describe (`next/` included) that no case maps yet: their
/// files count as unsupported.
const NOT_YET: [&str; 5] = [
    "adafactor",
    "bnb_adam8bit",
    "bnb_adamw8bit",
    "cautious_adamw",
    "torchao_adamw8bit",
];

/// One case file.
struct Case {
    name: String,
    optimizer: String,
    hyper: serde_json::Map<String, Value>,
    dtype: DType,
    n: usize,
    w0: Vec<u32>,
    grads: Vec<Vec<u32>>,
    w: Vec<Vec<u32>>,
    state: BTreeMap<String, Vec<u32>>,
    /// The scalar state entries (`state_shape` `[]`), as `f32` bits.
    scalars: BTreeMap<String, u32>,
    /// Schedule-free: the weights after the last step as read in eval mode.
    w_eval: Option<Vec<u32>>,
}

fn bits_list(v: &Value, what: &str) -> Result<Vec<u32>, String> {
    v.as_array()
        .ok_or(format!("{what} is not a list"))?
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|b| u32::try_from(b).ok())
                .ok_or(format!("{what}: bad bits {x}"))
        })
        .collect()
}

fn nested_bits(v: &Value, what: &str) -> Result<Vec<Vec<u32>>, String> {
    v.as_array()
        .ok_or(format!("{what} is not a list"))?
        .iter()
        .map(|x| bits_list(x, what))
        .collect()
}

impl Case {
    fn load(path: &Path) -> Result<Case, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))?;
        let field = |k: &str| json.get(k).ok_or(format!("missing field {k:?}"));
        let dtype = match field("dtype")?.as_str() {
            Some("f32") => DType::F32,
            Some("bf16") => DType::BF16,
            Some("f16") => DType::F16,
            other => return Err(format!("unknown dtype {other:?}")),
        };
        let mut state: BTreeMap<String, Vec<u32>> = field("state")?
            .as_object()
            .ok_or("state is not an object")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), bits_list(v, k)?)))
            .collect::<Result<_, String>>()?;
        // Entries of shape `[]` are scalars; they must be f32 (the README's only scalar type).
        let mut scalars = BTreeMap::new();
        if let Some(shapes) = json.get("state_shape") {
            let shapes = shapes.as_object().ok_or("state_shape is not an object")?;
            for (key, shape) in shapes {
                let dims = shape
                    .as_array()
                    .ok_or(format!("state_shape {key:?} is not a list"))?;
                if !dims.is_empty() {
                    continue;
                }
                let dtype = json
                    .get("state_dtype")
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or(field("dtype")?.as_str().unwrap_or_default());
                if dtype != "f32" {
                    return Err(format!("scalar state {key:?} of type {dtype}"));
                }
                match state.remove(key).as_deref() {
                    Some(&[bits]) => scalars.insert(key.clone(), bits),
                    _ => return Err(format!("scalar state {key:?} is not one value")),
                };
            }
        }
        let case = Case {
            name: field("name")?.as_str().unwrap_or_default().to_owned(),
            optimizer: field("optimizer")?
                .as_str()
                .ok_or("optimizer is not a string")?
                .to_owned(),
            hyper: field("hyper")?
                .as_object()
                .ok_or("hyper is not an object")?
                .clone(),
            dtype,
            n: field("n")?.as_u64().ok_or("n is not a number")? as usize,
            w0: bits_list(field("w0")?, "w0")?,
            grads: nested_bits(field("grads")?, "grads")?,
            w: nested_bits(field("w")?, "w")?,
            state,
            scalars,
            w_eval: json
                .get("w_eval")
                .map(|v| bits_list(v, "w_eval"))
                .transpose()?,
        };
        let steps = field("steps")?.as_u64().ok_or("steps is not a number")? as usize;
        if case.w0.len() != case.n
            || case.grads.len() != steps
            || case.w.len() != steps
            || case.grads.iter().chain(&case.w).any(|v| v.len() != case.n)
            || case.state.values().any(|v| v.len() != case.n)
            || case.w_eval.as_ref().is_some_and(|v| v.len() != case.n)
        {
            return Err("inconsistent lengths".into());
        }
        Ok(case)
    }
}

/// A mapped optimizer: its config, and its state buffers (zeros at first, as the libraries
/// start them, named as the library names them).
struct Runner<E> {
    mapped: Mapped,
    state: Vec<Vec<E>>,
}

impl<E: Element> Runner<E> {
    /// One step of the weights, through `Executor::step_many` (the kernels each optimizer's
    /// single-tensor call runs too).
    fn step(
        &mut self,
        exec: &Executor,
        t: u64,
        w: &mut [E],
        g: &[E],
    ) -> Result<(), optkern::Error> {
        let state = self.state.iter_mut().map(|s| &mut s[..]).collect();
        exec.step_many(&mut [TensorStep::new(w, state, g)], &self.mapped.config, t)
    }

    /// The state as the library stores it.
    fn library_state(&self) -> Vec<(&'static str, Vec<E>)> {
        let sign = if self.mapped.negated { -1.0 } else { 1.0 };
        assert_eq!(self.mapped.state.len(), self.state.len(), "state names");
        let named = self.mapped.state.iter().zip(&self.state);
        named
            .map(|(n, v)| {
                (
                    *n,
                    v.iter().map(|x| E::from_f32(sign * x.to_f32())).collect(),
                )
            })
            .collect()
    }
}

/// Options of PyTorch's optimizers that choose an implementation, not the math.
const TORCH_IMPLEMENTATION: [&str; 4] = ["foreach", "fused", "capturable", "differentiable"];
/// Options of Keras' optimizers the crate does not model; accepted only at their no-op values.
const KERAS_UNMODELLED: [(&str, Value); 9] = [
    ("clipnorm", Value::Null),
    ("clipvalue", Value::Null),
    ("global_clipnorm", Value::Null),
    ("use_ema", Value::Bool(false)),
    ("ema_momentum", Value::Null),
    ("ema_overwrite_frequency", Value::Null),
    ("loss_scale_factor", Value::Null),
    ("gradient_accumulation_steps", Value::Null),
    ("name", Value::Null),
];

/// Maps a case onto the crate's configs, through the golden mapping of the optimizer's case
/// (`tests/common/cases/`) that claims its name. `Ok(None)`: an optimizer the crate does not
/// have yet.
fn runner<E: Element>(case: &Case) -> Result<Option<Runner<E>>, String> {
    let mut h = Hyper::new(&case.hyper);
    let name = case.optimizer.as_str();
    if name.starts_with("keras_") {
        h.only_defaults(&KERAS_UNMODELLED)?;
    } else {
        h.ignore(&TORCH_IMPLEMENTATION);
    }
    let Some(golden) = CASES
        .iter()
        .filter_map(|c| c.golden)
        .find(|g| g.names.contains(&name))
    else {
        if NOT_YET.contains(&name) {
            return Ok(None);
        }
        return Err(format!(
            "optimizer {name:?} is not one the golden README describes"
        ));
    };
    let mapped = (golden.map)(name, &mut h)?;
    h.finish()?;
    let buffers = mapped.config.state_buffers().len();
    assert_eq!(
        mapped.state.len(),
        buffers,
        "{name}: the mapping names {:?} for {buffers} state buffers",
        mapped.state
    );
    Ok(Some(Runner {
        state: vec![vec![E::ZERO; case.n]; buffers],
        mapped,
    }))
}

/// Finds the library's state buffer for `name`: exact, or (Keras) `<variable>_<name>`.
fn library_state<'a>(case: &'a Case, name: &str) -> Result<&'a [u32], String> {
    case.state
        .iter()
        .find(|(k, _)| *k == name || k.ends_with(&format!("_{name}")))
        .map(|(_, v)| v.as_slice())
        .ok_or(format!(
            "the case has no state buffer {name:?} (it has {:?})",
            case.state.keys()
        ))
}

fn to_f64<E: Element>(bits: &[u32], from_bits: fn(u32) -> E) -> Vec<f64> {
    bits.iter()
        .map(|b| f64::from(from_bits(*b).to_f32()))
        .collect()
}

/// Compares our values with the library's under the README's tolerance for the dtype.
fn compare<E: Element>(
    what: &str,
    ours: &[E],
    theirs: &[u32],
    from_bits: fn(u32) -> E,
) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!(
            "{what}: {} values, the reference {}",
            ours.len(),
            theirs.len()
        ));
    }
    let mine: Vec<f64> = ours.iter().map(|x| f64::from(x.to_f32())).collect();
    let reference = to_f64(theirs, from_bits);
    match E::DTYPE {
        DType::F32 => {
            let max = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (i, (a, b)) in mine.iter().zip(&reference).enumerate() {
                let tol = 1e-5 * b.abs() + 1e-6 * max;
                // Written so that a NaN on either side fails.
                let within = (a - b).abs() <= tol;
                if !within {
                    return Err(format!(
                        "{what}[{i}]: ours {a:e}, reference {b:e}, tolerance {tol:e}"
                    ));
                }
            }
        }
        DType::BF16 | DType::F16 => {
            for (i, (x, b)) in ours.iter().zip(theirs).enumerate() {
                let (a, b) = (
                    ulp_index(x.to_f32(), E::DTYPE),
                    ulp_index(from_bits(*b).to_f32(), E::DTYPE),
                );
                if (a - b).abs() > 1 {
                    return Err(format!(
                        "{what}[{i}]: {} units in the last place apart",
                        (a - b).abs()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The position of a value on the ordered line of the type's values (so that neighbours differ
/// by one, across zero too).
fn ulp_index(x: f32, dtype: DType) -> i64 {
    let bits = match dtype {
        DType::BF16 => i64::from(bf16::from_f32(x).to_bits()),
        DType::F16 => i64::from(f16::from_f32(x).to_bits()),
        DType::F32 => i64::from(x.to_bits()),
    };
    let sign_bit = if dtype == DType::F32 {
        1 << 31
    } else {
        1 << 15
    };
    if bits & sign_bit != 0 {
        -(bits & (sign_bit - 1))
    } else {
        bits
    }
}

/// The criterion of the cases that round after every tensor op (the golden README: PyTorch's
/// single-tensor path on bf16 tensors, for NAdam and RAdam), where the crate computes a step
/// in `f32` and rounds once.
///
/// The bound, derived from the op sequences the README lists, for cases without weight decay
/// (the weights then enter no step but through their own update): every op of the library
/// rounds to bf16, a relative error of at most `2^-9`. The update `u` of a step passes through
/// at most `R = 8` such roundings on the library's side (RAdam's rectified chain: `m/bc1`,
/// `*lr`, the root, `+eps`, the reciprocal, `*sqrt(bc2)`, `*a`, `*r`; NAdam's has fewer),
/// and the second moment the step divides by differs from the crate's by at most one more
/// unit per step taken (`rb(rb(beta2*v) + ...)` against the crate's single rounding, carried
/// on by `beta2 < 1`), half of it in the root: `(R + t) * 2^-9 * |u|` at step `t`. The
/// weight itself is rounded at most twice by the library (NAdam's two `addcdiv`) and once by
/// the crate: 1.5 units in the last place of the larger of the two results. Errors carry from
/// step to step (the next weight is this one minus its update), so the bound of step `t` is
/// the sum over steps 1 to `t`, with `|u|` the crate's own update of the element. The state
/// after the last step: the first moment is the same lerp on both sides (one unit apart at
/// most, as for every bf16 case), the second moment at most `t` units apart.
struct PerOp {
    /// The accumulated bound of each element.
    bound: Vec<f64>,
    /// Steps taken.
    t: u32,
}

/// The roundings of a step's update on the library's side in [`PerOp`].
const PER_OP_ROUNDINGS: f64 = 8.0;

impl PerOp {
    fn of(case: &Case) -> Result<Option<PerOp>, String> {
        if case.dtype != DType::BF16 || !matches!(case.optimizer.as_str(), "nadam" | "radam") {
            return Ok(None);
        }
        if case.hyper.get("weight_decay").and_then(Value::as_f64) != Some(0.0) {
            return Err("a per-op bf16 case with weight decay: no bound derived for it".into());
        }
        Ok(Some(PerOp {
            bound: vec![0.0; case.n],
            t: 0,
        }))
    }

    /// One step's weights, `before` the step and after it (`ours`), against the reference's.
    fn compare<E: Element>(
        &mut self,
        what: &str,
        before: &[f64],
        ours: &[E],
        theirs: &[u32],
        from_bits: fn(u32) -> E,
    ) -> Result<(), String> {
        self.t += 1;
        let reference = to_f64(theirs, from_bits);
        let relative = (PER_OP_ROUNDINGS + f64::from(self.t)) * 2f64.powi(-9);
        for (i, ((x, b), r)) in ours.iter().zip(before).zip(&reference).enumerate() {
            let a = f64::from(x.to_f32());
            let ulp = bf16_ulp(a.abs().max(r.abs()));
            self.bound[i] += 1.5 * ulp + relative * (a - b).abs();
            // Written so that a NaN on either side fails.
            let within = (a - r).abs() <= self.bound[i];
            if !within {
                return Err(format!(
                    "{what}[{i}]: ours {a:e}, reference {r:e}, per-op bound {:e}",
                    self.bound[i]
                ));
            }
        }
        Ok(())
    }

    /// The state after the last step: `exp_avg` one unit apart at most, `exp_avg_sq` `t`.
    fn compare_state<E: Element>(
        &self,
        what: &str,
        ours: &[E],
        theirs: &[u32],
        from_bits: fn(u32) -> E,
    ) -> Result<(), String> {
        if ours.len() != theirs.len() {
            return Err(format!(
                "{what}: {} values, the reference {}",
                ours.len(),
                theirs.len()
            ));
        }
        let units = if what.ends_with("exp_avg_sq") {
            i64::from(self.t)
        } else {
            1
        };
        for (i, (x, b)) in ours.iter().zip(theirs).enumerate() {
            let (a, b) = (
                ulp_index(x.to_f32(), E::DTYPE),
                ulp_index(from_bits(*b).to_f32(), E::DTYPE),
            );
            if (a - b).abs() > units {
                return Err(format!(
                    "{what}[{i}]: {} units in the last place apart (at most {units})",
                    (a - b).abs()
                ));
            }
        }
        Ok(())
    }
}

/// The spacing of bf16 values at magnitude `x` (that of the smallest normal below it).
fn bf16_ulp(x: f64) -> f64 {
    let smallest_normal = 2f64.powi(-126);
    let exponent = x.max(smallest_normal).log2().floor();
    2f64.powf(exponent - 7.0)
}

fn run_typed<E: Element>(
    case: &Case,
    from_bits: fn(u32) -> E,
    backend: Backend,
) -> Result<bool, String> {
    let Some(mut runner) = runner::<E>(case)? else {
        return Ok(false);
    };
    let exec = sequential(backend);
    let mut w: Vec<E> = case.w0.iter().map(|b| from_bits(*b)).collect();
    let mut per_op = PerOp::of(case)?;
    for (k, (g, w_ref)) in case.grads.iter().zip(&case.w).enumerate() {
        let g: Vec<E> = g.iter().map(|b| from_bits(*b)).collect();
        let before: Vec<f64> = w.iter().map(|x| f64::from(x.to_f32())).collect();
        runner
            .step(&exec, k as u64 + 1, &mut w, &g)
            .map_err(|e| format!("step {}: the crate refused the call: {e}", k + 1))?;
        let what = format!("w after step {}", k + 1);
        match &mut per_op {
            Some(per_op) => per_op.compare(&what, &before, &w, w_ref, from_bits)?,
            None => compare(&what, &w, w_ref, from_bits)?,
        }
    }
    let ours = runner.library_state();
    if ours.len() != case.state.len() {
        return Err(format!(
            "the case has {} state buffers, the crate {}",
            case.state.len(),
            ours.len()
        ));
    }
    for (name, values) in ours {
        let what = format!("state {name}");
        let theirs = library_state(case, name)?;
        match &per_op {
            Some(per_op) => per_op.compare_state(&what, &values, theirs, from_bits)?,
            None => compare(&what, &values, theirs, from_bits)?,
        }
    }
    // Scalars: each one the mapping computes, compared under the f32 criterion.
    for (name, bits) in &case.scalars {
        let Some((_, scalar)) = runner.mapped.scalars.iter().find(|(n, _)| n == name) else {
            return Err(format!(
                "the crate does not model the scalar state {name:?}"
            ));
        };
        let ours = scalar(&runner.mapped.config, case.grads.len() as u64) as f32;
        compare(&format!("state {name}"), &[ours], &[*bits], f32::from_bits)?;
    }
    // Schedule-free: the evaluation weights, from the weights and z (the first buffer).
    if let Some(w_eval) = &case.w_eval {
        let Some(beta) = runner.mapped.config.schedulefree_beta() else {
            return Err("w_eval in a case of an optimizer without eval weights".into());
        };
        exec.schedulefree_eval(&mut w, &runner.state[0], beta)
            .map_err(|e| format!("schedulefree_eval refused: {e}"))?;
        compare("w_eval", &w, w_eval, from_bits)?;
    }
    Ok(true)
}

enum Outcome {
    Passed,
    Failed(String),
    Unsupported,
}

fn run_case(case: &Case) -> Outcome {
    let mut supported = true;
    for backend in backends() {
        let result = match case.dtype {
            DType::F32 => run_typed::<f32>(case, f32::from_bits, backend),
            DType::BF16 => run_typed::<bf16>(case, |b| bf16::from_bits(b as u16), backend),
            DType::F16 => run_typed::<f16>(case, |b| f16::from_bits(b as u16), backend),
        };
        match result {
            Ok(true) => {}
            Ok(false) => supported = false,
            Err(e) => return Outcome::Failed(format!("{backend}: {e}")),
        }
    }
    if supported {
        Outcome::Passed
    } else {
        Outcome::Unsupported
    }
}

fn golden_dir() -> PathBuf {
    match std::env::var_os("OPTKERN_GOLDEN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
    }
}

#[test]
fn golden_trajectories() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "golden directory {} cannot be read ({e}); set OPTKERN_GOLDEN_DIR",
                dir.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json cases in {}", dir.display());

    let (mut passed, mut failed, mut unsupported) =
        (0, Vec::new(), BTreeMap::<String, usize>::new());
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = match Case::load(path) {
            Ok(case) => {
                assert!(
                    case.name.is_empty() || file.starts_with(&case.name),
                    "{file}: name {}",
                    case.name
                );
                (run_case(&case), case.optimizer)
            }
            Err(e) => (Outcome::Failed(e), "?".into()),
        };
        match outcome {
            (Outcome::Passed, _) => passed += 1,
            (Outcome::Unsupported, optimizer) => *unsupported.entry(optimizer).or_default() += 1,
            (Outcome::Failed(why), _) => failed.push(format!("{file}: {why}")),
        }
    }
    for f in &failed {
        eprintln!("FAILED {f}");
    }
    let u: usize = unsupported.values().sum();
    println!(
        "golden: {passed} passed, {} failed, {u} unsupported",
        failed.len()
    );
    eprintln!(
        "golden: {passed} passed, {} failed, {u} unsupported {unsupported:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "{} golden cases failed", failed.len());
    // A folder of only unsupported cases would otherwise pass having checked nothing.
    assert!(
        passed > 0,
        "no golden case ran: {u} unsupported {unsupported:?}"
    );
}

/// The runner fails loudly on names and options it does not understand.
#[test]
fn unknown_optimizers_and_options_fail() {
    let base = |optimizer: &str, hyper: Value| Case {
        name: "synthetic".into(),
        optimizer: optimizer.into(),
        hyper: hyper.as_object().unwrap().clone(),
        dtype: DType::F32,
        n: 1,
        w0: vec![0],
        grads: vec![vec![0]],
        w: vec![vec![0]],
        state: BTreeMap::new(),
        scalars: BTreeMap::new(),
        w_eval: None,
    };
    let case = base(
        "sgd",
        serde_json::json!({"lr": 0.1, "momentum": 0.9, "clipnorm": 1.0}),
    );
    assert!(matches!(run_case(&case), Outcome::Failed(e) if e.contains("clipnorm")));
    let case = base("yogi", serde_json::json!({"lr": 0.1}));
    assert!(matches!(run_case(&case), Outcome::Failed(e) if e.contains("yogi")));
    let case = base("sgd", serde_json::json!({"lr": 0.1, "momentum": 1.5}));
    assert!(matches!(run_case(&case), Outcome::Failed(e) if e.contains("momentum")));
}

/// The runner's checks can fail: a state array shorter than the weights is refused at load,
/// and a comparison of arrays of different lengths fails instead of comparing a prefix.
#[test]
fn short_arrays_fail() {
    let dir = golden_dir();
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .find(|p| Case::load(p).is_ok_and(|c| !c.state.is_empty()))
        .expect("a golden case with state");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let state = json["state"].as_object_mut().unwrap();
    let first = state.keys().next().unwrap().clone();
    state[&first].as_array_mut().unwrap().pop();
    let tmp = std::env::temp_dir().join(format!("optkern-short-{}.json", std::process::id()));
    std::fs::write(&tmp, json.to_string()).unwrap();
    let loaded = Case::load(&tmp);
    std::fs::remove_file(&tmp).unwrap();
    assert!(matches!(loaded, Err(e) if e.contains("inconsistent lengths")));
    assert!(compare("w", &[1.0f32, 2.0], &[1.0f32.to_bits()], f32::from_bits).is_err());
    assert!(compare("w", &[1.0f32], &[1.0f32.to_bits()], f32::from_bits).is_ok());
}
