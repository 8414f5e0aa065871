//! The bit-exactness harness: one optimizer call run on the scalar oracle and on every other
//! backend, sequentially and split into 64-element chunks on 1 and 4 threads, with every
//! buffer compared bit for bit (NaN payloads aside, see `data::bits`).

use optkern::{Backend, Element, Error, Executor};
use proptest::test_runner::TestCaseError;

use super::data::{Misaligned, Rng};
use super::{backends, pools, same_bits, sequential, split_finely};

/// The buffers of one call: weights, state buffers, gradient, each starting at its own
/// offset past a cache line.
pub struct Bufs<W: Element, T: Element, G: Element> {
    pub w: Misaligned<W>,
    pub s: Vec<Misaligned<T>>,
    pub g: Misaligned<G>,
}

impl<W: Element, T: Element, G: Element> Bufs<W, T, G> {
    /// `len` elements of values of every magnitude (and infinities and NaNs when `special`).
    /// State buffers marked in `non_negative` hold magnitudes only (second moments, sums).
    pub fn new(
        len: usize,
        offsets: [usize; 3],
        non_negative: &[bool],
        seed: u64,
        special: bool,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let w = Misaligned::new(len, offsets[0], || rng.value(special));
        let s = non_negative
            .iter()
            .enumerate()
            .map(|(k, &nonneg)| {
                Misaligned::new(len, (offsets[1] + 5 * k) % 16, || {
                    let x = rng.value(special);
                    if nonneg { x.abs() } else { x }
                })
            })
            .collect();
        let g = Misaligned::new(len, offsets[2], || rng.value(special));
        Bufs { w, s, g }
    }

    pub fn copy(&self) -> Self {
        Bufs {
            w: self.w.copy(),
            s: self.s.iter().map(Misaligned::copy).collect(),
            g: self.g.copy(),
        }
    }

    /// The weights, the state buffers and the gradient, as slices.
    pub fn parts(&mut self) -> (&mut [W], Vec<&mut [T]>, &[G]) {
        let Bufs { w, s, g } = self;
        (
            w.slice_mut(),
            s.iter_mut().map(Misaligned::slice_mut).collect(),
            g.slice(),
        )
    }

    fn same_as(&self, oracle: &Self) -> Result<(), String> {
        same_bits("weights", self.w.slice(), oracle.w.slice())?;
        for (k, (a, b)) in self.s.iter().zip(&oracle.s).enumerate() {
            same_bits(&format!("state buffer {k}"), a.slice(), b.slice())?;
        }
        same_bits("gradient (read only)", self.g.slice(), oracle.g.slice())
    }
}

/// Runs `call` on the scalar oracle, then on every backend sequentially and split on 1 and 4
/// threads, and requires the same bits everywhere.
pub fn matches_oracle<W, T, G, F>(
    what: &str,
    initial: &Bufs<W, T, G>,
    call: F,
) -> Result<(), TestCaseError>
where
    W: Element,
    T: Element,
    G: Element,
    F: Fn(&Executor, &mut Bufs<W, T, G>) -> Result<(), Error> + Sync,
{
    let types = format!("{what}; w {}, state {}, g {}", W::DTYPE, T::DTYPE, G::DTYPE);
    let mut oracle = initial.copy();
    call(&sequential(Backend::Scalar), &mut oracle)
        .map_err(|e| TestCaseError::fail(format!("{types}: {e}")))?;
    for backend in backends() {
        let mut runs = vec![("sequential".to_owned(), sequential(backend), None)];
        for (name, pool) in pools() {
            runs.push((format!("split, {name}"), split_finely(backend), Some(pool)));
        }
        for (how, exec, pool) in runs {
            let mut bufs = initial.copy();
            let result = match pool {
                Some(pool) => pool.install(|| call(&exec, &mut bufs)),
                None => call(&exec, &mut bufs),
            };
            result.map_err(|e| TestCaseError::fail(format!("{backend} ({how}; {types}): {e}")))?;
            bufs.same_as(&oracle)
                .map_err(|e| TestCaseError::fail(format!("{backend} ({how}; {types}): {e}")))?;
        }
    }
    Ok(())
}
