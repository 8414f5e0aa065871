//! The checkpoint format of [`StatefulOptimizer`](crate::StatefulOptimizer): a versioned,
//! checksummed byte layout holding the config, the step count, the mixed-precision options and
//! every state buffer.
//!
//! Every integer and float is little-endian; floats are stored as their IEEE 754 bits, so a
//! checkpoint restores the exact bits it saved, on any machine and backend.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic: the bytes `OPTKCKPT` |
//! | 8 | 4 | format version (`u32`), 1 |
//! | 12 | 8 | length of the whole file in bytes, checksum included (`u64`) |
//! | 20 | 1 | optimizer: 0 SGD, 1 momentum, 2 Adam, 3 RMSprop, 4 Adagrad, 5 Lion, 6 LAMB |
//! | 21 | 1 | element type of the state: 0 `f32`, 1 `f16`, 2 `bf16` |
//! | 22 | 2 | `n`: number of config numbers (`u16`) |
//! | 24 | 2 | `k`: number of config flags (`u16`) |
//! | 26 | 8n | the config numbers (`f64`), in the order of the table below |
//! | | k | the config flags (`u8`), in the order of the table below |
//! | | 8 | steps taken (`u64`) |
//! | | 8 | gradient multiplier (`f64`) |
//! | | 1 | options (`u8`): bit 0 clipping on, bit 1 skip non-finite steps, bit 2 stochastic rounding, bit 3 state allocated; other bits 0 |
//! | | 8 | clipping `max_norm` (`f64`; 0 when off) |
//! | | 8 | stochastic rounding seed (`u64`; 0 when off) |
//! | | 8 | `t`: number of tensors (`u64`; 0 when the state is not allocated) |
//! | | 4 | `b`: state buffers per tensor (`u32`) |
//! | | 8t | each tensor's length in elements (`u64`) |
//! | | | the state: tensor after tensor, each tensor's `b` buffers in the order of [`Optimizer::state_buffers`](crate::Optimizer::state_buffers), each element's bits (4 bytes for `f32`, 2 for `f16` and `bf16`) |
//! | end − 4 | 4 | CRC-32 (IEEE 802.3, as zlib's `crc32`) of every byte before it (`u32`) |
//!
//! The config of each optimizer (weight decay: a mode flag, 0 none, 1 L2, 2 decoupled, and a
//! value; momentum forms: 0 heavy ball, 1 learning rate in the velocity, 2 moving average):
//!
//! | optimizer | numbers | flags |
//! |---|---|---|
//! | SGD | lr, weight decay | weight-decay mode, maximize |
//! | momentum | lr, momentum, dampening, weight decay | form, Nesterov, weight-decay mode, maximize |
//! | Adam | lr, beta1, beta2, eps, weight decay | weight-decay mode, AMSGrad, maximize, bias correction, epsilon placement (0 corrected, 1 hat) |
//! | RMSprop | lr, alpha, eps, momentum, weight decay | eps inside the root, weight-decay mode, momentum form, centered, maximize |
//! | Adagrad | lr, lr decay, initial accumulator, eps, weight decay | weight-decay mode, maximize |
//! | Lion | lr, beta1, beta2, weight decay | weight-decay mode, maximize |
//! | LAMB | lr, beta1, beta2, eps, weight decay, max grad norm (0 when off) | decoupled, grad averaging, bias correction, max grad norm on, trust clip, always adapt, maximize |
//!
//! Loading checks, in this order, and refuses the file at the first failure: the magic, the
//! version, the length against the recorded length, the checksum, then the content (the
//! config is validated as the builders validate it, the flags and option bits must be known,
//! the tensor lengths must account for the payload exactly), then that it fits the optimizer
//! it is loaded into (the same optimizer, the same state element type, the same tensor
//! lengths if that optimizer already knows its model's).

use core::fmt;

use crate::element::DType;
use crate::optim::many::Optimizer;
use crate::{Adagrad, Adam, EpsilonPlacement, Error, Lamb, Lion, Momentum, MomentumForm};
use crate::{Rmsprop, Sgd, WeightDecay};

/// The first eight bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"OPTKCKPT";
/// The version this crate writes and reads.
pub const VERSION: u32 = 1;

/// The size of the fixed part at the start: magic, version, length.
const PREAMBLE: usize = 8 + 4 + 8;
/// The checksum at the end.
const CHECKSUM: usize = 4;

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

/// CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`), as zlib's `crc32`: eight tables,
/// eight bytes per round.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    const TABLES: [[u32; 256]; 8] = crc_tables();
    let mut crc = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][c[4] as usize]
            ^ TABLES[2][c[5] as usize]
            ^ TABLES[1][c[6] as usize]
            ^ TABLES[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = TABLES[0][((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut t = 1;
    while t < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
}

/// The options of a [`StatefulOptimizer`](crate::StatefulOptimizer) that a checkpoint keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Options {
    pub(crate) steps: u64,
    pub(crate) grad_scale: f64,
    pub(crate) max_grad_norm: Option<f64>,
    pub(crate) skip_non_finite: bool,
    pub(crate) seed: Option<u64>,
}

/// A checkpoint's content, checked and parsed; the state bytes are still raw.
pub(crate) struct Parsed<'a> {
    pub(crate) config: Optimizer,
    pub(crate) dtype: DType,
    pub(crate) options: Options,
    /// `None` when the state was not allocated.
    pub(crate) lengths: Option<Vec<usize>>,
    pub(crate) buffers_per_tensor: usize,
    pub(crate) payload: &'a [u8],
}

/// The name of an optimizer, for messages.
pub(crate) fn optimizer_name(config: &Optimizer) -> &'static str {
    match config {
        Optimizer::Sgd(_) => "SGD",
        Optimizer::Momentum(_) => "momentum",
        Optimizer::Adam(_) => "Adam",
        Optimizer::Rmsprop(_) => "RMSprop",
        Optimizer::Adagrad(_) => "Adagrad",
        Optimizer::Lion(_) => "Lion",
        Optimizer::Lamb(_) => "LAMB",
    }
}

fn dtype_code(dtype: DType) -> u8 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    }
}

fn weight_decay_parts(wd: WeightDecay) -> (u8, f64) {
    match wd {
        WeightDecay::None => (0, 0.0),
        WeightDecay::L2(v) => (1, v),
        WeightDecay::Decoupled(v) => (2, v),
    }
}

fn form_code(form: MomentumForm) -> u8 {
    match form {
        MomentumForm::HeavyBall => 0,
        MomentumForm::LrInVelocity => 1,
        MomentumForm::MovingAverage => 2,
    }
}

/// The config as (optimizer code, numbers, flags), in the order of the module's table.
fn encode_config(config: &Optimizer) -> (u8, Vec<f64>, Vec<u8>) {
    let b = u8::from;
    match config {
        Optimizer::Sgd(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            (0, vec![c.lr(), wd], vec![mode, b(c.maximize())])
        }
        Optimizer::Momentum(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            (
                1,
                vec![c.lr(), c.momentum(), c.dampening(), wd],
                vec![form_code(c.form()), b(c.nesterov()), mode, b(c.maximize())],
            )
        }
        Optimizer::Adam(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            let (b1, b2) = c.betas();
            let hat = c.epsilon_placement() == EpsilonPlacement::Hat;
            (
                2,
                vec![c.lr(), b1, b2, c.eps(), wd],
                vec![
                    mode,
                    b(c.amsgrad()),
                    b(c.maximize()),
                    b(c.bias_correction()),
                    b(hat),
                ],
            )
        }
        Optimizer::Rmsprop(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            (
                3,
                vec![c.lr(), c.alpha(), c.eps(), c.momentum(), wd],
                vec![
                    b(c.eps_inside_sqrt()),
                    mode,
                    form_code(c.momentum_form()),
                    b(c.centered()),
                    b(c.maximize()),
                ],
            )
        }
        Optimizer::Adagrad(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            (
                4,
                vec![
                    c.lr(),
                    c.lr_decay(),
                    c.initial_accumulator_value(),
                    c.eps(),
                    wd,
                ],
                vec![mode, b(c.maximize())],
            )
        }
        Optimizer::Lion(c) => {
            let (mode, wd) = weight_decay_parts(c.weight_decay());
            let (b1, b2) = c.betas();
            (5, vec![c.lr(), b1, b2, wd], vec![mode, b(c.maximize())])
        }
        Optimizer::Lamb(c) => {
            let (b1, b2) = c.betas();
            let (wd, decoupled) = c.weight_decay();
            let max = c.max_grad_norm();
            (
                6,
                vec![c.lr(), b1, b2, c.eps(), wd, max.unwrap_or(0.0)],
                vec![
                    b(decoupled),
                    b(c.grad_averaging()),
                    b(c.bias_correction()),
                    b(max.is_some()),
                    b(c.trust_clip()),
                    b(c.always_adapt()),
                    b(c.maximize()),
                ],
            )
        }
    }
}

const MALFORMED_FLAG: CheckpointError = CheckpointError::Malformed {
    reason: "a config flag has a value outside its range",
};

fn flag(value: u8) -> Result<bool, CheckpointError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MALFORMED_FLAG),
    }
}

fn weight_decay(mode: u8, value: f64) -> Result<WeightDecay, CheckpointError> {
    match mode {
        0 if value == 0.0 => Ok(WeightDecay::None),
        1 => Ok(WeightDecay::L2(value)),
        2 => Ok(WeightDecay::Decoupled(value)),
        _ => Err(MALFORMED_FLAG),
    }
}

fn form(code: u8) -> Result<MomentumForm, CheckpointError> {
    match code {
        0 => Ok(MomentumForm::HeavyBall),
        1 => Ok(MomentumForm::LrInVelocity),
        2 => Ok(MomentumForm::MovingAverage),
        _ => Err(MALFORMED_FLAG),
    }
}

/// The config from its parts, validated by the builders.
fn decode_config(code: u8, nums: &[f64], flags: &[u8]) -> Result<Optimizer, CheckpointError> {
    let counts = match code {
        0 => (2, 2),
        1 => (4, 4),
        2 => (5, 5),
        3 => (5, 5),
        4 => (5, 2),
        5 => (4, 2),
        6 => (6, 7),
        _ => {
            return Err(CheckpointError::Malformed {
                reason: "unknown optimizer code",
            });
        }
    };
    if (nums.len(), flags.len()) != counts {
        return Err(CheckpointError::Malformed {
            reason: "the config has the wrong number of fields for its optimizer",
        });
    }
    let invalid = |error: Error| CheckpointError::InvalidConfig {
        error: Box::new(error),
    };
    let config: Result<Optimizer, Error> = match code {
        0 => {
            let (wd, maximize) = (weight_decay(flags[0], nums[1])?, flag(flags[1])?);
            Sgd::new(nums[0])
                .and_then(|c| c.with_weight_decay(wd))
                .map(|c| c.with_maximize(maximize).into())
        }
        1 => {
            let builder = match form(flags[0])? {
                MomentumForm::HeavyBall => Momentum::heavy_ball(nums[0], nums[1]),
                MomentumForm::LrInVelocity => Momentum::lr_in_velocity(nums[0], nums[1]),
                MomentumForm::MovingAverage => Momentum::moving_average(nums[0], nums[1]),
            };
            builder
                .dampening(nums[2])
                .nesterov(flag(flags[1])?)
                .weight_decay(weight_decay(flags[2], nums[3])?)
                .maximize(flag(flags[3])?)
                .build()
                .map(Optimizer::from)
        }
        2 => Adam::builder(nums[0])
            .betas(nums[1], nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay(flags[0], nums[4])?)
            .amsgrad(flag(flags[1])?)
            .maximize(flag(flags[2])?)
            .bias_correction(flag(flags[3])?)
            .epsilon_placement(if flag(flags[4])? {
                EpsilonPlacement::Hat
            } else {
                EpsilonPlacement::Corrected
            })
            .build()
            .map(Optimizer::from),
        3 => Rmsprop::builder(nums[0])
            .alpha(nums[1])
            .eps(nums[2])
            .momentum(nums[3])
            .weight_decay(weight_decay(flags[1], nums[4])?)
            .eps_inside_sqrt(flag(flags[0])?)
            .momentum_form(form(flags[2])?)
            .centered(flag(flags[3])?)
            .maximize(flag(flags[4])?)
            .build()
            .map(Optimizer::from),
        4 => Adagrad::builder(nums[0])
            .lr_decay(nums[1])
            .initial_accumulator_value(nums[2])
            .eps(nums[3])
            .weight_decay(weight_decay(flags[0], nums[4])?)
            .maximize(flag(flags[1])?)
            .build()
            .map(Optimizer::from),
        5 => Lion::builder(nums[0])
            .betas(nums[1], nums[2])
            .weight_decay_mode(weight_decay(flags[0], nums[3])?)
            .maximize(flag(flags[1])?)
            .build()
            .map(Optimizer::from),
        _ => {
            let builder = Lamb::builder(nums[0]).betas(nums[1], nums[2]).eps(nums[3]);
            let builder = if flag(flags[0])? {
                builder.decoupled_weight_decay(nums[4])
            } else {
                builder.weight_decay(nums[4])
            };
            let max = match flag(flags[3])? {
                true => Some(nums[5]),
                false if nums[5] == 0.0 => None,
                false => return Err(MALFORMED_FLAG),
            };
            builder
                .grad_averaging(flag(flags[1])?)
                .bias_correction(flag(flags[2])?)
                .max_grad_norm(max)
                .trust_clip(flag(flags[4])?)
                .always_adapt(flag(flags[5])?)
                .maximize(flag(flags[6])?)
                .build()
                .map(Optimizer::from)
        }
    };
    config.map_err(invalid)
}

/// Option bits.
const CLIP: u8 = 1;
const SKIP: u8 = 2;
const ROUNDING: u8 = 4;
const ALLOCATED: u8 = 8;

/// Writes a checkpoint: everything but the state, which `write_state` appends (exactly
/// `sum(lengths) * buffers_per_tensor * dtype.size()` bytes), then the checksum.
pub(crate) fn write(
    config: &Optimizer,
    dtype: DType,
    options: &Options,
    lengths: Option<&[usize]>,
    buffers_per_tensor: usize,
    write_state: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let (code, nums, flags) = encode_config(config);
    let tensors = lengths.unwrap_or(&[]);
    let elements: usize = tensors.iter().sum();
    let payload = elements * buffers_per_tensor * dtype.size();
    let total = PREAMBLE
        + 6
        + 8 * nums.len()
        + flags.len()
        + 8
        + 8
        + 1
        + 8
        + 8
        + 8
        + 4
        + 8 * tensors.len()
        + payload
        + CHECKSUM;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    out.push(code);
    out.push(dtype_code(dtype));
    out.extend_from_slice(&(nums.len() as u16).to_le_bytes());
    out.extend_from_slice(&(flags.len() as u16).to_le_bytes());
    for n in &nums {
        out.extend_from_slice(&n.to_bits().to_le_bytes());
    }
    out.extend_from_slice(&flags);
    out.extend_from_slice(&options.steps.to_le_bytes());
    out.extend_from_slice(&options.grad_scale.to_bits().to_le_bytes());
    let mut bits = 0u8;
    if options.max_grad_norm.is_some() {
        bits |= CLIP;
    }
    if options.skip_non_finite {
        bits |= SKIP;
    }
    if options.seed.is_some() {
        bits |= ROUNDING;
    }
    if lengths.is_some() {
        bits |= ALLOCATED;
    }
    out.push(bits);
    let max_norm = options.max_grad_norm.unwrap_or(0.0);
    out.extend_from_slice(&max_norm.to_bits().to_le_bytes());
    out.extend_from_slice(&options.seed.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(buffers_per_tensor as u32).to_le_bytes());
    for &len in tensors {
        out.extend_from_slice(&(len as u64).to_le_bytes());
    }
    let before = out.len();
    write_state(&mut out);
    assert_eq!(out.len() - before, payload, "state size");
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), total);
    out
}

/// Reads fields in order; running past the end means the recorded sizes are inconsistent.
struct Reader<'a> {
    bytes: &'a [u8],
}

const SHORT: CheckpointError = CheckpointError::Malformed {
    reason: "the recorded sizes run past the end of the file",
};

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        if n > self.bytes.len() {
            return Err(SHORT);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CheckpointError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn f64(&mut self) -> Result<f64, CheckpointError> {
        Ok(f64::from_bits(self.u64()?))
    }
}

/// Checks a checkpoint's framing (magic, version, length, checksum) and parses its content.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, CheckpointError> {
    if bytes.len() < MAGIC.len() {
        // Too short to tell: a prefix of the magic is a truncated checkpoint.
        return if MAGIC.starts_with(bytes) {
            Err(CheckpointError::Truncated {
                len: bytes.len(),
                expected: (PREAMBLE + CHECKSUM) as u64,
            })
        } else {
            Err(CheckpointError::NotACheckpoint)
        };
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(CheckpointError::NotACheckpoint);
    }
    if bytes.len() < 12 {
        return Err(CheckpointError::Truncated {
            len: bytes.len(),
            expected: (PREAMBLE + CHECKSUM) as u64,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    if bytes.len() < PREAMBLE + CHECKSUM {
        return Err(CheckpointError::Truncated {
            len: bytes.len(),
            expected: (PREAMBLE + CHECKSUM) as u64,
        });
    }
    let total = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if (bytes.len() as u64) < total {
        return Err(CheckpointError::Truncated {
            len: bytes.len(),
            expected: total,
        });
    }
    if (bytes.len() as u64) > total {
        return Err(CheckpointError::TrailingBytes {
            len: bytes.len(),
            expected: total,
        });
    }
    let (content, stored) = bytes.split_at(bytes.len() - CHECKSUM);
    let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
    let computed = crc32(content);
    if stored != computed {
        return Err(CheckpointError::ChecksumMismatch { stored, computed });
    }

    let mut r = Reader {
        bytes: &content[PREAMBLE..],
    };
    let code = r.u8()?;
    let dtype = match r.u8()? {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::BF16,
        _ => {
            return Err(CheckpointError::Malformed {
                reason: "unknown element type code",
            });
        }
    };
    let n_nums = usize::from(r.u16()?);
    let n_flags = usize::from(r.u16()?);
    let nums = (0..n_nums)
        .map(|_| r.f64())
        .collect::<Result<Vec<_>, _>>()?;
    let flags = r.take(n_flags)?.to_vec();
    let config = decode_config(code, &nums, &flags)?;
    let steps = r.u64()?;
    let grad_scale = r.f64()?;
    if !grad_scale.is_finite() {
        return Err(CheckpointError::Malformed {
            reason: "the gradient multiplier is not finite",
        });
    }
    let bits = r.u8()?;
    if bits & !(CLIP | SKIP | ROUNDING | ALLOCATED) != 0 {
        return Err(CheckpointError::Malformed {
            reason: "unknown option bits are set",
        });
    }
    let max_norm = r.f64()?;
    let max_grad_norm = if bits & CLIP != 0 {
        if !(max_norm.is_finite() && max_norm > 0.0) {
            return Err(CheckpointError::Malformed {
                reason: "the clipping norm is not finite and positive",
            });
        }
        Some(max_norm)
    } else {
        None
    };
    let seed = r.u64()?;
    let seed = (bits & ROUNDING != 0).then_some(seed);
    let tensors = r.u64()?;
    let buffers_per_tensor = r.u32()? as usize;
    if buffers_per_tensor != config.state_buffers().len() {
        return Err(CheckpointError::Malformed {
            reason: "the number of state buffers does not match the config",
        });
    }
    // Each length takes 8 bytes: a count beyond what is left cannot be right (and is not
    // allocated).
    if tensors > (r.bytes.len() / 8) as u64 {
        return Err(SHORT);
    }
    let lengths = (0..tensors)
        .map(|_| {
            r.u64()
                .map(|len| usize::try_from(len).unwrap_or(usize::MAX))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if bits & ALLOCATED == 0 && !lengths.is_empty() {
        return Err(CheckpointError::Malformed {
            reason: "tensor lengths are given for a state that is not allocated",
        });
    }
    let payload = lengths
        .iter()
        .try_fold(0usize, |acc, &len| acc.checked_add(len))
        .and_then(|n| n.checked_mul(buffers_per_tensor))
        .and_then(|n| n.checked_mul(dtype.size()));
    if payload != Some(r.bytes.len()) {
        return Err(CheckpointError::Malformed {
            reason: "the tensor lengths do not account for the size of the state",
        });
    }
    Ok(Parsed {
        config,
        dtype,
        options: Options {
            steps,
            grad_scale,
            max_grad_norm,
            skip_non_finite: bits & SKIP != 0,
            seed,
        },
        lengths: (bits & ALLOCATED != 0).then_some(lengths),
        buffers_per_tensor,
        payload: r.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        // Known values of zlib's crc32.
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        // The eight-byte rounds agree with byte-at-a-time over every split point.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            let mut crc = !0u32;
            for &b in &data[..n] {
                crc = crc_tables()[0][((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
            }
            assert_eq!(crc32(&data[..n]), !crc, "length {n}");
        }
    }

    #[test]
    fn every_config_round_trips() {
        let configs: Vec<Optimizer> = vec![
            Sgd::new(0.1)
                .unwrap()
                .with_weight_decay(WeightDecay::L2(1e-4))
                .unwrap()
                .with_maximize(true)
                .into(),
            Momentum::heavy_ball(0.1, 0.9)
                .dampening(0.1)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .build()
                .unwrap()
                .into(),
            Momentum::lr_in_velocity(0.1, 0.9)
                .nesterov(true)
                .build()
                .unwrap()
                .into(),
            Momentum::moving_average(0.1, 0.8)
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Adam::adamw(1e-3, 0.1)
                .betas(0.8, 0.95)
                .eps(1e-6)
                .amsgrad(true)
                .bias_correction(false)
                .epsilon_placement(EpsilonPlacement::Hat)
                .build()
                .unwrap()
                .into(),
            Rmsprop::builder(1e-2)
                .alpha(0.9)
                .eps(1e-7)
                .eps_inside_sqrt(true)
                .momentum(0.5)
                .momentum_form(MomentumForm::LrInVelocity)
                .centered(true)
                .weight_decay(WeightDecay::L2(0.1))
                .build()
                .unwrap()
                .into(),
            Adagrad::builder(0.05)
                .lr_decay(1e-3)
                .initial_accumulator_value(0.1)
                .eps(1e-9)
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Lion::builder(3e-4)
                .betas(0.95, 0.98)
                .weight_decay(0.1)
                .build()
                .unwrap()
                .into(),
            Lamb::builder(1e-2)
                .decoupled_weight_decay(0.05)
                .max_grad_norm(None)
                .trust_clip(true)
                .always_adapt(true)
                .build()
                .unwrap()
                .into(),
            Lamb::builder(1e-2).build().unwrap().into(),
        ];
        for config in configs {
            let (code, nums, flags) = encode_config(&config);
            assert_eq!(decode_config(code, &nums, &flags), Ok(config), "{config:?}");
        }
    }
}
