//! Reference trajectories from PyTorch, Keras, lion-pytorch and timm (see the README of the
//! golden directory): every case file in `OPTKERN_GOLDEN_DIR` (default `tests/golden`, the
//! crate's own copy) is run step by step on every backend, with each case's
//! hyperparameters mapped onto the crate's configs in general, not case by case.
//!
//! Tolerances, from the golden README: f32 weights (after every step) and state (after the
//! last) agree within `1e-5*|ref| + 1e-6*max|ref|`; bf16 and f16 values are equal or one unit
//! in the last place apart. An optimizer the crate does not have yet is counted as
//! unsupported; an optimizer name or an option this runner does not understand is a failure.
//! Prints `golden: P passed, F failed, U unsupported` and fails if F > 0.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{backends, sequential};
use optkern::{
    Adagrad, Adam, Adamax, Backend, DType, Element, EpsilonPlacement, Executor, Lamb, Lion,
    Momentum, MomentumForm, Rmsprop, Sgd, WeightDecay, bf16, f16,
};
use serde_json::Value;

/// The optimizers the golden README describes that the crate has.
const KNOWN: [&str; 11] = [
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
    "adamax",
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

    /// A number, kept in double precision as the libraries keep it.
    fn num(&mut self, key: &'static str, default: Option<f64>) -> Result<f64, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => {
                default.ok_or(format!("required hyperparameter {key:?} missing"))
            }
            Some(v) => v.as_f64().ok_or(format!("{key} = {v} is not a number")),
        }
    }

    fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or(format!("{key} = {v} is not a boolean")),
        }
    }

    fn pair(&mut self, key: &'static str, default: (f64, f64)) -> Result<(f64, f64), String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_number) => {
                Ok((a[0].as_f64().unwrap(), a[1].as_f64().unwrap()))
            }
            Some(v) => Err(format!("{key} = {v} is not a pair of numbers")),
        }
    }

    /// Options that do not change the math (they choose an implementation): any value.
    fn ignore(&mut self, keys: &[&'static str]) {
        self.used.extend_from_slice(keys);
    }

    /// Options the crate does not model: accepted only at their no-op values.
    fn only_defaults(&mut self, options: &[(&'static str, Value)]) -> Result<(), String> {
        for (key, default) in options {
            self.used.push(key);
            match self.map.get(*key) {
                Some(v) if v != default && !(v.is_null() && default.is_null()) => {
                    return Err(format!("option {key:?} = {v} is not modelled by the crate"));
                }
                _ => {}
            }
        }
        Ok(())
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

/// A mapped optimizer: its state buffers (zeros at first, as the libraries start them, named
/// as the library names them), and the call that steps the weights with them.
struct Runner<E> {
    names: Vec<&'static str>,
    state: Vec<Vec<E>>,
    /// Keras keeps the negative of the SGD velocity the crate keeps.
    negated: bool,
    #[allow(clippy::type_complexity)]
    step: Box<dyn Fn(&Executor, u64, &mut [E], &mut [Vec<E>], &[E]) -> Result<(), optkern::Error>>,
}

impl<E: Element> Runner<E> {
    fn new(
        n: usize,
        names: &[&'static str],
        step: impl Fn(&Executor, u64, &mut [E], &mut [Vec<E>], &[E]) -> Result<(), optkern::Error>
        + 'static,
    ) -> Self {
        Runner {
            names: names.to_vec(),
            state: vec![vec![E::ZERO; n]; names.len()],
            negated: false,
            step: Box::new(step),
        }
    }

    /// The state as the library stores it.
    fn library_state(&self) -> Vec<(&'static str, Vec<E>)> {
        let sign = if self.negated { -1.0 } else { 1.0 };
        let named = self.names.iter().zip(&self.state);
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

/// `weight_decay` as the crate's [`WeightDecay`]: none when 0.
fn decay(wd: f64, decoupled: bool) -> WeightDecay {
    match (wd, decoupled) {
        (0.0, _) => WeightDecay::None,
        (wd, true) => WeightDecay::Decoupled(wd),
        (wd, false) => WeightDecay::L2(wd),
    }
}

fn built<T>(result: Result<T, optkern::Error>) -> Result<T, String> {
    result.map_err(|e| format!("the crate refuses the configuration: {e}"))
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

/// Maps a case onto the crate's configs. `Ok(None)`: an optimizer the crate does not have yet.
fn runner<E: Element>(case: &Case) -> Result<Option<Runner<E>>, String> {
    let mut h = Hyper::new(&case.hyper);
    let n = case.n;
    let name = case.optimizer.as_str();
    if name.starts_with("keras_") {
        h.only_defaults(&KERAS_UNMODELLED)?;
    } else {
        h.ignore(&TORCH_IMPLEMENTATION);
    }
    let runner = match name {
        "sgd" => {
            // torch.optim.SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=False,
            // maximize=False): L2 weight decay, heavy ball, buffer = gradient on step 1.
            let lr = h.num("lr", Some(1e-3))?;
            let momentum = h.num("momentum", Some(0.0))?;
            let dampening = h.num("dampening", Some(0.0))?;
            let weight_decay = decay(h.num("weight_decay", Some(0.0))?, false);
            let nesterov = h.bool("nesterov", false)?;
            let maximize = h.bool("maximize", false)?;
            if momentum == 0.0 {
                // PyTorch keeps no buffer then, and ignores dampening.
                if nesterov {
                    return Err("PyTorch rejects nesterov without momentum".into());
                }
                let config = built(
                    Sgd::builder(lr)
                        .weight_decay(weight_decay)
                        .maximize(maximize)
                        .build(),
                )?;
                Runner::new(n, &[], move |x, t, w, _, g| x.sgd_step(w, g, &config, t))
            } else {
                let config = built(
                    Momentum::heavy_ball(lr, momentum)
                        .dampening(dampening)
                        .nesterov(nesterov)
                        .weight_decay(weight_decay)
                        .maximize(maximize)
                        .build(),
                )?;
                Runner::new(n, &["momentum_buffer"], move |x, t, w, s, g| {
                    x.momentum_step(w, &mut s[0], g, &config, t)
                })
            }
        }
        "keras_sgd" => {
            // keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False,
            // weight_decay=None): lr inside the (negated) velocity, decoupled weight decay.
            let lr = h.num("learning_rate", Some(0.01))?;
            let momentum = h.num("momentum", Some(0.0))?;
            let nesterov = h.bool("nesterov", false)?;
            let weight_decay = decay(h.num("weight_decay", Some(0.0))?, true);
            if momentum == 0.0 {
                // Keras keeps no velocity then, and its Nesterov term vanishes.
                let config = built(Sgd::builder(lr).weight_decay(weight_decay).build())?;
                Runner::new(n, &[], move |x, t, w, _, g| x.sgd_step(w, g, &config, t))
            } else {
                let config = built(
                    Momentum::lr_in_velocity(lr, momentum)
                        .nesterov(nesterov)
                        .weight_decay(weight_decay)
                        .build(),
                )?;
                let mut r = Runner::new(n, &["momentum"], move |x, t, w, s, g| {
                    x.momentum_step(w, &mut s[0], g, &config, t)
                });
                r.negated = true;
                r
            }
        }
        "adamax" => {
            // torch.optim.Adamax(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
            // maximize=False): L2 weight decay, eps inside the max.
            let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
            let config = built(
                Adamax::builder(h.num("lr", Some(2e-3))?)
                    .betas(b1, b2)
                    .eps(h.num("eps", Some(1e-8))?)
                    .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
                    .maximize(h.bool("maximize", false)?)
                    .build(),
            )?;
            Runner::new(n, &["exp_avg", "exp_inf"], move |x, t, w, s, g| match s {
                [m, u] => x.adamax_step(w, m, u, g, &config, t),
                _ => unreachable!(),
            })
        }
        "adam" | "adamw" | "keras_adam" => {
            // torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
            // amsgrad=False, maximize=False, decoupled_weight_decay=False); AdamW is the same
            // with decoupled decay (default 0.01). keras.optimizers.Adam(learning_rate=1e-3,
            // beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=None):
            // epsilon hat, decoupled decay.
            let keras = name == "keras_adam";
            let config = if keras {
                let lr = h.num("learning_rate", Some(1e-3))?;
                let (b1, b2) = (h.num("beta_1", Some(0.9))?, h.num("beta_2", Some(0.999))?);
                let eps = h.num("epsilon", Some(1e-7))?;
                let amsgrad = h.bool("amsgrad", false)?;
                let weight_decay = decay(h.num("weight_decay", Some(0.0))?, true);
                Adam::builder(lr)
                    .betas(b1, b2)
                    .eps(eps)
                    .amsgrad(amsgrad)
                    .weight_decay(weight_decay)
                    .epsilon_placement(EpsilonPlacement::Hat)
            } else {
                let adamw = name == "adamw";
                let lr = h.num("lr", Some(1e-3))?;
                let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
                let eps = h.num("eps", Some(1e-8))?;
                let wd = h.num("weight_decay", Some(if adamw { 1e-2 } else { 0.0 }))?;
                let decoupled = h.bool("decoupled_weight_decay", adamw)?;
                let amsgrad = h.bool("amsgrad", false)?;
                let maximize = h.bool("maximize", false)?;
                Adam::builder(lr)
                    .betas(b1, b2)
                    .eps(eps)
                    .weight_decay(decay(wd, decoupled))
                    .amsgrad(amsgrad)
                    .maximize(maximize)
            };
            let config = built(config.build())?;
            let names: &[&str] = match (keras, config.amsgrad()) {
                (false, false) => &["exp_avg", "exp_avg_sq"],
                (false, true) => &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                (true, false) => &["momentum", "velocity"],
                (true, true) => &["momentum", "velocity", "velocity_hat"],
            };
            Runner::new(n, names, move |x, t, w, s, g| match s {
                [m, v] => x.adam_step(w, m, v, g, &config, t),
                [m, v, v_max] => x.amsgrad_step(w, m, v, v_max, g, &config, t),
                _ => unreachable!(),
            })
        }
        "rmsprop" | "keras_rmsprop" => {
            // torch.optim.RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
            // centered=False, maximize=False); keras.optimizers.RMSprop(learning_rate=1e-3,
            // rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, weight_decay=None): eps
            // inside the square root, lr inside the momentum, decoupled decay.
            let keras = name == "keras_rmsprop";
            let builder = if keras {
                let lr = h.num("learning_rate", Some(1e-3))?;
                Rmsprop::builder(lr)
                    .alpha(h.num("rho", Some(0.9))?)
                    .momentum(h.num("momentum", Some(0.0))?)
                    .eps(h.num("epsilon", Some(1e-7))?)
                    .centered(h.bool("centered", false)?)
                    .weight_decay(decay(h.num("weight_decay", Some(0.0))?, true))
                    .eps_inside_sqrt(true)
                    .momentum_form(MomentumForm::LrInVelocity)
            } else {
                Rmsprop::builder(h.num("lr", Some(1e-2))?)
                    .alpha(h.num("alpha", Some(0.99))?)
                    .eps(h.num("eps", Some(1e-8))?)
                    .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
                    .momentum(h.num("momentum", Some(0.0))?)
                    .centered(h.bool("centered", false)?)
                    .maximize(h.bool("maximize", false)?)
            };
            let config = built(builder.build())?;
            let (square, average, buffer) = if keras {
                ("velocity", "average_gradient", "momentum")
            } else {
                ("square_avg", "grad_avg", "momentum_buffer")
            };
            let mut names = vec![square];
            if config.centered() {
                names.push(average);
            }
            if config.momentum() > 0.0 {
                names.push(buffer);
            }
            let centered = config.centered();
            Runner::new(n, &names, move |x, t, w, s, g| {
                let (sq, rest) = s.split_first_mut().unwrap();
                let (ga, buf) = if centered {
                    let (ga, rest) = rest.split_first_mut().unwrap();
                    (Some(&mut ga[..]), rest.first_mut().map(|b| &mut b[..]))
                } else {
                    (None, rest.first_mut().map(|b| &mut b[..]))
                };
                x.rmsprop_step(w, sq, ga, buf, g, &config, t)
            })
        }
        "adagrad" => {
            // torch.optim.Adagrad(lr=1e-2, lr_decay=0, weight_decay=0,
            // initial_accumulator_value=0, eps=1e-10, maximize=False).
            let config = built(
                Adagrad::builder(h.num("lr", Some(1e-2))?)
                    .lr_decay(h.num("lr_decay", Some(0.0))?)
                    .weight_decay(decay(h.num("weight_decay", Some(0.0))?, false))
                    .initial_accumulator_value(h.num("initial_accumulator_value", Some(0.0))?)
                    .eps(h.num("eps", Some(1e-10))?)
                    .maximize(h.bool("maximize", false)?)
                    .build(),
            )?;
            Runner::new(n, &["sum"], move |x, t, w, s, g| {
                x.adagrad_step(w, &mut s[0], g, &config, t)
            })
        }
        "lion" => {
            // lion_pytorch.Lion(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0): decoupled decay.
            let (b1, b2) = h.pair("betas", (0.9, 0.99))?;
            let config = built(
                Lion::builder(h.num("lr", Some(1e-4))?)
                    .betas(b1, b2)
                    .weight_decay(decay(h.num("weight_decay", Some(0.0))?, true))
                    .build(),
            )?;
            if h.bool("decoupled_weight_decay", false)? {
                return Err("lion-pytorch's decoupled_weight_decay=True is not modelled".into());
            }
            h.ignore(&["use_triton"]);
            Runner::new(n, &["exp_avg"], move |x, t, w, s, g| {
                x.lion_step(w, &mut s[0], g, &config, t)
            })
        }
        "lamb" => {
            // timm.optim.Lamb(lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6,
            // weight_decay=0.01, grad_averaging=True, max_grad_norm=1.0, trust_clip=False,
            // always_adapt=False, caution=False, decoupled_decay=False).
            let (b1, b2) = h.pair("betas", (0.9, 0.999))?;
            let wd = h.num("weight_decay", Some(0.01))?;
            let decoupled = h.bool("decoupled_decay", false)?;
            let mut builder = Lamb::builder(h.num("lr", Some(1e-3))?).weight_decay(if decoupled {
                WeightDecay::Decoupled(wd)
            } else {
                WeightDecay::L2(wd)
            });
            // max_grad_norm: absent means timm's default 1.0, null turns clipping off.
            h.ignore(&["max_grad_norm"]);
            let max_grad_norm = match h.map.get("max_grad_norm") {
                None => Some(1.0),
                Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .ok_or(format!("max_grad_norm = {v} is not a number"))?,
                ),
            };
            builder = builder
                .betas(b1, b2)
                .eps(h.num("eps", Some(1e-6))?)
                .bias_correction(h.bool("bias_correction", true)?)
                .grad_averaging(h.bool("grad_averaging", true)?)
                .max_grad_norm(max_grad_norm)
                .trust_clip(h.bool("trust_clip", false)?)
                .always_adapt(h.bool("always_adapt", false)?);
            h.only_defaults(&[("caution", Value::Bool(false))])?;
            let config = built(builder.build())?;
            Runner::new(n, &["exp_avg", "exp_avg_sq"], move |x, t, w, s, g| {
                let [m, v] = s else {
                    unreachable!("two state buffers")
                };
                x.lamb_step(w, m, v, g, &config, t)
            })
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
        (runner.step)(&exec, k as u64 + 1, &mut w, &mut runner.state, &g)
            .map_err(|e| format!("step {}: the crate refused the call: {e}", k + 1))?;
        compare(&format!("w after step {}", k + 1), &w, w_ref, from_bits)?;
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
