//! The kernel driver: the one loop every kernel runs, and the [`Context`] that runs it on a
//! backend across threads.
//!
//! Every kernel (an optimizer's elementwise [`Update`], the conversions, the gradient norm's
//! sums of squares) is one `Step` applied by the one `walk`: it goes over the buffers a vector
//! at a time, widening what it loads to `f32` lanes and narrowing what it stores.
//!
//! The tail is handled in one place. The last `len % lanes` elements go through the same step
//! as a full vector, with loads and stores (`load_span`, `store_span`) that copy the real
//! elements into a zero-padded vector on the stack and only the real elements back. So a tail
//! gets exactly the bits a full vector would give it, on every backend, and a result never
//! depends on where a buffer (or a chunk of it) ends.

// The state buffers are `N` parallel arrays (pointers, loaded vectors, stack tails): indexing
// them together by `k` reads more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use crate::arch::{Isa, Kernel, Lanes};
use crate::element::{DType, Element};
use crate::error::{Error, same_len};
use crate::parallel::{Split, Threads, for_each_chunk, for_each_chunk_many};
use crate::reduce::{BLOCK, GradNorm, SumSquares, blocks, pairwise_sum};
use crate::rounding::{
    StochasticRounding, StreamKey, Subnormals, flush_subnormals, lane_bits, onto_bf16_grid,
    onto_f16_grid,
};

/// The widest vector of any backend, in `f32` lanes.
pub(crate) const MAX_LANES: usize = 16;

/// Loads one vector of `E`s as `f32` lanes.
///
/// # Safety
/// `src` must be valid for reading `S::F32_LANES` elements, and the call must be reached
/// from [`crate::arch::Isa::run`].
#[inline(always)]
pub(crate) unsafe fn load<S: Lanes, E: Element>(simd: S, src: *const E) -> S::f32s {
    // SAFETY: forwarded; `f16` and `bf16` are `repr(transparent)` over `u16`.
    unsafe {
        match E::DTYPE {
            DType::F32 => simd.load_f32(src.cast()),
            DType::F16 => simd.load_f16(src.cast()),
            DType::BF16 => simd.load_bf16(src.cast()),
        }
    }
}

/// Narrows one vector of `f32` lanes to `E`s and stores it.
///
/// # Safety
/// As for [`load`], for writes.
#[inline(always)]
pub(crate) unsafe fn store<S: Lanes, E: Element>(simd: S, dst: *mut E, values: S::f32s) {
    // SAFETY: forwarded; `f16` and `bf16` are `repr(transparent)` over `u16`.
    unsafe {
        match E::DTYPE {
            DType::F32 => simd.store_f32(dst.cast(), values),
            DType::F16 => simd.store_f16(dst.cast(), values),
            DType::BF16 => simd.store_bf16(dst.cast(), values),
        }
    }
}

/// The per-element update of an optimizer, written once for every backend.
///
/// `N` is the number of state buffers. The update receives the weights, the state and the
/// gradient widened to `f32` lanes, and returns the new weights and state, and `R` vectors
/// whose squares the driver sums per block (see [`crate::reduce`]; LAMB's norms). Its scalar
/// coefficients are fields of `self`, computed once per call by the optimizer's config, so that
/// every backend (and every chunk) uses the same ones.
pub(crate) trait Update<const N: usize, const R: usize>: Copy + Send + Sync {
    /// Whether the driver stores the returned weights (LAMB's first pass only reads them).
    const WRITES_WEIGHTS: bool = true;
    /// Whether the driver stores the returned state (LAMB's second pass only reads it).
    const WRITES_STATE: bool = true;
    /// Whether the update uses the gradient (if not, it receives zeros and nothing is read).
    const READS_GRADIENT: bool = true;

    /// Must be `#[inline(always)]`: it runs inside a backend's target-feature context.
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        state: [S::f32s; N],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; N], [S::f32s; R]);
}

/// One tensor of a multi-tensor step: its weights, its state buffers (in the order
/// [`Optimizer::state_buffers`](crate::Optimizer::state_buffers) names them), its gradient, and
/// optionally a model copy that receives the new weights in another element type (`C`).
///
/// ```
/// use optkern::{TensorStep, bf16};
///
/// // f32 master weights with Adam's two f32 moments, a bf16 gradient and a bf16 model copy.
/// let (mut w, mut m, mut v) = (vec![0.0f32; 8], vec![0.0f32; 8], vec![0.0f32; 8]);
/// let (g, mut model) = (vec![bf16::ONE; 8], vec![bf16::ZERO; 8]);
/// let tensor = TensorStep::new(&mut w, vec![&mut m[..], &mut v[..]], &g).model_copy(&mut model);
/// # let _ = tensor;
/// ```
#[derive(Debug)]
pub struct TensorStep<'a, W, T, G, C = W> {
    /// The weights (read and written).
    pub weights: &'a mut [W],
    /// The optimizer's state buffers, as
    /// [`Optimizer::state_buffers`](crate::Optimizer::state_buffers) lists them.
    pub state: Vec<&'a mut [T]>,
    /// The gradient (only read).
    pub grad: &'a [G],
    /// A second copy of the new weights, in `C` (written only).
    pub model_copy: Option<&'a mut [C]>,
}

impl<'a, W, T, G> TensorStep<'a, W, T, G, W> {
    /// A tensor without a model copy.
    pub fn new(weights: &'a mut [W], state: Vec<&'a mut [T]>, grad: &'a [G]) -> Self {
        TensorStep {
            weights,
            state,
            grad,
            model_copy: None,
        }
    }
}

impl<'a, W, T, G, C> TensorStep<'a, W, T, G, C> {
    /// The same tensor, writing its new weights to `copy` too (rounded to `C`, stochastically
    /// when the executor says so).
    pub fn model_copy<D>(self, copy: &'a mut [D]) -> TensorStep<'a, W, T, G, D> {
        TensorStep {
            weights: self.weights,
            state: self.state,
            grad: self.grad,
            model_copy: Some(copy),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

impl<W: Element, T: Element, G: Element, C: Element> TensorStep<'_, W, T, G, C> {
    /// Checks the tensor against an optimizer's state buffers `names`: their number and every
    /// length.
    pub(crate) fn check(&self, call: &'static str, names: &[&'static str]) -> Result<(), Error> {
        if self.state.len() != names.len() {
            return Err(Error::StateBufferCount {
                call,
                expected: names.len(),
                given: self.state.len(),
            });
        }
        let n = self.weights.len();
        for (s, name) in self.state.iter().zip(names) {
            same_len(call, name, s.len(), n)?;
        }
        same_len(call, "gradient", self.grad.len(), n)?;
        if let Some(c) = &self.model_copy {
            same_len(call, "model copy", c.len(), n)?;
        }
        Ok(())
    }

    /// The tensor's buffers for a kernel with `N` state buffers (checked before) and `R` sums.
    pub(crate) fn buffers<'s, const N: usize, const R: usize>(
        &'s mut self,
        with_copy: bool,
        sums: [&'s mut [f64]; R],
    ) -> Buffers<'s, W, T, G, C, N, R> {
        let mut state = self.state.iter_mut();
        Buffers {
            w: &mut *self.weights,
            state: core::array::from_fn(|_| &mut **state.next().expect("checked state count")),
            g: self.grad,
            copy: if with_copy {
                self.model_copy.as_deref_mut()
            } else {
                None
            },
            index: 0,
            sums,
        }
    }
}

/// How a call runs: on which backend, across which threads, with which gradient multiplier and
/// rounding. The [`Executor`](crate::Executor) holds one; the optimizers run their kernels
/// through it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context {
    pub(crate) isa: Isa,
    pub(crate) threads: Threads,
    /// Multiplies every gradient value as it is read (finite: checked where it is set).
    pub(crate) grad_scale: f64,
    pub(crate) rounding: Option<StochasticRounding>,
    pub(crate) subnormals: Subnormals,
}

impl Context {
    /// The same context with another gradient multiplier (the caller has checked it).
    pub(crate) fn with_grad_scale(self, grad_scale: f64) -> Context {
        Context { grad_scale, ..self }
    }

    /// The stream key of stochastic rounding at `step`, if it is on.
    fn rounding_key(&self, step: u64) -> Option<StreamKey> {
        self.rounding.map(|r| StreamKey::new(r.seed, step))
    }

    /// Runs one elementwise update over each tensor of `tensors` (checked by the caller), in
    /// one parallel region; `R = 0`: no sums. Writes the model copies.
    pub(crate) fn elementwise<U, W, T, G, C, const N: usize>(
        &self,
        tensors: &mut [TensorStep<'_, W, T, G, C>],
        update: U,
        step: u64,
    ) where
        U: Update<N, 0>,
        W: Element,
        T: Element,
        G: Element,
        C: Element,
    {
        let kernels = tensors
            .iter_mut()
            .map(|t| Elementwise {
                update,
                buffers: t.buffers::<N, 0>(true, []),
                rounding: None,
                flush: false,
            })
            .collect();
        self.run_many(kernels, step);
    }

    /// Runs elementwise kernels over many tensors in one parallel region. Each kernel's
    /// buffers get their global index (for stochastic rounding) here, one tensor after the
    /// other.
    pub(crate) fn run_many<U, W, T, G, C, const N: usize, const R: usize>(
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
            kernel.flush = self.subnormals == Subnormals::Flush;
            index += kernel.len() as u64;
        }
        for_each_chunk_many(kernels, self.threads, &|kernel| isa.run(kernel));
    }

    /// The L2 norm of all of `grads` together (see [`GradNorm`] for the fixed blocking).
    pub(crate) fn grad_norm<G: Element>(&self, grads: &[&[G]]) -> GradNorm {
        let mut sums: Vec<Vec<f64>> = grads.iter().map(|g| vec![0.0; blocks(g.len())]).collect();
        let items: Vec<SquareSums<'_, G>> = grads
            .iter()
            .zip(&mut sums)
            .map(|(g, s)| SquareSums { g, sums: s })
            .collect();
        let isa = self.isa;
        for_each_chunk_many(items, self.threads, &|chunk| isa.run(chunk));
        let per_tensor: Vec<f64> = sums.iter().map(|s| pairwise_sum(s)).collect();
        GradNorm::from_sum_of_squares(pairwise_sum(&per_tensor))
    }

    /// Converts `src` into `dst` (of equal lengths, checked by the caller).
    pub(crate) fn convert<A: Element, B: Element>(&self, src: &[A], dst: &mut [B]) {
        let isa = self.isa;
        for_each_chunk(Convert { src, dst }, self.threads, &|chunk| isa.run(chunk));
    }
}

/// The buffers of one elementwise step (or a chunk of it), all of the same length: the weights
/// and `N` state buffers (read and written), the gradient (read), an optional second copy of
/// the new weights in another type (written: the model copy of f32 master weights), and `R`
/// outputs of one sum of squares per [`BLOCK`] elements.
pub(crate) struct Buffers<'a, W, T, G, C, const N: usize, const R: usize> {
    pub(crate) w: &'a mut [W],
    pub(crate) state: [&'a mut [T]; N],
    pub(crate) g: &'a [G],
    pub(crate) copy: Option<&'a mut [C]>,
    /// The global index of element 0, for stochastic rounding.
    pub(crate) index: u64,
    pub(crate) sums: [&'a mut [f64]; R],
}

impl<W: Element, T: Element, G: Element, C: Element, const N: usize, const R: usize> Split
    for Buffers<'_, W, T, G, C, N, R>
{
    fn len(&self) -> usize {
        self.w.len()
    }

    fn align(&self) -> usize {
        if R > 0 { BLOCK } else { crate::parallel::ALIGN }
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        debug_assert!(mid.is_multiple_of(self.align()));
        let (w_lo, w_hi) = self.w.split_at_mut(mid);
        let (g_lo, g_hi) = self.g.split_at(mid);
        let mut lo = self.state;
        let hi = core::array::from_fn(|k| {
            let (s_lo, s_hi) = core::mem::take(&mut lo[k]).split_at_mut(mid);
            lo[k] = s_lo;
            s_hi
        });
        let (copy_lo, copy_hi) = match self.copy {
            Some(c) => {
                let (a, b) = c.split_at_mut(mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let mut sums_lo = self.sums;
        let sums_hi = core::array::from_fn(|k| {
            let (a, b) = core::mem::take(&mut sums_lo[k]).split_at_mut(mid / BLOCK);
            sums_lo[k] = a;
            b
        });
        (
            Buffers {
                w: w_lo,
                state: lo,
                g: g_lo,
                copy: copy_lo,
                index: self.index,
                sums: sums_lo,
            },
            Buffers {
                w: w_hi,
                state: hi,
                g: g_hi,
                copy: copy_hi,
                index: self.index + mid as u64,
                sums: sums_hi,
            },
        )
    }
}

/// An [`Update`] applied to a set of [`Buffers`]: the kernel the backends run.
pub(crate) struct Elementwise<'a, U, W, T, G, C, const N: usize, const R: usize> {
    pub(crate) update: U,
    pub(crate) buffers: Buffers<'a, W, T, G, C, N, R>,
    /// `Some`: store bf16/f16 weights (and the copy) with stochastic rounding.
    pub(crate) rounding: Option<StreamKey>,
    /// [`Subnormals::Flush`]: flush what is read and what is stored (set by
    /// [`Context::run_many`]).
    pub(crate) flush: bool,
}

impl<U, W, T, G, C, const N: usize, const R: usize> crate::parallel::Split
    for Elementwise<'_, U, W, T, G, C, N, R>
where
    U: Copy + Send,
    W: Element,
    T: Element,
    G: Element,
    C: Element,
{
    fn len(&self) -> usize {
        self.buffers.len()
    }

    fn align(&self) -> usize {
        self.buffers.align()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (lo, hi) = self.buffers.split_at(mid);
        let (update, rounding, flush) = (self.update, self.rounding, self.flush);
        (
            Elementwise {
                update,
                buffers: lo,
                rounding,
                flush,
            },
            Elementwise {
                update,
                buffers: hi,
                rounding,
                flush,
            },
        )
    }
}

/// Where one vector of the walk lies: wholly inside the buffers, or over their last `rem`
/// elements (the tail, `0 < rem < lanes`).
#[derive(Clone, Copy)]
enum Span {
    Full,
    Tail(usize),
}

impl Span {
    /// The number of real elements in the vector.
    #[inline(always)]
    fn len(self, lanes: usize) -> usize {
        match self {
            Span::Full => lanes,
            Span::Tail(rem) => rem,
        }
    }
}

/// What a kernel does with one vector of the [`walk`].
trait Step {
    /// Processes the vector that starts at element `i`.
    ///
    /// # Safety
    /// The elements `i..i + span.len(S::F32_LANES)` lie inside every buffer of the kernel, and
    /// the call is reached from [`crate::arch::Isa::run`]. Must be `#[inline(always)]`: the
    /// walk calls it at two places, and inlining makes the full vectors' copy branch-free.
    unsafe fn at<S: Lanes>(&mut self, simd: S, i: usize, span: Span);
}

/// The one walk over `n` elements every kernel makes: each full vector in order, then the tail
/// (if any) once, through the same [`Step`]. What a step loads and stores goes through
/// [`load_span`] and [`store_span`], which give the tail's zero-padded stack copy.
///
/// # Safety
/// Every buffer of `kernel` holds `n` elements; reached from [`crate::arch::Isa::run`].
#[inline(always)]
unsafe fn walk<S: Lanes, K: Step>(simd: S, n: usize, kernel: &mut K) {
    let lanes = S::F32_LANES;
    let body = n - n % lanes;
    let mut i = 0;
    while i < body {
        // SAFETY: `i + lanes <= body <= n`, the length of every buffer.
        unsafe { kernel.at(simd, i, Span::Full) };
        i += lanes;
    }
    if body < n {
        // SAFETY: the tail `body..n` lies inside every buffer.
        unsafe { kernel.at(simd, body, Span::Tail(n - body)) };
    }
}

/// Loads the vector at `src`: a full vector straight from memory; a tail's `rem` elements
/// through a zero-padded copy on the stack.
///
/// # Safety
/// `src` is valid for reading `span.len(S::F32_LANES)` elements; reached from
/// [`crate::arch::Isa::run`].
#[inline(always)]
unsafe fn load_span<S: Lanes, E: Element>(simd: S, src: *const E, span: Span) -> S::f32s {
    // SAFETY: forwarded from the caller; the stack array holds MAX_LANES >= lanes elements.
    unsafe {
        match span {
            Span::Full => load(simd, src),
            Span::Tail(rem) => {
                let mut padded = [E::ZERO; MAX_LANES];
                core::ptr::copy_nonoverlapping(src, padded.as_mut_ptr(), rem);
                load(simd, padded.as_ptr())
            }
        }
    }
}

/// Stores the vector at `dst`: a full vector straight to memory; of a tail, only the `rem`
/// real elements (through a copy on the stack).
///
/// # Safety
/// As [`load_span`], for writes.
#[inline(always)]
unsafe fn store_span<S: Lanes, E: Element>(simd: S, dst: *mut E, values: S::f32s, span: Span) {
    // SAFETY: forwarded from the caller; the stack array holds MAX_LANES >= lanes elements.
    unsafe {
        match span {
            Span::Full => store(simd, dst, values),
            Span::Tail(rem) => {
                let mut padded = [E::ZERO; MAX_LANES];
                store(simd, padded.as_mut_ptr(), values);
                core::ptr::copy_nonoverlapping(padded.as_ptr(), dst, rem);
            }
        }
    }
}

/// `R` sums of squares, one per [`BLOCK`] of a walk over `n` elements, written to `sums` as
/// each block ends.
struct BlockSums<'a, const R: usize> {
    acc: [SumSquares; R],
    sums: [&'a mut [f64]; R],
    n: usize,
}

impl<'a, const R: usize> BlockSums<'a, R> {
    #[inline(always)]
    fn new(sums: [&'a mut [f64]; R], n: usize) -> Self {
        BlockSums {
            acc: [SumSquares::default(); R],
            sums,
            n,
        }
    }

    /// Adds the squares of the real elements of the vectors at `i`.
    #[inline(always)]
    fn add<S: Lanes>(&mut self, values: [S::f32s; R], i: usize, span: Span) {
        let end = i + span.len(S::F32_LANES);
        for r in 0..R {
            match span {
                Span::Full => self.acc[r].add::<S>(values[r], i % BLOCK),
                Span::Tail(rem) => self.acc[r].add_first::<S>(values[r], i % BLOCK, rem),
            }
            if end.is_multiple_of(BLOCK) || end == self.n {
                self.sums[r][(end - 1) / BLOCK] = self.acc[r].total();
                self.acc[r] = SumSquares::default();
            }
        }
    }
}

/// Stores weights, rounding stochastically onto a half-precision grid when asked.
///
/// # Safety
/// As [`store_span`].
#[inline(always)]
unsafe fn store_weights<S: Lanes, E: Element>(
    simd: S,
    dst: *mut E,
    values: S::f32s,
    span: Span,
    rounding: Option<StreamKey>,
    index: u64,
) {
    let values = match (E::DTYPE, rounding) {
        (DType::BF16, Some(key)) => onto_bf16_grid(simd, values, lane_bits(simd, key, index)),
        (DType::F16, Some(key)) => onto_f16_grid(simd, values, lane_bits(simd, key, index)),
        _ => values,
    };
    // SAFETY: forwarded from the caller.
    unsafe { store_span(simd, dst, values, span) }
}

/// An [`Elementwise`] kernel during its walk: the start of every buffer (`copy` is null
/// without a model copy) and the sums being made.
struct ElementwiseWalk<'a, U, W, T, G, C, const N: usize, const R: usize> {
    update: U,
    rounding: Option<StreamKey>,
    flush: bool,
    w: *mut W,
    state: [*mut T; N],
    g: *const G,
    copy: *mut C,
    index: u64,
    sums: BlockSums<'a, R>,
}

impl<U, W, T, G, C, const N: usize, const R: usize> Step
    for ElementwiseWalk<'_, U, W, T, G, C, N, R>
where
    U: Update<N, R>,
    W: Element,
    T: Element,
    G: Element,
    C: Element,
{
    #[inline(always)]
    unsafe fn at<S: Lanes>(&mut self, simd: S, i: usize, span: Span) {
        // SAFETY: the caller guarantees the span `i..` lies inside every buffer, the model
        // copy's too when it is there (`copy` is only offset and used when it is not null).
        let reduced = unsafe {
            let mut s = [simd.splat_f32s(0.0); N];
            for k in 0..N {
                s[k] = load_span(simd, self.state[k].add(i), span);
            }
            let mut g = if U::READS_GRADIENT {
                load_span(simd, self.g.add(i), span)
            } else {
                simd.splat_f32s(0.0)
            };
            let mut w = load_span(simd, self.w.add(i), span);
            if self.flush {
                w = flush_subnormals(simd, w);
                for k in 0..N {
                    s[k] = flush_subnormals(simd, s[k]);
                }
                g = flush_subnormals(simd, g);
            }
            let (mut w_new, mut s_new, reduced) = self.update.update(simd, w, s, g);
            if self.flush {
                w_new = flush_subnormals(simd, w_new);
                for k in 0..N {
                    s_new[k] = flush_subnormals(simd, s_new[k]);
                }
            }
            let index = self.index + i as u64;
            if U::WRITES_WEIGHTS {
                store_weights(simd, self.w.add(i), w_new, span, self.rounding, index);
                if !self.copy.is_null() {
                    store_weights(simd, self.copy.add(i), w_new, span, self.rounding, index);
                }
            }
            if U::WRITES_STATE {
                for k in 0..N {
                    store_span(simd, self.state[k].add(i), s_new[k], span);
                }
            }
            reduced
        };
        self.sums.add::<S>(reduced, i, span);
    }
}

impl<U, W, T, G, C, const N: usize, const R: usize> Kernel for Elementwise<'_, U, W, T, G, C, N, R>
where
    U: Update<N, R>,
    W: Element,
    T: Element,
    G: Element,
    C: Element,
{
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES && BLOCK.is_multiple_of(S::F32_LANES)) };
        let Buffers {
            w,
            state,
            g,
            copy,
            index,
            sums,
        } = self.buffers;
        let n = w.len();
        // The public calls check lengths first (and report them); this guards the pointer
        // arithmetic of the walk against a caller that did not, at the cost of a few
        // comparisons.
        assert!(
            g.len() == n
                && state.iter().all(|s| s.len() == n)
                && copy.as_ref().is_none_or(|c| c.len() == n)
                && sums.iter().all(|s| s.len() == blocks(n)),
            "buffers of unequal length"
        );
        let mut walker = ElementwiseWalk {
            update: self.update,
            rounding: self.rounding,
            flush: self.flush,
            w: w.as_mut_ptr(),
            state: [core::ptr::null_mut::<T>(); N],
            g: g.as_ptr(),
            copy: copy.map_or(core::ptr::null_mut(), |c| c.as_mut_ptr()),
            index,
            sums: BlockSums::new(sums, n),
        };
        for (k, s) in state.into_iter().enumerate() {
            walker.state[k] = s.as_mut_ptr();
        }
        // SAFETY: every buffer holds `n` elements (checked above); `run` is reached from
        // `Isa::run`.
        unsafe { walk(simd, n, &mut walker) };
    }
}

/// Converts a buffer of one element type into another (widening exactly, narrowing with
/// round-to-nearest-even), with the backend's conversions.
pub(crate) struct Convert<'a, A, B> {
    pub(crate) src: &'a [A],
    pub(crate) dst: &'a mut [B],
}

impl<A: Element, B: Element> Split for Convert<'_, A, B> {
    fn len(&self) -> usize {
        self.src.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (s_lo, s_hi) = self.src.split_at(mid);
        let (d_lo, d_hi) = self.dst.split_at_mut(mid);
        (
            Convert {
                src: s_lo,
                dst: d_lo,
            },
            Convert {
                src: s_hi,
                dst: d_hi,
            },
        )
    }
}

/// A [`Convert`] kernel during its walk.
struct ConvertWalk<A, B> {
    src: *const A,
    dst: *mut B,
}

impl<A: Element, B: Element> Step for ConvertWalk<A, B> {
    #[inline(always)]
    unsafe fn at<S: Lanes>(&mut self, simd: S, i: usize, span: Span) {
        // SAFETY: the caller guarantees the span `i..` lies inside both buffers.
        unsafe {
            let values = load_span(simd, self.src.add(i), span);
            store_span(simd, self.dst.add(i), values, span);
        }
    }
}

impl<A: Element, B: Element> Kernel for Convert<'_, A, B> {
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES) };
        let n = self.src.len();
        assert_eq!(self.dst.len(), n, "buffers of unequal length");
        let mut walker = ConvertWalk {
            src: self.src.as_ptr(),
            dst: self.dst.as_mut_ptr(),
        };
        // SAFETY: both buffers hold `n` elements; `run` is reached from `Isa::run`.
        unsafe { walk(simd, n, &mut walker) };
    }
}

/// The sum of squares of each [`BLOCK`] of a buffer (see [`crate::reduce`]): the gradient
/// norm's pass.
pub(crate) struct SquareSums<'a, G> {
    pub(crate) g: &'a [G],
    pub(crate) sums: &'a mut [f64],
}

impl<G: Element> Split for SquareSums<'_, G> {
    fn len(&self) -> usize {
        self.g.len()
    }

    fn align(&self) -> usize {
        BLOCK
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (g_lo, g_hi) = self.g.split_at(mid);
        let (s_lo, s_hi) = self.sums.split_at_mut(mid / BLOCK);
        (
            SquareSums {
                g: g_lo,
                sums: s_lo,
            },
            SquareSums {
                g: g_hi,
                sums: s_hi,
            },
        )
    }
}

/// A [`SquareSums`] kernel during its walk.
struct SquareSumsWalk<'a, G> {
    g: *const G,
    sums: BlockSums<'a, 1>,
}

impl<G: Element> Step for SquareSumsWalk<'_, G> {
    #[inline(always)]
    unsafe fn at<S: Lanes>(&mut self, simd: S, i: usize, span: Span) {
        // SAFETY: the caller guarantees the span `i..` lies inside the buffer.
        let values = unsafe { load_span(simd, self.g.add(i), span) };
        self.sums.add::<S>([values], i, span);
    }
}

impl<G: Element> Kernel for SquareSums<'_, G> {
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES && BLOCK.is_multiple_of(S::F32_LANES)) };
        let n = self.g.len();
        assert_eq!(self.sums.len(), blocks(n), "one sum per block");
        let mut walker = SquareSumsWalk {
            g: self.g.as_ptr(),
            sums: BlockSums::new([self.sums], n),
        };
        // SAFETY: the buffer holds `n` elements; `run` is reached from `Isa::run`.
        unsafe { walk(simd, n, &mut walker) };
    }
}

/// `values` rounded to `E` and widened back: what a store followed by a load gives.
///
/// # Safety
/// Must be reached from [`crate::arch::Isa::run`].
#[inline(always)]
pub(crate) unsafe fn round_trip<S: Lanes, E: Element>(simd: S, values: S::f32s) -> S::f32s {
    if E::DTYPE == DType::F32 {
        return values;
    }
    let mut buffer = [E::ZERO; MAX_LANES];
    // SAFETY: the stack array holds MAX_LANES >= lanes elements.
    unsafe {
        store(simd, buffer.as_mut_ptr(), values);
        load(simd, buffer.as_ptr())
    }
}
