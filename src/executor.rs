//! [`Executor`]: which backend runs a call, and how it is split across threads.

use crate::arch::Isa;
use crate::element::Element;
use crate::error::same_len;
use crate::parallel::for_each_chunk;
use crate::stream::{Buffers, Convert, Elementwise, Update};
use crate::{Backend, Error};

/// How a call is spread over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Everything runs on the calling thread.
    Sequential,
    /// Buffers of at least `min_len` elements are split into chunks of at least `min_chunk`
    /// elements (rounded up to a multiple of 64) and run on the current rayon pool: the global
    /// pool, or the one a caller entered with `pool.install(..)`. Smaller buffers run on the
    /// calling thread, where spawning would cost more than it saves.
    Parallel {
        /// Below this many elements, the call stays on the calling thread.
        min_len: usize,
        /// No chunk is smaller than this many elements (except the last one).
        min_chunk: usize,
    },
}

impl Threads {
    /// The default threshold: below this many elements a call stays on the calling thread.
    pub const DEFAULT_MIN_LEN: usize = 1 << 16;
    /// The default smallest chunk handed to a thread.
    pub const DEFAULT_MIN_CHUNK: usize = 1 << 14;

    /// Parallel with the default thresholds.
    pub const fn parallel() -> Threads {
        Threads::Parallel {
            min_len: Self::DEFAULT_MIN_LEN,
            min_chunk: Self::DEFAULT_MIN_CHUNK,
        }
    }
}

impl Default for Threads {
    fn default() -> Self {
        Threads::parallel()
    }
}

/// Runs the kernels on a chosen backend with a chosen thread policy.
///
/// The free functions of the crate (`momentum_step_f32`, ...) use `Executor::new()`: the
/// default backend (see [`Backend::detect`]) and [`Threads::parallel`]. Build one yourself to
/// pin a backend (to compare targets, or to test), or to run sequentially:
///
/// ```
/// use optkern::{Backend, Executor, Momentum, Threads};
///
/// let exec = Executor::with_backend(Backend::Scalar)?.threads(Threads::Sequential);
/// let config = Momentum::heavy_ball(0.1, 0.9).build()?;
/// let (mut w, mut v, g) = (vec![1.0f32; 100], vec![0.0f32; 100], vec![0.5f32; 100]);
/// exec.momentum_step(&mut w, &mut v, &g, &config, 1)?;
/// assert_eq!(w[0], 1.0 - 0.1 * 0.5);
/// # Ok::<(), optkern::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Executor {
    backend: Backend,
    isa: Isa,
    threads: Threads,
}

impl Executor {
    /// The default backend ([`Backend::detect`], which honours `OPTKERN_BACKEND`) with the
    /// default thread policy.
    pub fn new() -> Result<Executor, Error> {
        Executor::with_backend(Backend::detect()?)
    }

    /// A chosen backend, with the default thread policy. Fails if the CPU cannot run it.
    pub fn with_backend(backend: Backend) -> Result<Executor, Error> {
        let isa = backend.isa().ok_or(Error::BackendUnavailable {
            backend,
            source: "explicit choice",
        })?;
        Ok(Executor {
            backend,
            isa,
            threads: Threads::default(),
        })
    }

    /// The same executor with another thread policy.
    pub fn threads(self, threads: Threads) -> Executor {
        Executor { threads, ..self }
    }

    /// The backend that runs the kernels.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The thread policy.
    pub fn thread_policy(&self) -> Threads {
        self.threads
    }

    /// Converts `src` into `dst`, element by element: widening to `f32` is exact, narrowing
    /// rounds to nearest even (see [`crate::element`]); the same bits on every backend.
    ///
    /// ```
    /// use optkern::{Executor, bf16};
    ///
    /// let src = [1.0f32, 1.00390625, 3.0e38];
    /// let mut dst = [bf16::ZERO; 3];
    /// Executor::new()?.convert(&src, &mut dst)?;
    /// assert_eq!(dst, [bf16::from_f32(1.0), bf16::from_f32(1.0), bf16::from_f32(3.0e38)]);
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn convert<A: Element, B: Element>(&self, src: &[A], dst: &mut [B]) -> Result<(), Error> {
        same_len("convert", "destination", dst.len(), src.len())?;
        let isa = self.isa;
        for_each_chunk(Convert { src, dst }, self.threads, &|chunk| isa.run(chunk));
        Ok(())
    }

    /// Runs an elementwise update over buffers whose lengths the caller has checked.
    pub(crate) fn run_elementwise<U, W, T, G, const N: usize>(
        &self,
        update: U,
        buffers: Buffers<'_, W, T, G, N>,
    ) where
        U: Update<N>,
        W: Element,
        T: Element,
        G: Element,
    {
        let isa = self.isa;
        for_each_chunk(buffers, self.threads, &|buffers| {
            isa.run(Elementwise { update, buffers })
        });
    }
}

/// The default executor, for the free functions; panics with the error's message if
/// `OPTKERN_BACKEND` is invalid.
pub(crate) fn default_executor() -> Executor {
    Executor::new().unwrap_or_else(|e| panic!("optkern: {e}"))
}
