//! The crate's error type.

use core::fmt;

use crate::Backend;

/// Why a call was refused. A call that returns an error has written nothing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer's length differs from the length of the weights.
    LengthMismatch {
        /// The call that was refused, e.g. `"momentum_step"`.
        call: &'static str,
        /// The buffer whose length is wrong, e.g. `"gradient"`.
        buffer: &'static str,
        /// Its length.
        len: usize,
        /// The length of the weights.
        expected: usize,
    },
    /// A hyperparameter is outside the values it may take.
    InvalidHyperparameter {
        /// Its name, as in the config type.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What it must satisfy, e.g. `"finite and >= 0"`.
        requirement: &'static str,
    },
    /// Two options that cannot be used together, or an option without what it needs.
    IncompatibleOptions {
        /// What is wrong, in a sentence.
        reason: &'static str,
    },
    /// A state buffer the config needs was not given, or one it does not use was given.
    StateBuffer {
        /// The call that was refused.
        call: &'static str,
        /// The buffer, e.g. `"grad_avg"`.
        buffer: &'static str,
        /// `true`: the config needs it and it is missing; `false`: it is given but unused.
        needed: bool,
    },
    /// A tensor of a multi-tensor call has more or fewer state buffers than the optimizer
    /// uses.
    StateBufferCount {
        /// The call that was refused.
        call: &'static str,
        /// How many the optimizer uses.
        expected: usize,
        /// How many were given.
        given: usize,
    },
    /// A multi-tensor call refused one of its tensors.
    InTensor {
        /// The tensor's position in the call.
        index: usize,
        /// What is wrong with it.
        error: Box<Error>,
    },
    /// The step number given to a call that counts steps from 1 was 0.
    InvalidStep,
    /// A call was given a list of buffers (one per tensor) of the wrong length.
    TensorCount {
        /// The call that was refused.
        call: &'static str,
        /// The list, e.g. `"gradients"`.
        what: &'static str,
        /// Its length.
        given: usize,
        /// The number of tensors expected.
        expected: usize,
    },
    /// A [`StatefulOptimizer`](crate::StatefulOptimizer) was given a tensor whose length
    /// differs from the one its state was made for.
    ModelChanged {
        /// The tensor's position.
        tensor: usize,
        /// Its length now.
        len: usize,
        /// The length the state was made for.
        expected: usize,
    },
    /// A checkpoint was refused.
    Checkpoint(crate::checkpoint::CheckpointError),
    /// The backend asked for cannot run on this CPU.
    BackendUnavailable {
        /// The backend asked for.
        backend: Backend,
        /// Where it was asked for: `"explicit choice"` or `"OPTKERN_BACKEND"`.
        source: &'static str,
    },
    /// A backend name (in `OPTKERN_BACKEND` or given to `Backend::from_str`) that names no
    /// backend.
    UnknownBackend {
        /// The name given.
        name: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthMismatch {
                call,
                buffer,
                len,
                expected,
            } => write!(
                f,
                "{call}: the {buffer} buffer has length {len}, but the weights have length {expected}"
            ),
            Error::InvalidHyperparameter {
                name,
                value,
                requirement,
            } => {
                write!(
                    f,
                    "invalid hyperparameter {name} = {value}: it must be {requirement}"
                )
            }
            Error::IncompatibleOptions { reason } => write!(f, "incompatible options: {reason}"),
            Error::StateBuffer {
                call,
                buffer,
                needed: true,
            } => {
                write!(
                    f,
                    "{call}: the config needs the {buffer} buffer, but none was given"
                )
            }
            Error::StateBuffer {
                call,
                buffer,
                needed: false,
            } => write!(
                f,
                "{call}: the {buffer} buffer was given, but the config does not use it"
            ),
            Error::StateBufferCount {
                call,
                expected,
                given,
            } => write!(
                f,
                "{call}: the optimizer uses {expected} state buffers per tensor, but {given} were given"
            ),
            Error::InTensor { index, error } => write!(f, "tensor {index}: {error}"),
            Error::InvalidStep => {
                write!(
                    f,
                    "invalid step 0: steps are counted from 1 (the first step is step 1)"
                )
            }
            Error::TensorCount {
                call,
                what,
                given,
                expected,
            } => write!(
                f,
                "{call}: {given} {what} were given, for {expected} tensors"
            ),
            Error::ModelChanged {
                tensor,
                len,
                expected,
            } => write!(
                f,
                "tensor {tensor} has {len} elements, but the optimizer's state was made for {expected}"
            ),
            Error::Checkpoint(error) => write!(f, "{error}"),
            Error::BackendUnavailable { backend, source } => write!(
                f,
                "backend {backend} ({source}) cannot run on this CPU; available: {}",
                Backend::available()
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Error::UnknownBackend { name } => write!(
                f,
                "unknown backend {name:?}: expected one of scalar, avx2, avx512, neon (or auto)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Checks that `value` is finite and `>= 0`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "finite and >= 0",
        })
    }
}

/// Checks that `value` is finite and `> 0`.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "finite and > 0",
        })
    }
}

/// Checks that `0 <= value < 1`.
pub(crate) fn unit_interval_open(name: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "in [0, 1)",
        })
    }
}

/// Checks that `0 <= value <= 1`.
pub(crate) fn unit_interval_closed(name: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "in [0, 1]",
        })
    }
}

/// Checks that a buffer is as long as the weights.
pub(crate) fn same_len(
    call: &'static str,
    buffer: &'static str,
    len: usize,
    expected: usize,
) -> Result<(), Error> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::LengthMismatch {
            call,
            buffer,
            len,
            expected,
        })
    }
}
