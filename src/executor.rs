//! [`Executor`]: which backend runs a call, and how it is split across threads.

use crate::arch::Isa;
use crate::element::Element;
use crate::error::same_len;
use crate::parallel::{Split, for_each_chunk, for_each_chunk_many};
use crate::reduce::{blocks, pairwise_sum};
use crate::rounding::StreamKey;
use crate::stream::{Buffers, Convert, Elementwise, SquareSums, Update};
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
    grad_scale: f64,
    rounding: Option<StochasticRounding>,
}

/// Stochastic rounding of bf16 and f16 weights (see [`crate::rounding`]): the seed of the random
/// stream, and the global index of the first element of a single-tensor call (a multi-tensor
/// call numbers its tensors' elements one after the other from there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StochasticRounding {
    /// The seed of the random stream.
    pub seed: u64,
    /// The global index of the first element.
    pub index_base: u64,
}

/// The result of [`Executor::grad_norm`]: the L2 norm of a set of gradients, computed the same
/// way (and with the same bits) on every backend, vector width, chunking and thread count.
///
/// The fixed blocking that makes it so:
///
/// - A buffer is cut into blocks of 2048 elements from its start (the last may be shorter).
///   Chunks handed to threads start on block boundaries.
/// - Within a block, element `j` is added to accumulator `j % 16` in `f64`, in order: sixteen
///   "virtual lanes" whatever the backend's real width. The square of an `f32` is exact in
///   `f64`, so each step is one correctly rounded addition.
/// - A block's sum is the pairwise sum of its sixteen accumulators; a buffer's sum is the
///   pairwise sum of its block sums, in block order; a set of buffers is the pairwise sum of
///   their sums, in their order (pairwise: halve at `len / 2`, sum each half, add).
///
/// The error is below `(128 + log2(n)) * 2^-53` of the sum of squares for `n` elements, far
/// below what matters for clipping; the sum of squares of finite `f32` values cannot overflow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradNorm {
    sum_of_squares: f64,
}

impl GradNorm {
    /// The L2 norm (infinite or NaN when a gradient value is).
    pub fn norm(&self) -> f64 {
        self.sum_of_squares.sqrt()
    }

    /// The sum of the squares of every value.
    pub fn sum_of_squares(&self) -> f64 {
        self.sum_of_squares
    }

    /// Whether every value was finite (the sum of squares of finite `f32` values cannot
    /// overflow an `f64`, so this is exactly "no infinity and no NaN").
    pub fn is_finite(&self) -> bool {
        self.sum_of_squares.is_finite()
    }

    /// PyTorch's clipping coefficient for `clip_grad_norm_(max_norm)`:
    /// `min(1, max_norm / (norm + 1e-6))`.
    pub fn clip_coefficient(&self, max_norm: f64) -> f64 {
        clip_coefficient(self.norm(), max_norm)
    }
}

/// PyTorch's clipping coefficient for a gradient norm `norm`: `min(1, max_norm / (norm + 1e-6))`.
pub(crate) fn clip_coefficient(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
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
            grad_scale: 1.0,
            rounding: None,
        })
    }

    /// The same executor with another thread policy.
    pub fn threads(self, threads: Threads) -> Executor {
        Executor { threads, ..self }
    }

    /// The same executor, multiplying every gradient value by `scale` as it is read (the
    /// inverse loss scale times a clipping coefficient, say): the gradient buffers are not
    /// written. The multiplier is rounded once to `f32` (with the sign of `maximize` folded
    /// in). Fails if `scale` is not finite.
    pub fn grad_scale(self, scale: f64) -> Result<Executor, Error> {
        if scale.is_finite() {
            Ok(Executor {
                grad_scale: scale,
                ..self
            })
        } else {
            Err(Error::InvalidHyperparameter {
                name: "grad_scale",
                value: scale,
                requirement: "finite",
            })
        }
    }

    /// The gradient multiplier (1 unless set with [`Executor::grad_scale`]).
    pub fn gradient_multiplier(&self) -> f64 {
        self.grad_scale
    }

    /// The same executor, storing bf16 and f16 weights (and model copies) with stochastic
    /// rounding (`Some`) or with round-to-nearest-even (`None`, the default). The random bits
    /// depend on the seed, the step and each element's index only.
    pub fn stochastic_rounding(self, rounding: Option<StochasticRounding>) -> Executor {
        Executor { rounding, ..self }
    }

    /// The stochastic rounding in use, if any.
    pub fn rounding(&self) -> Option<StochasticRounding> {
        self.rounding
    }

    /// The L2 norm of all of `grads` together, and whether any value is infinite or NaN: one
    /// read pass, split across threads, with the same bits on every backend, vector width,
    /// chunking and thread count (see [`GradNorm`] for the fixed blocking).
    ///
    /// ```
    /// use optkern::{Executor, bf16};
    ///
    /// let (a, b) = (vec![3.0f32; 100], vec![4.0f32; 100]);
    /// let exec = Executor::new()?;
    /// let norm = exec.grad_norm(&[&a[..], &b[..]]);
    /// assert_eq!(norm.norm(), 50.0);
    /// assert!(norm.is_finite());
    /// assert!(!exec.grad_norm(&[&[bf16::ONE, bf16::NAN][..]]).is_finite());
    /// # Ok::<(), optkern::Error>(())
    /// ```
    pub fn grad_norm<G: Element>(&self, grads: &[&[G]]) -> GradNorm {
        let mut sums: Vec<Vec<f64>> = grads.iter().map(|g| vec![0.0; blocks(g.len())]).collect();
        let items: Vec<SquareSums<'_, G>> = grads
            .iter()
            .zip(&mut sums)
            .map(|(g, s)| SquareSums { g, sums: s })
            .collect();
        let isa = self.isa;
        for_each_chunk_many(items, self.threads, &|chunk| isa.run(chunk));
        let per_tensor: Vec<f64> = sums.iter().map(|s| pairwise_sum(s)).collect();
        GradNorm {
            sum_of_squares: pairwise_sum(&per_tensor),
        }
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

    /// The stream key of stochastic rounding at `step`, if it is on.
    pub(crate) fn rounding_key(&self, step: u64) -> Option<StreamKey> {
        self.rounding.map(|r| StreamKey::new(r.seed, step))
    }

    /// Runs an elementwise update over buffers whose lengths the caller has checked; one tensor.
    pub(crate) fn run_elementwise<U, W, T, G, C, const N: usize, const R: usize>(
        &self,
        update: U,
        mut buffers: Buffers<'_, W, T, G, C, N, R>,
        step: u64,
    ) where
        U: Update<N, R>,
        W: Element,
        T: Element,
        G: Element,
        C: Element,
    {
        let isa = self.isa;
        buffers.index = self.rounding.map_or(0, |r| r.index_base);
        let kernel = Elementwise {
            update,
            buffers,
            rounding: self.rounding_key(step),
        };
        for_each_chunk(kernel, self.threads, &|kernel| isa.run(kernel));
    }

    /// Runs elementwise kernels over many tensors in one parallel region. Each kernel's
    /// buffers get their global index (for stochastic rounding) here, one tensor after the
    /// other.
    pub(crate) fn run_elementwise_many<U, W, T, G, C, const N: usize, const R: usize>(
        &self,
        mut kernels: Vec<Elementwise<'_, U, W, T, G, C, N, R>>,
        step: u64,
    ) where
        U: Update<N, R>,
        W: Element,
        T: Element,
        G: Element,
        C: Element,
    {
        let isa = self.isa;
        let mut index = self.rounding.map_or(0, |r| r.index_base);
        let key = self.rounding_key(step);
        for kernel in &mut kernels {
            kernel.buffers.index = index;
            kernel.rounding = key;
            index += kernel.len() as u64;
        }
        for_each_chunk_many(kernels, self.threads, &|kernel| isa.run(kernel));
    }
}

/// The default executor, for the free functions; panics with the error's message if
/// `OPTKERN_BACKEND` is invalid.
pub(crate) fn default_executor() -> Executor {
    Executor::new().unwrap_or_else(|e| panic!("optkern: {e}"))
}
