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

/// The result of [`Executor::grad_norm`](crate::Executor::grad_norm): the L2 norm of a set of gradients, computed the same
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
    pub(crate) fn from_sum_of_squares(sum_of_squares: f64) -> GradNorm {
        GradNorm { sum_of_squares }
    }

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
