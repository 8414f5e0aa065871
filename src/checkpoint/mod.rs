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
//! | 20 | 1 | optimizer: its code, [`Optimizer::code`](crate::Optimizer::code) (0 SGD, 1 momentum, 2 Adam, 3 RMSprop, 4 Adagrad, 5 Lion, 6 LAMB, 7 Adamax, 8 Adadelta, 9 NAdam, 10 RAdam, 11 Rprop, 12 ASGD, 13 ADOPT, 14 AdEMAMix, 15 Schedule-Free AdamW, 16 Schedule-Free SGD) |
//! | 21 | 1 | element type of the state: 0 `f32`, 1 `f16`, 2 `bf16` |
//! | 22 | 2 | `n`: number of config numbers (`u16`) |
//! | 24 | 2 | `k`: number of config flags (`u16`) |
//! | 26 | 8n | the config numbers (`f64`), in the order of the table below |
//! | | k | the config flags (`u8`), in the order of the table below |
//! | | 8 | steps taken (`u64`) |
//! | | 8 | gradient multiplier (`f64`) |
//! | | 1 | options (`u8`): bit 0 clipping on, bit 1 skip non-finite steps, bit 2 stochastic rounding, bit 3 state allocated, bit 4 subnormals flushed ([`Subnormals::Flush`]); other bits 0 |
//! | | 8 | clipping `max_norm` (`f64`; 0 when off) |
//! | | 8 | stochastic rounding seed (`u64`; 0 when off) |
//! | | 8 | `t`: number of tensors (`u64`; 0 when the state is not allocated) |
//! | | 4 | `b`: state buffers per tensor (`u32`) |
//! | | 8t | each tensor's length in elements (`u64`) |
//! | | | the state: tensor after tensor, each tensor's `b` buffers in the order of [`Optimizer::state_buffers`](crate::Optimizer::state_buffers), each element's bits (4 bytes for `f32`, 2 for `f16` and `bf16`) |
//! | end − 4 | 4 | CRC-32 (IEEE 802.3, as zlib's `crc32`) of every byte before it (`u32`) |
//!
//! The config of each optimizer is its checkpoint record, listed in the documentation of its
//! module: [`sgd`](crate::optim::sgd), [`momentum`](crate::optim::momentum),
//! [`adam`](crate::optim::adam), [`rmsprop`](crate::optim::rmsprop),
//! [`adagrad`](crate::optim::adagrad), [`lion`](crate::optim::lion),
//! [`lamb`](crate::optim::lamb), [`adamax`](crate::optim::adamax). A weight decay is a mode
//! flag (0 none, 1 L2, 2 decoupled) and a value; a momentum form is a code (0 heavy ball,
//! 1 learning rate in the velocity, 2 moving average).
//!
//! The format is the crate's: this module writes and reads it (the CRC in `crc.rs`, the
//! errors in [`CheckpointError`]); [`StatefulOptimizer`](crate::StatefulOptimizer) decides
//! what goes into it.
//!
//! Loading checks, in this order, and refuses the file at the first failure: the magic, the
//! length against the recorded length, the checksum, the version (after the checksum, so that
//! a damaged version field reads as damage: every version keeps the preamble and the checksum
//! where version 1 has them), then the content: the config is validated as the builders
//! validate it, in the precision the kernels use, and so are the gradient multiplier and the
//! clipping norm; the flags and option bits must be known; the step count must be below
//! `u64::MAX` (so that there is a next step) and 0 unless the state is allocated; the clipping
//! norm and the seed must be 0 when their option is off (so that saving what was loaded gives
//! the same bytes); the tensor lengths must add up to at most `isize::MAX / 2` elements and
//! account for the payload exactly. Then that it fits the optimizer it is loaded into (the
//! same optimizer, as [`StatefulOptimizer::load`](crate::StatefulOptimizer::load) defines
//! it, the same state element type, the same tensor lengths if that optimizer already knows
//! its model's).

mod crc;

use crate::element::{DType, Element};
pub use crate::error::CheckpointError;
use crate::error::{finite, positive};
use crate::optim::registry::Optimizer;
use crate::rounding::Subnormals;
use crc::crc32;

/// The first eight bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"OPTKCKPT";
/// The version this crate writes and reads.
pub const VERSION: u32 = 1;

/// The size of the fixed part at the start: magic, version, length.
const PREAMBLE: usize = 8 + 4 + 8;
/// The checksum at the end.
const CHECKSUM: usize = 4;

/// A checkpoint's content but the state: what [`write`] writes before the state and [`parse`]
/// reads back.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Header {
    pub(crate) config: Optimizer,
    pub(crate) dtype: DType,
    /// Steps taken.
    pub(crate) steps: u64,
    /// The gradient multiplier.
    pub(crate) grad_scale: f64,
    /// Clipping by the global norm, if on.
    pub(crate) max_grad_norm: Option<f64>,
    /// Whether non-finite steps are skipped.
    pub(crate) skip_non_finite: bool,
    /// The stochastic-rounding seed, if on.
    pub(crate) seed: Option<u64>,
    /// The subnormal policy.
    pub(crate) subnormals: Subnormals,
    /// `None` when the state was not allocated.
    pub(crate) lengths: Option<Vec<usize>>,
    pub(crate) buffers_per_tensor: usize,
}

fn dtype_code(dtype: DType) -> u8 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    }
}

/// Option bits.
const CLIP: u8 = 1;
const SKIP: u8 = 2;
const ROUNDING: u8 = 4;
const ALLOCATED: u8 = 8;
/// Set only for [`Subnormals::Flush`], so that a checkpoint of the default policy has the
/// bytes it had before the policy existed (and a reader that predates it refuses a flushing
/// one, as an unknown bit).
const FLUSH: u8 = 16;

/// Writes a checkpoint: everything but the state, which `write_state` appends (exactly
/// `sum(lengths) * buffers_per_tensor * dtype.size()` bytes), then the checksum.
pub(crate) fn write(header: &Header, write_state: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let Header {
        config,
        dtype,
        steps,
        grad_scale,
        max_grad_norm,
        skip_non_finite,
        seed,
        subnormals,
        ref lengths,
        buffers_per_tensor,
    } = *header;
    let (code, nums, flags) = config.fields();
    let tensors = lengths.as_deref().unwrap_or(&[]);
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
    out.extend_from_slice(&steps.to_le_bytes());
    out.extend_from_slice(&grad_scale.to_bits().to_le_bytes());
    let mut bits = 0u8;
    if max_grad_norm.is_some() {
        bits |= CLIP;
    }
    if skip_non_finite {
        bits |= SKIP;
    }
    if seed.is_some() {
        bits |= ROUNDING;
    }
    if lengths.is_some() {
        bits |= ALLOCATED;
    }
    if subnormals == Subnormals::Flush {
        bits |= FLUSH;
    }
    out.push(bits);
    let max_norm = max_grad_norm.unwrap_or(0.0);
    out.extend_from_slice(&max_norm.to_bits().to_le_bytes());
    out.extend_from_slice(&seed.unwrap_or(0).to_le_bytes());
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

/// Appends an element's bits, little-endian, in its type's size.
pub(crate) fn put_element<E: Element>(x: E, out: &mut Vec<u8>) {
    let bits = x.to_bits32().to_le_bytes();
    out.extend_from_slice(&bits[..E::DTYPE.size()]);
}

/// An element from its little-endian bits (`bytes` has exactly its type's size).
pub(crate) fn get_element<E: Element>(bytes: &[u8]) -> E {
    let mut bits = [0u8; 4];
    bits[..bytes.len()].copy_from_slice(bytes);
    E::from_bits32(u32::from_le_bytes(bits))
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
pub(crate) fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), CheckpointError> {
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
    // After the checksum: every version keeps the preamble and the checksum at the end, so a
    // damaged version field reads as damage, not as a version from elsewhere.
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(CheckpointError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
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
    let config = Optimizer::from_fields(code, &nums, &flags)?;
    let steps = r.u64()?;
    if steps == u64::MAX {
        return Err(CheckpointError::Malformed {
            reason: "the step count is u64::MAX: there is no next step",
        });
    }
    let grad_scale = r.f64()?;
    // Validated as the setters validate (in the precision the kernels use).
    let invalid = |error| CheckpointError::InvalidConfig {
        error: Box::new(error),
    };
    finite("grad_scale", grad_scale).map_err(invalid)?;
    let bits = r.u8()?;
    if bits & !(CLIP | SKIP | ROUNDING | ALLOCATED | FLUSH) != 0 {
        return Err(CheckpointError::Malformed {
            reason: "unknown option bits are set",
        });
    }
    if steps > 0 && bits & ALLOCATED == 0 {
        return Err(CheckpointError::Malformed {
            reason: "steps were taken but no state is allocated",
        });
    }
    let max_norm = r.f64()?;
    let max_grad_norm = if bits & CLIP != 0 {
        positive("max_norm", max_norm).map_err(invalid)?;
        Some(max_norm)
    } else if max_norm.to_bits() != 0 {
        return Err(CheckpointError::Malformed {
            reason: "a clipping norm is given, but clipping is off (it must be 0)",
        });
    } else {
        None
    };
    let seed = r.u64()?;
    let seed = if bits & ROUNDING != 0 {
        Some(seed)
    } else if seed != 0 {
        return Err(CheckpointError::Malformed {
            reason: "a stochastic-rounding seed is given, but rounding is off (it must be 0)",
        });
    } else {
        None
    };
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
    let elements = lengths
        .iter()
        .try_fold(0usize, |acc, &len| acc.checked_add(len));
    // Weights of 2-byte elements at the least, in one address space: for an optimizer without
    // state (whose lengths the payload does not bound) a larger model could never be stepped.
    if elements.is_none_or(|n| n > isize::MAX as usize / 2) {
        return Err(CheckpointError::Malformed {
            reason: "the tensor lengths add up to more elements than memory can hold",
        });
    }
    let payload = elements
        .and_then(|n| n.checked_mul(buffers_per_tensor))
        .and_then(|n| n.checked_mul(dtype.size()));
    if payload != Some(r.bytes.len()) {
        return Err(CheckpointError::Malformed {
            reason: "the tensor lengths do not account for the size of the state",
        });
    }
    let header = Header {
        config,
        dtype,
        steps,
        grad_scale,
        max_grad_norm,
        skip_non_finite: bits & SKIP != 0,
        seed,
        subnormals: if bits & FLUSH != 0 {
            Subnormals::Flush
        } else {
            Subnormals::Keep
        },
        lengths: (bits & ALLOCATED != 0).then_some(lengths),
        buffers_per_tensor,
    };
    Ok((header, r.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::WeightDecay;
    use crate::optim::adadelta::Adadelta;
    use crate::optim::adagrad::Adagrad;
    use crate::optim::adam::{Adam, EpsilonPlacement};
    use crate::optim::adamax::Adamax;
    use crate::optim::ademamix::Ademamix;
    use crate::optim::adopt::Adopt;
    use crate::optim::asgd::Asgd;
    use crate::optim::lamb::Lamb;
    use crate::optim::lion::Lion;
    use crate::optim::momentum::{Momentum, MomentumForm};
    use crate::optim::nadam::Nadam;
    use crate::optim::radam::Radam;
    use crate::optim::rmsprop::Rmsprop;
    use crate::optim::rprop::Rprop;
    use crate::optim::schedulefree::{ScheduleFreeAdamw, ScheduleFreeSgd};
    use crate::optim::sgd::Sgd;

    /// A negative zero where a field's zero means "none" is not read as none (which would
    /// save other bytes than were loaded): ASGD keeps an L2 decay of -0, AdEMAMix refuses a
    /// warm-up of -0 (a fuzzer found the latter).
    #[test]
    fn negative_zero_fields_read_back_as_written() {
        let asgd: Optimizer = Asgd::builder(0.01).build().unwrap().into();
        let (code, mut nums, flags) = asgd.fields();
        nums[4] = -0.0;
        let loaded = Optimizer::from_fields(code, &nums, &flags).unwrap();
        let (_, again, _) = loaded.fields();
        assert_eq!(again[4].to_bits(), (-0.0f64).to_bits());
        let ademamix: Optimizer = Ademamix::builder(1e-3).build().unwrap().into();
        let (code, mut nums, flags) = ademamix.fields();
        assert_eq!(nums[5].to_bits(), 0);
        nums[5] = -0.0;
        assert!(Optimizer::from_fields(code, &nums, &flags).is_err());
        // A schedule-free warm-up is a whole number of steps, written without a sign.
        let sf: Optimizer = ScheduleFreeSgd::builder(0.1).build().unwrap().into();
        let (code, mut nums, flags) = sf.fields();
        for bad in [-0.0, 1.5, -1.0, f64::NAN, 1e300] {
            nums[2] = bad;
            assert!(
                Optimizer::from_fields(code, &nums, &flags).is_err(),
                "{bad}"
            );
        }
        nums[2] = 7.0;
        let loaded = Optimizer::from_fields(code, &nums, &flags).unwrap();
        assert!(matches!(loaded, Optimizer::ScheduleFreeSgd(c) if c.warmup_steps() == 7));
    }

    #[test]
    fn every_config_round_trips() {
        let configs: Vec<Optimizer> = vec![
            Sgd::builder(0.1)
                .weight_decay(WeightDecay::L2(1e-4))
                .maximize(true)
                .build()
                .unwrap()
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
                .weight_decay(WeightDecay::Decoupled(0.1))
                .build()
                .unwrap()
                .into(),
            Lamb::builder(1e-2)
                .weight_decay(WeightDecay::Decoupled(0.05))
                .max_grad_norm(None)
                .trust_clip(true)
                .always_adapt(true)
                .build()
                .unwrap()
                .into(),
            Lamb::builder(1e-2).build().unwrap().into(),
            Lamb::builder(1e-2)
                .weight_decay(WeightDecay::None)
                .build()
                .unwrap()
                .into(),
            Adamax::builder(2e-3)
                .betas(0.8, 0.99)
                .eps(1e-7)
                .weight_decay(WeightDecay::L2(0.01))
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Adadelta::builder(0.5)
                .rho(0.95)
                .eps(1e-5)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Nadam::builder(2e-3)
                .betas(0.8, 0.99)
                .eps(1e-7)
                .momentum_decay(0.01)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Radam::builder(1e-3)
                .betas(0.85, 0.995)
                .eps(1e-6)
                .weight_decay(WeightDecay::L2(0.01))
                .build()
                .unwrap()
                .into(),
            Rprop::builder(0.02)
                .etas(0.3, 1.5)
                .step_sizes(1e-5, 0.5)
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Asgd::builder(0.01)
                .lambd(1e-3)
                .alpha(0.6)
                .t0(100.0)
                .weight_decay(WeightDecay::L2(1e-4))
                .build()
                .unwrap()
                .into(),
            Asgd::builder(0.01).build().unwrap().into(),
            Adopt::builder(1e-3)
                .betas(0.8, 0.999)
                .eps(1e-7)
                .clip(false)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            Ademamix::builder(1e-3)
                .betas(0.85, 0.99)
                .beta3(0.999)
                .alpha(8.0)
                .t_alpha_beta3(Some(1000.0))
                .eps(1e-7)
                .weight_decay(WeightDecay::L2(0.01))
                .build()
                .unwrap()
                .into(),
            Ademamix::builder(1e-3).build().unwrap().into(),
            ScheduleFreeAdamw::builder(2.5e-3)
                .betas(0.95, 0.99)
                .eps(1e-7)
                .warmup_steps(1000)
                .r(0.5)
                .weight_lr_power(1.5)
                .weight_decay(WeightDecay::Decoupled(0.01))
                .maximize(true)
                .build()
                .unwrap()
                .into(),
            ScheduleFreeSgd::builder(0.5)
                .momentum(0.8)
                .warmup_steps(3)
                .weight_decay(WeightDecay::L2(1e-4))
                .build()
                .unwrap()
                .into(),
        ];
        for config in configs {
            let (code, nums, flags) = config.fields();
            assert_eq!(code, config.code());
            assert_eq!(
                Optimizer::from_fields(code, &nums, &flags),
                Ok(config),
                "{config:?}"
            );
        }
    }
}
