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

use crate::Threads;

/// Chunk boundaries fall on multiples of this many elements.
pub(crate) const ALIGN: usize = 64;

/// Buffers that can be cut in two at an element index.
pub(crate) trait Split: Sized + Send {
    fn len(&self) -> usize;
    fn split_at(self, mid: usize) -> (Self, Self);
}

/// Runs `work` on `buffers`, split across the current rayon pool as `threads` says.
pub(crate) fn for_each_chunk<B: Split>(buffers: B, threads: Threads, work: &(impl Fn(B) + Sync)) {
    let n = buffers.len();
    match threads {
        Threads::Parallel { min_len, min_chunk } => {
            let workers = rayon::current_num_threads();
            if n < min_len.max(1) || workers <= 1 || n <= ALIGN {
                return work(buffers);
            }
            // Several chunks per worker, so that work stealing evens out uneven cores.
            let per_task = n.div_ceil(workers * 4);
            let chunk = round_up(per_task.max(min_chunk).max(1));
            split_recursively(buffers, chunk, work);
        }
        Threads::Sequential => work(buffers),
    }
}

fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
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
