//! Reference trajectories from PyTorch, Keras, lion-pytorch and timm (see the README of the
//! golden directory): every case file in `OPTKERN_GOLDEN_DIR` (default `../shared/golden`,
//! relative to the crate) is run step by step on every backend, with each case's
//! hyperparameters mapped onto the crate's configs in general, not case by case.
//!
//! Tolerances, from the golden README: f32 weights (after every step) and state (after the
//! last) agree within `1e-5*|ref| + 1e-6*max|ref|`; bf16 and f16 values are equal or one unit
//! in the last place apart. An optimizer the crate does not have yet is counted as
//! unsupported; an optimizer name or an option this runner does not understand is a failure.
//! Prints `golden: P passed, F failed, U unsupported` and fails if F > 0.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{backends, sequential};
use optkern::{Backend, DType, Element, Executor, Momentum, Sgd, WeightDecay, bf16, f16};
use serde_json::Value;

/// The optimizers the golden README describes.
const KNOWN: [&str; 10] = [
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "adagrad",
    "lion",
    "lamb",
    "keras_sgd",
    "keras_rmsprop",
    "keras_adam",
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
        let state = field("state")?
            .as_object()
            .ok_or("state is not an object")?
            .iter()
            .map(|(k, v)| Ok((k.clone(), bits_list(v, k)?)))
            .collect::<Result<_, String>>()?;
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
        };
        let steps = field("steps")?.as_u64().ok_or("steps is not a number")? as usize;
        if case.w0.len() != case.n
            || case.grads.len() != steps
            || case.w.len() != steps
            || case.grads.iter().chain(&case.w).any(|v| v.len() != case.n)
        {
            return Err("inconsistent lengths".into());
        }
        Ok(case)
    }
}

/// Reads hyperparameters by name, with the library's defaults, and refuses names it was not
/// asked for.
struct Hyper<'a> {
    map: &'a serde_json::Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Hyper<'a> {
    fn new(map: &'a serde_json::Map<String, Value>) -> Self {
        Hyper {
            map,
            used: Vec::new(),
        }
    }

    fn f32(&mut self, key: &'static str, default: Option<f64>) -> Result<f32, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => default
                .map(|d| d as f32)
                .ok_or(format!("required hyperparameter {key:?} missing")),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or(format!("{key} = {v} is not a number")),
        }
    }

    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or(format!("{key} = {v} is not a boolean")),
        }
    }

    /// Fails on any hyperparameter that was not read: an option the runner does not know.
    fn finish(self) -> Result<(), String> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "option {k:?} = {} is not understood by this runner",
                self.map[k]
            )),
            None => Ok(()),
        }
    }
}

/// A mapped optimizer: steps the weights and keeps its own state, and reports that state as
/// the library names and stores it.
trait Runner<E: Element> {
    fn step(&mut self, exec: &Executor, step: u64, w: &mut [E], g: &[E]);
    fn state(&self) -> Vec<(&'static str, Vec<E>)>;
}

struct PlainSgd(Sgd);

impl<E: Element> Runner<E> for PlainSgd {
    fn step(&mut self, exec: &Executor, _step: u64, w: &mut [E], g: &[E]) {
        exec.sgd_step(&self.0, w, g).unwrap();
    }
    fn state(&self) -> Vec<(&'static str, Vec<E>)> {
        Vec::new()
    }
}

/// Momentum with its velocity; `negated` when the library stores `-v` (Keras).
struct WithVelocity<E> {
    config: Momentum,
    v: Vec<E>,
    name: &'static str,
    negated: bool,
}

impl<E: Element> Runner<E> for WithVelocity<E> {
    fn step(&mut self, exec: &Executor, step: u64, w: &mut [E], g: &[E]) {
        exec.momentum_step(&self.config, w, &mut self.v, g, step)
            .unwrap();
    }
    fn state(&self) -> Vec<(&'static str, Vec<E>)> {
        let sign = if self.negated { -1.0 } else { 1.0 };
        vec![(
            self.name,
            self.v
                .iter()
                .map(|x| E::from_f32(sign * x.to_f32()))
                .collect(),
        )]
    }
}

/// Maps a case onto the crate's configs. `Ok(None)`: an optimizer the crate does not have yet.
fn runner<E: Element>(case: &Case) -> Result<Option<Box<dyn Runner<E>>>, String> {
    let mut h = Hyper::new(&case.hyper);
    let n = case.n;
    let runner: Box<dyn Runner<E>> = match case.optimizer.as_str() {
        "sgd" => {
            // torch.optim.SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
            // maximize=False): L2 weight decay, heavy ball, buffer = gradient on step 1.
            let lr = h.f32("lr", Some(1e-3))?;
            let momentum = h.f32("momentum", Some(0.0))?;
            let dampening = h.f32("dampening", Some(0.0))?;
            let wd = h.f32("weight_decay", Some(0.0))?;
            let nesterov = h.bool("nesterov", false)?;
            let maximize = h.bool("maximize", false)?;
            let weight_decay = if wd != 0.0 {
                WeightDecay::L2(wd)
            } else {
                WeightDecay::None
            };
            if momentum == 0.0 {
                // PyTorch keeps no buffer then, and ignores dampening.
                if nesterov {
                    return Err("PyTorch rejects nesterov without momentum".into());
                }
                let config = Sgd::new(lr)
                    .and_then(|s| s.with_weight_decay(weight_decay))
                    .map_err(|e| e.to_string())?
                    .with_maximize(maximize);
                Box::new(PlainSgd(config))
            } else {
                let config = Momentum::heavy_ball(lr, momentum)
                    .dampening(dampening)
                    .nesterov(nesterov)
                    .weight_decay(weight_decay)
                    .maximize(maximize)
                    .build()
                    .map_err(|e| e.to_string())?;
                Box::new(WithVelocity {
                    config,
                    v: vec![E::ZERO; n],
                    name: "momentum_buffer",
                    negated: false,
                })
            }
        }
        "keras_sgd" => {
            // keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False,
            // weight_decay=None): lr inside the (negated) velocity, decoupled weight decay.
            let lr = h.f32("learning_rate", Some(0.01))?;
            let momentum = h.f32("momentum", Some(0.0))?;
            let nesterov = h.bool("nesterov", false)?;
            let wd = h.f32("weight_decay", Some(0.0))?;
            let weight_decay = if wd != 0.0 {
                WeightDecay::Decoupled(wd)
            } else {
                WeightDecay::None
            };
            if momentum == 0.0 {
                // Keras keeps no velocity then, and its Nesterov term vanishes.
                let config = Sgd::new(lr)
                    .and_then(|s| s.with_weight_decay(weight_decay))
                    .map_err(|e| e.to_string())?;
                Box::new(PlainSgd(config))
            } else {
                let config = Momentum::lr_in_velocity(lr, momentum)
                    .nesterov(nesterov)
                    .weight_decay(weight_decay)
                    .build()
                    .map_err(|e| e.to_string())?;
                let name = "momentum";
                Box::new(WithVelocity {
                    config,
                    v: vec![E::ZERO; n],
                    name,
                    negated: true,
                })
            }
        }
        name if KNOWN.contains(&name) => return Ok(None),
        name => {
            return Err(format!(
                "optimizer {name:?} is not one the golden README describes"
            ));
        }
    };
    h.finish()?;
    Ok(Some(runner))
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
    for (k, (g, w_ref)) in case.grads.iter().zip(&case.w).enumerate() {
        let g: Vec<E> = g.iter().map(|b| from_bits(*b)).collect();
        runner.step(&exec, k as u64 + 1, &mut w, &g);
        compare(&format!("w after step {}", k + 1), &w, w_ref, from_bits)?;
    }
    let ours = runner.state();
    if ours.len() != case.state.len() {
        return Err(format!(
            "the case has {} state buffers, the crate {}",
            case.state.len(),
            ours.len()
        ));
    }
    for (name, values) in ours {
        compare(
            &format!("state {name}"),
            &values,
            library_state(case, name)?,
            from_bits,
        )?;
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
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/golden"),
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
