//! Splitting a call's buffers into chunks and handing them to rayon.
//!
//! Chunks start at multiples of [`ALIGN`] elements from the start of the buffers: a multiple of
//! every vector width (16 lanes at most) and of the 64-byte cache line for every element type,
//! so that when the buffers start on a cache line (as [`crate::zeroed`] buffers do) two threads
//! never write the same line. Elementwise results do not depend on where the chunks fall
//! (see [`crate::stream`]), so the split may follow the number of threads freely.
//!
//! The split runs in the caller's rayon pool (`pool.install(|| ...)` works); the crate creates
//! no threads of its own.

use std::sync::Mutex;

/// How a call is spread over threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Everything runs on the calling thread.
    Sequential,
    /// Buffers of at least `min_len` elements are split into chunks of at least `min_chunk`
    /// elements (rounded up to a multiple of 64) and run on the current rayon pool: the global
    /// pool, or the one a caller entered with `pool.install(..)`. Smaller buffers run on the
    /// calling thread, where spawning would cost more than it saves.
    ///
    /// Every value is valid: `min_len` 0 or 1 splits every buffer of more than 64 elements,
    /// `min_chunk` 0 means 1 (64 after rounding), and a `min_chunk` at or above a call's
    /// length (up to `usize::MAX`) makes the whole call one chunk, run on the calling thread.
    Parallel {
        /// Below this many elements, the call stays on the calling thread.
        min_len: usize,
        /// No chunk is smaller than this many elements (except the last one).
        min_chunk: usize,
    },
}

impl Threads {
    /// The default threshold: below this many elements (256K) a call stays on the calling
    /// thread. Chosen from repeated measurements on clean data (see docs/performance.md): on
    /// the 2-core machines measured, waking a second thread costs about 20-30 µs, so that at
    /// 64K and 128K elements a vectorized step on two threads was up to 3x slower than on one,
    /// and from 256K on it was no slower in the median of three runs for every optimizer and
    /// dtype setup measured.
    pub const DEFAULT_MIN_LEN: usize = 1 << 18;
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

/// Chunk boundaries fall on multiples of this many elements.
pub(crate) const ALIGN: usize = 64;

/// Buffers that can be cut in two at an element index.
pub(crate) trait Split: Sized + Send {
    fn len(&self) -> usize;
    /// Cuts fall on multiples of this many elements (a multiple of [`ALIGN`]).
    fn align(&self) -> usize {
        ALIGN
    }
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// Runs `work` on `buffers`, split across the current rayon pool as `threads` says.
pub(crate) fn for_each_chunk<B: Split>(buffers: B, threads: Threads, work: &(impl Fn(B) + Sync)) {
    let n = buffers.len();
    match threads {
        Threads::Parallel { min_len, min_chunk } => {
            let align = buffers.align();
            // Small buffers never ask rayon anything (its global pool starts on first use).
            if n < min_len.max(1) || n <= align {
                return work(buffers);
            }
            let workers = rayon::current_num_threads();
            if workers <= 1 {
                return work(buffers);
            }
            // Several chunks per worker, so that work stealing evens out uneven cores.
            let per_task = n.div_ceil(workers * 4);
            // At most the whole buffer, so that rounding up cannot overflow.
            let chunk = round_up(per_task.max(min_chunk).clamp(1, n), align);
            split_recursively(buffers, chunk, work);
        }
        Threads::Sequential => work(buffers),
    }
}

fn round_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

fn split_recursively<B: Split>(buffers: B, chunk: usize, work: &(impl Fn(B) + Sync)) {
    let n = buffers.len();
    if n <= chunk {
        return work(buffers);
    }
    // Cut near the middle, on a chunk boundary, so both halves stay aligned to `ALIGN`.
    let chunks = n.div_ceil(chunk);
    let mid = chunks / 2 * chunk;
    let (lo, hi) = buffers.split_at(mid);
    rayon::join(
        || split_recursively(lo, chunk, work),
        || split_recursively(hi, chunk, work),
    );
}

/// Runs `work` on every item of `items` (the tensors of a multi-tensor call), cut into
/// balanced chunks across all of them and spread over the current rayon pool as `threads`
/// says: one parallel region for the whole call, however many tensors it has.
pub(crate) fn for_each_chunk_many<B: Split>(
    items: Vec<B>,
    threads: Threads,
    work: &(impl Fn(B) + Sync),
) {
    let total: usize = items.iter().map(Split::len).sum();
    // A sequential call, or one too small to split, never asks rayon anything.
    let workers = match threads {
        Threads::Parallel { min_len, .. } if total >= min_len.max(1) => {
            rayon::current_num_threads()
        }
        _ => 1,
    };
    match threads {
        Threads::Parallel { min_chunk, .. } if workers > 1 => {
            // At most the whole call, so that rounding up cannot overflow (every chunk then has
            // at least one element: the split below always advances).
            let per_task = total
                .div_ceil(workers * 4)
                .max(min_chunk)
                .clamp(1, total.max(1));
            let mut chunks = Vec::with_capacity(items.len());
            for mut item in items {
                let chunk = round_up(per_task, item.align());
                while item.len() > chunk {
                    let (head, rest) = item.split_at(chunk);
                    chunks.push(head);
                    item = rest;
                }
                chunks.push(item);
            }
            // Each chunk is taken out exactly once, by the task of its index (the lock is
            // released before the work starts).
            let chunks: Vec<Mutex<Option<B>>> =
                chunks.into_iter().map(|c| Mutex::new(Some(c))).collect();
            run_tasks(chunks.len(), &|i| {
                let chunk = chunks[i].lock().map(|mut c| c.take());
                work(chunk.ok().flatten().expect("each chunk runs once"));
            });
        }
        _ => items.into_iter().for_each(work),
    }
}

/// Runs `task(i)` for every `i` in `0..n` on the current rayon pool, one index per task. Not
/// generic: rayon's machinery is compiled once, not once per kernel.
fn run_tasks(n: usize, task: &(dyn Fn(usize) + Sync)) {
    use rayon::prelude::*;
    (0..n).into_par_iter().with_max_len(1).for_each(task);
}
