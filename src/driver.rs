//! The kernel driver: the one loop every elementwise kernel runs, and the [`Context`] that runs
//! it on a backend across threads.
//!
//! The loop walks the buffers a vector at a time, widening what it loads to `f32` lanes,
//! applies an optimizer's [`Update`] and narrows what it stores.
//!
//! The last `len % lanes` elements (the tail) are copied into a zero-padded vector on the
//! stack, go through the very same update, and only the real elements are copied back. So a
//! tail gets exactly the bits a full vector would give it, on every backend, and a result never
//! depends on where a buffer (or a chunk of it) ends.

// The state buffers are `N` parallel arrays (pointers, loaded vectors, stack tails): indexing
// them together by `k` reads more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

use crate::arch::{Isa, Kernel, Lanes};
use crate::element::{DType, Element};
use crate::error::{Error, same_len};
use crate::parallel::{Split, Threads, for_each_chunk, for_each_chunk_many};
use crate::reduce::{BLOCK, GradNorm, SumSquares, blocks, pairwise_sum};
use crate::rounding::{StochasticRounding, StreamKey, lane_bits, onto_bf16_grid, onto_f16_grid};

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
        let (update, rounding) = (self.update, self.rounding);
        (
            Elementwise {
                update,
                buffers: lo,
                rounding,
            },
            Elementwise {
                update,
                buffers: hi,
                rounding,
            },
        )
    }
}

/// Stores weights, rounding stochastically onto a half-precision grid when asked.
///
/// # Safety
/// As [`store`].
#[inline(always)]
unsafe fn store_weights<S: Lanes, E: Element>(
    simd: S,
    dst: *mut E,
    values: S::f32s,
    rounding: Option<StreamKey>,
    index: u64,
) {
    let values = match (E::DTYPE, rounding) {
        (DType::BF16, Some(key)) => onto_bf16_grid(simd, values, lane_bits(simd, key, index)),
        (DType::F16, Some(key)) => onto_f16_grid(simd, values, lane_bits(simd, key, index)),
        _ => values,
    };
    // SAFETY: forwarded from the caller.
    unsafe { store(simd, dst, values) }
}

/// Pointers to one vector's worth of every buffer.
struct At<W, T, G, C, const N: usize> {
    w: *mut W,
    state: [*mut T; N],
    g: *const G,
    copy: *mut C,
    index: u64,
}

/// Applies `update` to the vector at `at`, storing what the update writes; returns the
/// vectors to reduce.
///
/// # Safety
/// Every pointer must be valid for `S::F32_LANES` elements (reads, and writes for what is
/// written; `copy` only when `has_copy`), and the call must be reached from
/// [`crate::arch::Isa::run`].
#[inline(always)]
unsafe fn apply_at<S, U, W, T, G, C, const N: usize, const R: usize>(
    simd: S,
    update: U,
    at: &At<W, T, G, C, N>,
    has_copy: bool,
    rounding: Option<StreamKey>,
) -> [S::f32s; R]
where
    S: Lanes,
    U: Update<N, R>,
    W: Element,
    T: Element,
    G: Element,
    C: Element,
{
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut s = [simd.splat_f32s(0.0); N];
        for k in 0..N {
            s[k] = load(simd, at.state[k]);
        }
        let g = if U::READS_GRADIENT {
            load(simd, at.g)
        } else {
            simd.splat_f32s(0.0)
        };
        let (w_new, s_new, reduced) = update.update(simd, load(simd, at.w), s, g);
        if U::WRITES_WEIGHTS {
            store_weights(simd, at.w, w_new, rounding, at.index);
            if has_copy {
                store_weights(simd, at.copy, w_new, rounding, at.index);
            }
        }
        if U::WRITES_STATE {
            for k in 0..N {
                store(simd, at.state[k], s_new[k]);
            }
        }
        reduced
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
        let lanes = S::F32_LANES;
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
        // arithmetic below against a caller that did not, at the cost of a few comparisons.
        assert!(
            g.len() == n
                && state.iter().all(|s| s.len() == n)
                && copy.as_ref().is_none_or(|c| c.len() == n)
                && sums.iter().all(|s| s.len() == blocks(n)),
            "buffers of unequal length"
        );
        let has_copy = copy.is_some();
        let (update, rounding) = (self.update, self.rounding);
        let body = n - n % lanes;

        let mut at = At {
            w: w.as_mut_ptr(),
            state: [core::ptr::null_mut::<T>(); N],
            g: g.as_ptr(),
            copy: copy.map_or(core::ptr::null_mut(), |c| c.as_mut_ptr()),
            index,
        };
        for k in 0..N {
            at.state[k] = state[k].as_mut_ptr();
        }
        let mut acc = [SumSquares::default(); R];

        let mut i = 0;
        while i < body {
            // SAFETY: `i < body <= n`: every pointer stays inside its buffer (all of length
            // `n`, checked above), and `i + lanes <= n`, so each vector access does too.
            let reduced = unsafe {
                let mut state_here = at.state;
                for p in &mut state_here {
                    *p = p.add(i);
                }
                let here = At {
                    w: at.w.add(i),
                    state: state_here,
                    g: at.g.add(i),
                    copy: if has_copy { at.copy.add(i) } else { at.copy },
                    index: index + i as u64,
                };
                apply_at::<S, U, W, T, G, C, N, R>(simd, update, &here, has_copy, rounding)
            };
            for r in 0..R {
                acc[r].add::<S>(reduced[r], i % BLOCK);
            }
            i += lanes;
            if R > 0 && (i % BLOCK == 0 || i == n) {
                for r in 0..R {
                    sums[r][(i - 1) / BLOCK] = acc[r].total();
                    acc[r] = SumSquares::default();
                }
            }
        }

        let rem = n - body;
        if rem > 0 {
            // The tail goes through the same update, in zero-padded stack vectors; only the
            // real elements are copied back (and reduced).
            let mut tw = [W::ZERO; MAX_LANES];
            let mut tg = [G::ZERO; MAX_LANES];
            let mut tc = [C::ZERO; MAX_LANES];
            let mut ts = [[T::ZERO; MAX_LANES]; N];
            // SAFETY: the tail `body..n` lies inside every buffer (length `n`).
            unsafe {
                core::ptr::copy_nonoverlapping(at.w.add(body), tw.as_mut_ptr(), rem);
                core::ptr::copy_nonoverlapping(at.g.add(body), tg.as_mut_ptr(), rem);
                for k in 0..N {
                    core::ptr::copy_nonoverlapping(at.state[k].add(body), ts[k].as_mut_ptr(), rem);
                }
            }
            let mut ts_ptr = [core::ptr::null_mut::<T>(); N];
            for k in 0..N {
                ts_ptr[k] = ts[k].as_mut_ptr();
            }
            let here = At {
                w: tw.as_mut_ptr(),
                state: ts_ptr,
                g: tg.as_ptr(),
                copy: tc.as_mut_ptr(),
                index: index + body as u64,
            };
            // SAFETY: the stack arrays hold MAX_LANES >= lanes elements each.
            let reduced = unsafe {
                apply_at::<S, U, W, T, G, C, N, R>(simd, update, &here, has_copy, rounding)
            };
            for r in 0..R {
                acc[r].add_first::<S>(reduced[r], body % BLOCK, rem);
                sums[r][body / BLOCK] = acc[r].total();
            }
            // SAFETY: as above; only the `rem` real elements are written back.
            unsafe {
                if U::WRITES_WEIGHTS {
                    core::ptr::copy_nonoverlapping(tw.as_ptr(), at.w.add(body), rem);
                    if has_copy {
                        core::ptr::copy_nonoverlapping(tc.as_ptr(), at.copy.add(body), rem);
                    }
                }
                if U::WRITES_STATE {
                    for k in 0..N {
                        core::ptr::copy_nonoverlapping(ts[k].as_ptr(), at.state[k].add(body), rem);
                    }
                }
            }
        }
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

impl<A: Element, B: Element> Kernel for Convert<'_, A, B> {
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES) };
        let lanes = S::F32_LANES;
        let n = self.src.len();
        assert_eq!(self.dst.len(), n, "buffers of unequal length");
        let body = n - n % lanes;
        let (src, dst) = (self.src.as_ptr(), self.dst.as_mut_ptr());
        let mut i = 0;
        while i < body {
            // SAFETY: `i + lanes <= n`, the length of both buffers.
            unsafe { store(simd, dst.add(i), load(simd, src.add(i))) };
            i += lanes;
        }
        let rem = n - body;
        if rem > 0 {
            let mut ta = [A::ZERO; MAX_LANES];
            let mut tb = [B::ZERO; MAX_LANES];
            ta[..rem].copy_from_slice(&self.src[body..]);
            // SAFETY: the stack arrays hold MAX_LANES >= lanes elements each.
            unsafe { store(simd, tb.as_mut_ptr(), load(simd, ta.as_ptr())) };
            self.dst[body..].copy_from_slice(&tb[..rem]);
        }
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

impl<G: Element> Kernel for SquareSums<'_, G> {
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES && BLOCK.is_multiple_of(S::F32_LANES)) };
        let lanes = S::F32_LANES;
        let n = self.g.len();
        assert_eq!(self.sums.len(), blocks(n), "one sum per block");
        let body = n - n % lanes;
        let g = self.g.as_ptr();
        let mut acc = SumSquares::default();
        let mut i = 0;
        while i < body {
            // SAFETY: `i + lanes <= n`, the length of the buffer.
            acc.add::<S>(unsafe { load(simd, g.add(i)) }, i % BLOCK);
            i += lanes;
            if i % BLOCK == 0 || i == n {
                self.sums[(i - 1) / BLOCK] = acc.total();
                acc = SumSquares::default();
            }
        }
        let rem = n - body;
        if rem > 0 {
            let mut tail = [G::ZERO; MAX_LANES];
            tail[..rem].copy_from_slice(&self.g[body..]);
            // SAFETY: the stack array holds MAX_LANES >= lanes elements.
            acc.add_first::<S>(unsafe { load(simd, tail.as_ptr()) }, body % BLOCK, rem);
            self.sums[body / BLOCK] = acc.total();
        }
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
