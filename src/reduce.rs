//! Sums of squares that give the same bits on every backend, vector width, chunking and thread
//! count (for the global gradient norm and LAMB's trust ratios).
//!
//! The fixed blocking:
//!
//! - A buffer is cut into blocks of [`BLOCK`] elements from its start (the last may be shorter).
//! - Within a block, element `j` is added to accumulator `j % 16` in `f64`, in order: sixteen
//!   "virtual lanes" whatever the backend's real width (1, 4, 8 or 16 `f32` lanes: each backend
//!   holds the sixteen accumulators in as many registers as it needs). The square of an `f32`
//!   is exact in `f64`, so each step is one correctly rounded addition.
//! - A block's sum is the pairwise sum of its sixteen accumulators; a buffer's sum is the
//!   pairwise sum of its block sums, in block order; a set of buffers is the pairwise sum of
//!   their sums, in their order. Pairwise: halve at `len / 2`, sum each half, add.
//!
//! Chunks handed to threads start on block boundaries, so the blocks, and every sum, are the
//! same however the work is split.

use pulp::Simd;

/// Elements per block: a multiple of every vector width and of the chunk alignment.
pub(crate) const BLOCK: usize = 2048;

/// The sixteen `f64` accumulators of one block.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SumSquares {
    acc: [f64; 16],
}

impl SumSquares {
    /// Adds the squares of the lanes of `x`, the elements at `position`, `position + 1`, ...
    /// of the block (`position` is a multiple of the lane count).
    #[inline(always)]
    pub(crate) fn add<S: Simd>(&mut self, x: S::f32s, position: usize) {
        let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&x));
        let base = position % 16;
        for (j, &value) in lanes.iter().enumerate() {
            let value = f64::from(value);
            self.acc[base + j] += value * value;
        }
    }

    /// As [`add`](Self::add), for the first `count` lanes only (a buffer's tail).
    #[inline(always)]
    pub(crate) fn add_first<S: Simd>(&mut self, x: S::f32s, position: usize, count: usize) {
        let lanes: &[f32] = pulp::bytemuck::cast_slice(core::slice::from_ref(&x));
        let base = position % 16;
        for (j, &value) in lanes.iter().take(count).enumerate() {
            let value = f64::from(value);
            self.acc[base + j] += value * value;
        }
    }

    /// The block's sum.
    pub(crate) fn total(&self) -> f64 {
        pairwise_sum(&self.acc)
    }
}

/// The pairwise sum of `values`, in their order.
pub(crate) fn pairwise_sum(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        1 => values[0],
        n => {
            let (left, right) = values.split_at(n / 2);
            pairwise_sum(left) + pairwise_sum(right)
        }
    }
}

/// The number of blocks of a buffer of `len` elements.
pub(crate) fn blocks(len: usize) -> usize {
    len.div_ceil(BLOCK)
}
