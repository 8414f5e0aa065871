//! The crate's error types: [`Error`], and [`CheckpointError`] inside it.
//!
//! The bottom layer of the crate: this module uses nothing else of it, so that every other
//! module can return its errors.

use core::fmt;

use crate::element::DType;

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
    /// Stochastic rounding numbers a call's elements from its `index_base`, and the last
    /// index would not fit in a `u64` (`index_base + elements` must not exceed `u64::MAX`).
    RoundingIndexOverflow {
        /// The first index.
        index_base: u64,
        /// The number of elements the call writes.
        elements: usize,
    },
    /// A [`StatefulOptimizer`](crate::StatefulOptimizer) has counted `u64::MAX - 1` steps: the
    /// next one would leave its count without a successor (a checkpoint with a count of
    /// `u64::MAX` is refused).
    StepCountExhausted {
        /// The steps taken.
        steps: u64,
    },
    /// A checkpoint was refused.
    Checkpoint(CheckpointError),
    /// The backend asked for cannot run on this CPU.
    BackendUnavailable {
        /// The name of the backend asked for (as [`Backend::name`](crate::Backend::name)).
        backend: &'static str,
        /// Where it was asked for: `"explicit choice"` or `"OPTKERN_BACKEND"`.
        source: &'static str,
        /// The backends this CPU can run, best first, when the error was made.
        available: Vec<&'static str>,
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
                let rounded = *value as f32;
                if f64::from(rounded) == *value || value.is_nan() {
                    write!(
                        f,
                        "invalid hyperparameter {name} = {value}: it must be {requirement}"
                    )
                } else {
                    write!(
                        f,
                        "invalid hyperparameter {name} = {value} ({rounded:e} in f32): it must \
                         be {requirement}"
                    )
                }
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
            Error::RoundingIndexOverflow {
                index_base,
                elements,
            } => write!(
                f,
                "stochastic rounding numbers elements from index_base {index_base}: {elements} \
                 elements run past u64::MAX (index_base + elements must not exceed it)"
            ),
            Error::StepCountExhausted { steps } => write!(
                f,
                "the optimizer has taken {steps} steps, the most its step count allows"
            ),
            Error::Checkpoint(error) => write!(f, "{error}"),
            Error::BackendUnavailable {
                backend,
                source,
                available,
            } => write!(
                f,
                "backend {backend} ({source}) cannot run on this CPU; available: {}",
                available.join(", ")
            ),
            Error::UnknownBackend { name } => write!(
                f,
                "unknown backend {name:?}: expected one of scalar, avx2, avx512, neon (or auto)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InTensor { error, .. } => Some(&**error),
            Error::Checkpoint(error) => Some(error),
            _ => None,
        }
    }
}

/// Why a checkpoint was refused (inside [`Error::Checkpoint`]). The optimizer it was loaded
/// into is left exactly as it was.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file does not start with the checkpoint magic bytes.
    NotACheckpoint,
    /// The file has a format version this crate cannot read.
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this crate reads.
        supported: u32,
    },
    /// The file is shorter than its header says (or than a header).
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header announces (at least the header's size when it is itself cut).
        expected: u64,
    },
    /// The file is longer than its header says.
    TrailingBytes {
        /// Bytes present.
        len: usize,
        /// Bytes the header announces.
        expected: u64,
    },
    /// The stored checksum does not match the content: the file is corrupted.
    ChecksumMismatch {
        /// The checksum in the file.
        stored: u32,
        /// The checksum of the content.
        computed: u32,
    },
    /// The content is inconsistent although the checksum matches (a file not written by
    /// this crate, or by a faulty writer).
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The saved config is not a valid config.
    InvalidConfig {
        /// What its validation says.
        error: Box<Error>,
    },
    /// The file holds another optimizer's state.
    OptimizerMismatch {
        /// The optimizer in the file.
        file: &'static str,
        /// The optimizer it was loaded into.
        expected: &'static str,
    },
    /// The file holds the same kind of optimizer with another discrete choice of its config
    /// (a flag of its checkpoint record: AMSGrad or not, centered or not, the momentum form,
    /// the weight-decay mode, ...), whose state means something else or holds other buffers.
    ConfigMismatch {
        /// The optimizer.
        optimizer: &'static str,
        /// The option, as the builder names it.
        option: &'static str,
        /// Its code in the file (see the optimizer's checkpoint record).
        file: u8,
        /// Its code in the optimizer it was loaded into.
        expected: u8,
    },
    /// The file's state has another element type.
    DTypeMismatch {
        /// The type in the file.
        file: DType,
        /// The optimizer's state type.
        expected: DType,
    },
    /// The file's state was made for a model with another number of tensors.
    TensorCountMismatch {
        /// Tensors in the file.
        file: usize,
        /// Tensors of the optimizer's model.
        expected: usize,
    },
    /// The file's state was made for a tensor of another length.
    TensorLengthMismatch {
        /// The tensor's position.
        tensor: usize,
        /// Its length in the file.
        file: usize,
        /// Its length in the optimizer's model.
        expected: usize,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::NotACheckpoint => {
                f.write_str("not an optkern checkpoint (the magic bytes are missing)")
            }
            CheckpointError::UnsupportedVersion { found, supported } => write!(
                f,
                "checkpoint format version {found} is not supported (this crate reads version {supported})"
            ),
            CheckpointError::Truncated { len, expected } => write!(
                f,
                "the checkpoint is truncated: {len} bytes, expected {expected}"
            ),
            CheckpointError::TrailingBytes { len, expected } => write!(
                f,
                "the checkpoint has trailing bytes: {len} bytes, expected {expected}"
            ),
            CheckpointError::ChecksumMismatch { stored, computed } => write!(
                f,
                "the checkpoint is corrupted: stored checksum {stored:#010x}, content gives {computed:#010x}"
            ),
            CheckpointError::Malformed { reason } => {
                write!(f, "the checkpoint is malformed: {reason}")
            }
            CheckpointError::InvalidConfig { error } => {
                write!(f, "the checkpoint's config is invalid: {error}")
            }
            CheckpointError::OptimizerMismatch { file, expected } => write!(
                f,
                "the checkpoint holds {file} state, but the optimizer is {expected}"
            ),
            CheckpointError::ConfigMismatch {
                optimizer,
                option,
                file,
                expected,
            } => write!(
                f,
                "the checkpoint holds {optimizer} state with another {option} (code {file} in the \
                 file, {expected} in the optimizer): it is another optimizer's state \
                 (StatefulOptimizer::from_checkpoint takes the file's config)"
            ),
            CheckpointError::DTypeMismatch { file, expected } => write!(
                f,
                "the checkpoint's state is {file}, but the optimizer keeps its state in {expected}"
            ),
            CheckpointError::TensorCountMismatch { file, expected } => write!(
                f,
                "the checkpoint has state for {file} tensors, but the optimizer's model has {expected}"
            ),
            CheckpointError::TensorLengthMismatch {
                tensor,
                file,
                expected,
            } => write!(
                f,
                "the checkpoint's tensor {tensor} has {file} elements, but the optimizer's has {expected}"
            ),
        }
    }
}

impl From<CheckpointError> for Error {
    fn from(error: CheckpointError) -> Error {
        Error::Checkpoint(error)
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::InvalidConfig { error } => Some(&**error),
            _ => None,
        }
    }
}

impl Error {
    /// The same error, naming `name` as the call that was refused (for a call that delegates
    /// to another).
    pub(crate) fn in_call(mut self, name: &'static str) -> Error {
        if let Error::LengthMismatch { call, .. } | Error::StateBuffer { call, .. } = &mut self {
            *call = name;
        }
        self
    }
}

/// Checks that `value` is finite and `>= 0`, in `f64` and rounded to `f32`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value >= 0.0 && (value as f32).is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "finite and >= 0, also once rounded to f32 (the kernels' precision)",
        })
    }
}

/// Checks that `value` is finite, in `f64` and rounded to `f32` (where `1e39` becomes
/// infinity).
pub(crate) fn finite(name: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && (value as f32).is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "finite, also once rounded to f32 (the kernels' precision)",
        })
    }
}

/// Checks that `value` is finite and `> 0`, in `f64` and rounded to `f32` (where `1e-50`
/// becomes 0 and `1e39` infinity).
pub(crate) fn positive(name: &'static str, value: f64) -> Result<(), Error> {
    let rounded = value as f32;
    if value.is_finite() && value > 0.0 && rounded.is_finite() && rounded > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "finite and > 0, also once rounded to f32 (the kernels' precision)",
        })
    }
}

/// Checks that `0 <= value < 1`, in `f64` and rounded to `f32` (where `1 - 1e-9` becomes 1).
pub(crate) fn unit_interval_open(name: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..1.0).contains(&value) && (value as f32) < 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            requirement: "in [0, 1), also once rounded to f32 (the kernels' precision)",
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
