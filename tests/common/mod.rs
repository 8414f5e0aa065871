//! Helpers shared by the integration tests.
#![allow(dead_code)]

use optkern::{Backend, Executor, Threads};

/// Every backend that can run on this machine, the 16-lane emulations included, with the
/// scalar oracle first. Prints the list once per test binary, so a log shows what ran.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Scalar];
    list.extend(
        Backend::available()
            .into_iter()
            .filter(|b| *b != Backend::Scalar),
    );
    list.extend(Backend::emulated());
    static PRINTED: std::sync::Once = std::sync::Once::new();
    PRINTED.call_once(|| {
        let names: Vec<_> = list.iter().map(|b| b.name()).collect();
        let missing: Vec<_> = Backend::ALL
            .iter()
            .filter(|b| !b.is_available())
            .map(|b| b.name())
            .collect();
        eprintln!(
            "backends tested here: {}; not available here: {}",
            names.join(", "),
            {
                if missing.is_empty() {
                    "none".to_owned()
                } else {
                    missing.join(", ")
                }
            }
        );
    });
    list
}

/// The backends other than the scalar oracle.
pub fn vector_backends() -> Vec<Backend> {
    backends()
        .into_iter()
        .filter(|b| *b != Backend::Scalar)
        .collect()
}

/// A sequential executor on `backend`.
pub fn sequential(backend: Backend) -> Executor {
    Executor::with_backend(backend)
        .unwrap()
        .threads(Threads::Sequential)
}

/// An executor on `backend` that splits even tiny buffers into 64-element chunks, for running
/// inside a multi-threaded pool.
pub fn split_finely(backend: Backend) -> Executor {
    Executor::with_backend(backend)
        .unwrap()
        .threads(Threads::Parallel {
            min_len: 0,
            min_chunk: 64,
        })
}

/// A rayon pool with `n` threads.
pub fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// Bits of an f32 slice, with every NaN mapped to one pattern: the crate promises identical
/// bits for every non-NaN result and a NaN wherever a NaN arises (its payload is unspecified).
pub fn canonical_bits(values: &[f32]) -> Vec<u32> {
    values
        .iter()
        .map(|x| if x.is_nan() { 0x7FC0_0000 } else { x.to_bits() })
        .collect()
}
