//! Test data: values spanning every magnitude, in misaligned buffers.

use optkern::{AlignedBuffer, Element};

/// A small, fast, seedable generator (SplitMix64): enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// `10^e` for `e` uniform in [lo, hi), with a random sign.
    pub fn magnitude(&mut self, lo: f64, hi: f64) -> f64 {
        let sign = if self.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        sign * 10f64.powf(self.range(lo, hi))
    }

    /// A value of the kind optimizers meet, and the kinds that break kernels: mostly moderate
    /// magnitudes, with zeros of both signs, subnormals, tiny and huge values (1e-30..1e30),
    /// and (when `special`) infinities and NaNs.
    pub fn value(&mut self, special: bool) -> f32 {
        let pick = self.next_u64() % 100;
        match pick {
            0..=3 => 0.0,
            4..=5 => -0.0,
            6..=9 => f32::from_bits((self.next_u64() as u32) & 0x807F_FFFF), // subnormal
            10..=19 => self.magnitude(-30.0, 30.0) as f32,
            20 if special => f32::INFINITY,
            21 if special => f32::NEG_INFINITY,
            22 if special => f32::NAN,
            _ => self.magnitude(-4.0, 2.0) as f32,
        }
    }
}

/// A buffer of `len` elements starting `offset` elements past a cache line, filled by `f`.
pub struct Misaligned<E: Element> {
    storage: AlignedBuffer<E>,
    offset: usize,
    len: usize,
}

impl<E: Element> Misaligned<E> {
    pub fn new(len: usize, offset: usize, mut f: impl FnMut() -> f32) -> Self {
        Self::filled(len, offset, &mut f)
    }

    /// [`new`](Self::new) behind a `dyn` closure: compiled once per element type, not once per
    /// caller's closure.
    fn filled(len: usize, offset: usize, f: &mut dyn FnMut() -> f32) -> Self {
        let mut storage = optkern::zeroed::<E>(len + offset);
        for x in &mut storage[offset..] {
            *x = E::from_f32(f());
        }
        Misaligned {
            storage,
            offset,
            len,
        }
    }

    pub fn slice(&self) -> &[E] {
        &self.storage[self.offset..self.offset + self.len]
    }

    pub fn slice_mut(&mut self) -> &mut [E] {
        &mut self.storage[self.offset..self.offset + self.len]
    }

    pub fn copy(&self) -> Self {
        let mut storage = optkern::zeroed::<E>(self.storage.len());
        storage.copy_from_slice(&self.storage);
        Misaligned {
            storage,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// The bits of a buffer's values widened to f32 (exact), with every NaN mapped to one pattern.
pub fn bits<E: Element>(values: &[E]) -> Vec<u32> {
    values
        .iter()
        .map(|x| {
            let x = x.to_f32();
            if x.is_nan() { 0x7FC0_0000 } else { x.to_bits() }
        })
        .collect()
}
