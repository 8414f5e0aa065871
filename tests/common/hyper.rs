//! The golden runner's reading of a case file's hyperparameters, shared by the cases (each
//! maps its library's names onto its builder, `tests/common/cases/`) and the runner
//! (`tests/golden.rs`).

use optkern::WeightDecay;
use serde_json::Value;

/// Reads hyperparameters by name, with the library's defaults, and refuses names it was not
/// asked for.
pub struct Hyper<'a> {
    pub map: &'a serde_json::Map<String, Value>,
    pub used: Vec<&'static str>,
}

impl<'a> Hyper<'a> {
    pub fn new(map: &'a serde_json::Map<String, Value>) -> Self {
        Hyper {
            map,
            used: Vec::new(),
        }
    }

    /// A number, kept in double precision as the libraries keep it.
    pub fn num(&mut self, key: &'static str, default: Option<f64>) -> Result<f64, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => {
                default.ok_or(format!("required hyperparameter {key:?} missing"))
            }
            Some(v) => v.as_f64().ok_or(format!("{key} = {v} is not a number")),
        }
    }

    pub fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or(format!("{key} = {v} is not a boolean")),
        }
    }

    pub fn pair(&mut self, key: &'static str, default: (f64, f64)) -> Result<(f64, f64), String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(Value::is_number) => {
                Ok((a[0].as_f64().unwrap(), a[1].as_f64().unwrap()))
            }
            Some(v) => Err(format!("{key} = {v} is not a pair of numbers")),
        }
    }

    /// A list of `N` numbers (AdEMAMix's three betas).
    pub fn list<const N: usize>(
        &mut self,
        key: &'static str,
        default: [f64; N],
    ) -> Result<[f64; N], String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Array(a)) if a.len() == N && a.iter().all(Value::is_number) => {
                Ok(std::array::from_fn(|i| a[i].as_f64().unwrap()))
            }
            Some(v) => Err(format!("{key} = {v} is not a list of {N} numbers")),
        }
    }

    /// A number that may be the library's `None` (absent or `null`).
    pub fn optional(&mut self, key: &'static str) -> Result<Option<f64>, String> {
        self.used.push(key);
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or(format!("{key} = {v} is not a number")),
        }
    }

    /// Options that do not change the math (they choose an implementation): any value.
    pub fn ignore(&mut self, keys: &[&'static str]) {
        self.used.extend_from_slice(keys);
    }

    /// Options the crate does not model: accepted only at their no-op values.
    pub fn only_defaults(&mut self, options: &[(&'static str, Value)]) -> Result<(), String> {
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
    pub fn finish(self) -> Result<(), String> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "option {k:?} = {} is not understood by this runner",
                self.map[k]
            )),
            None => Ok(()),
        }
    }
}

/// `weight_decay` as the crate's [`WeightDecay`]: none when 0.
pub fn decay(wd: f64, decoupled: bool) -> WeightDecay {
    match (wd, decoupled) {
        (0.0, _) => WeightDecay::None,
        (wd, true) => WeightDecay::Decoupled(wd),
        (wd, false) => WeightDecay::L2(wd),
    }
}

pub fn built<T>(result: Result<T, optkern::Error>) -> Result<T, String> {
    result.map_err(|e| format!("the crate refuses the configuration: {e}"))
}
