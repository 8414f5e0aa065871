//! The one loop every elementwise kernel runs: it walks the buffers a vector at a time,
//! widening what it loads to `f32` lanes, applies an optimizer's [`Update`] and narrows what it
//! stores.
//!
//! The last `len % lanes` elements (the tail) are copied into a zero-padded vector on the
//! stack, go through the very same update, and only the real elements are copied back. So a
//! tail gets exactly the bits a full vector would give it, on every backend, and a result never
//! depends on where a buffer (or a chunk of it) ends.

use crate::arch::{Kernel, Lanes};
use crate::element::{DType, Element};

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
/// gradient widened to `f32` lanes, and returns the new weights and state. Its scalar
/// coefficients are fields of `self`, computed once per call by the optimizer's config, so
/// that every backend (and every chunk) uses the same ones.
pub(crate) trait Update<const N: usize>: Copy + Send + Sync {
    /// Must be `#[inline(always)]`: it runs inside a backend's target-feature context.
    fn update<S: Lanes>(
        self,
        simd: S,
        w: S::f32s,
        state: [S::f32s; N],
        g: S::f32s,
    ) -> (S::f32s, [S::f32s; N]);
}

/// The buffers of one elementwise step, all of the same length: the weights and `N` state
/// buffers (read and written) and the gradient (read).
pub(crate) struct Buffers<'a, W, T, G, const N: usize> {
    pub(crate) w: &'a mut [W],
    pub(crate) state: [&'a mut [T]; N],
    pub(crate) g: &'a [G],
}

impl<W: Element, T: Element, G: Element, const N: usize> crate::parallel::Split
    for Buffers<'_, W, T, G, N>
{
    fn len(&self) -> usize {
        self.w.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (w_lo, w_hi) = self.w.split_at_mut(mid);
        let (g_lo, g_hi) = self.g.split_at(mid);
        let mut lo = self.state;
        let hi = core::array::from_fn(|k| {
            let (s_lo, s_hi) = core::mem::take(&mut lo[k]).split_at_mut(mid);
            lo[k] = s_lo;
            s_hi
        });
        (
            Buffers {
                w: w_lo,
                state: lo,
                g: g_lo,
            },
            Buffers {
                w: w_hi,
                state: hi,
                g: g_hi,
            },
        )
    }
}

/// An [`Update`] applied to a set of [`Buffers`]: the kernel the backends run.
pub(crate) struct Elementwise<'a, U, W, T, G, const N: usize> {
    pub(crate) update: U,
    pub(crate) buffers: Buffers<'a, W, T, G, N>,
}

/// Applies `update` to the vector at `w`, `state`, `g`.
///
/// # Safety
/// Every pointer must be valid for `S::F32_LANES` elements (reads, and writes for `w` and
/// `state`), and the call must be reached from [`crate::arch::Isa::run`].
#[inline(always)]
unsafe fn apply_at<S: Lanes, U: Update<N>, W: Element, T: Element, G: Element, const N: usize>(
    simd: S,
    update: U,
    w: *mut W,
    state: [*mut T; N],
    g: *const G,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut s = [simd.splat_f32s(0.0); N];
        for k in 0..N {
            s[k] = load(simd, state[k]);
        }
        let (w_new, s_new) = update.update(simd, load(simd, w), s, load(simd, g));
        store(simd, w, w_new);
        for k in 0..N {
            store(simd, state[k], s_new[k]);
        }
    }
}

impl<U: Update<N>, W: Element, T: Element, G: Element, const N: usize> Kernel
    for Elementwise<'_, U, W, T, G, N>
{
    type Output = ();

    #[inline(always)]
    fn run<S: Lanes>(self, simd: S) {
        const { assert!(S::F32_LANES <= MAX_LANES) };
        let lanes = S::F32_LANES;
        let Buffers { w, state, g } = self.buffers;
        let n = w.len();
        // The public calls check lengths first (and report them); this guards the pointer
        // arithmetic below against a caller that did not, at the cost of one comparison per chunk.
        assert!(
            g.len() == n && state.iter().all(|s| s.len() == n),
            "buffers of unequal length"
        );
        let body = n - n % lanes;

        let w_ptr = w.as_mut_ptr();
        let g_ptr = g.as_ptr();
        let mut s_ptr = [core::ptr::null_mut::<T>(); N];
        for k in 0..N {
            s_ptr[k] = state[k].as_mut_ptr();
        }

        let mut i = 0;
        while i < body {
            let mut s_at = s_ptr;
            for p in &mut s_at {
                // SAFETY: `i < body <= n`, inside every buffer.
                *p = unsafe { p.add(i) };
            }
            // SAFETY: `i + lanes <= body <= n`, and every buffer has length `n` (checked by
            // the caller), so each vector access stays inside its buffer.
            unsafe { apply_at(simd, self.update, w_ptr.add(i), s_at, g_ptr.add(i)) };
            i += lanes;
        }

        let rem = n - body;
        if rem > 0 {
            let mut tw = [W::ZERO; MAX_LANES];
            let mut tg = [G::ZERO; MAX_LANES];
            let mut ts = [[T::ZERO; MAX_LANES]; N];
            tw[..rem].copy_from_slice(&w[body..]);
            tg[..rem].copy_from_slice(&g[body..]);
            for k in 0..N {
                ts[k][..rem].copy_from_slice(&state[k][body..]);
            }
            let mut ts_ptr = [core::ptr::null_mut::<T>(); N];
            for k in 0..N {
                ts_ptr[k] = ts[k].as_mut_ptr();
            }
            // SAFETY: the stack arrays hold MAX_LANES >= lanes elements each.
            unsafe { apply_at(simd, self.update, tw.as_mut_ptr(), ts_ptr, tg.as_ptr()) };
            w[body..].copy_from_slice(&tw[..rem]);
            for k in 0..N {
                state[k][body..].copy_from_slice(&ts[k][..rem]);
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

impl<A: Element, B: Element> crate::parallel::Split for Convert<'_, A, B> {
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
