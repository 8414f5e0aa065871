//! Helpers shared by the integration tests.
#![allow(dead_code)]

use optkern::{Backend, Executor, Threads};

/// Every backend that can run on this machine, the 16-lane emulations included, with the
/// scalar oracle first. Prints the list once per test binary, so a log shows what ran.
///
/// `OPTKERN_TEST_BACKENDS=neon,scalar` (names, comma-separated) restricts the list, for runs
/// under an emulator where every backend would take too long; a name that cannot run here is a
/// failure, never a silent skip. The scalar oracle is always in the list.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Scalar];
    list.extend(
        Backend::available()
            .into_iter()
            .filter(|b| *b != Backend::Scalar),
    );
    list.extend(Backend::emulated());
    if let Ok(names) = std::env::var("OPTKERN_TEST_BACKENDS") {
        let wanted: Vec<&str> = names
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for name in &wanted {
            assert!(
                list.iter().any(|b| b.name() == *name),
                "OPTKERN_TEST_BACKENDS names {name:?}, which cannot run here (runnable: {list:?})"
            );
        }
        list.retain(|b| *b == Backend::Scalar || wanted.contains(&b.name()));
    }
    static PRINTED: std::sync::Once = std::sync::Once::new();
    PRINTED.call_once(|| {
        let names: Vec<_> = list.iter().map(|b| b.name()).collect();
        let missing: Vec<_> = Backend::ALL
            .iter()
            .filter(|b| !b.is_available())
            .map(|b| b.name())
            .collect();
        let missing = if missing.is_empty() {
            "none".to_owned()
        } else {
            missing.join(", ")
        };
        eprintln!(
            "backends tested here: {}; not available here: {missing}",
            names.join(", ")
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
        .with_threads(Threads::Sequential)
}

/// An executor on `backend` that splits even tiny buffers into 64-element chunks, for running
/// inside a multi-threaded pool.
pub fn split_finely(backend: Backend) -> Executor {
    Executor::with_backend(backend)
        .unwrap()
        .with_threads(Threads::Parallel {
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

pub mod cases;
pub mod data;
pub mod harness;
pub mod hyper;
pub mod reference;

/// Runs the property `test` on `cases` values of `strategy` (see [`proptest_cases`]), as
/// `proptest!` would, replaying the failures saved beside `source_file`; panics with the
/// minimal failing value.
pub fn run_property<S: proptest::strategy::Strategy>(
    source_file: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    let mut config = proptest::test_runner::Config::with_cases(proptest_cases(cases));
    config.source_file = Some(source_file);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}\n{runner}");
    }
}

/// The number of random cases a property test runs: `default`, or `OPTKERN_PROPTEST_CASES`
/// (the emulated CI runs use fewer).
pub fn proptest_cases(default: u32) -> u32 {
    match std::env::var("OPTKERN_PROPTEST_CASES") {
        Ok(n) => n.parse().expect("OPTKERN_PROPTEST_CASES is a number"),
        Err(_) => default,
    }
}

/// Calls `$check::<W, T, G>($case)?` for all 27 combinations of f32, f16 and bf16, or
/// `$check::<C, W, T, G>($case)?` when called as `for_each_dtype_triple!(check::<C>, case)`.
#[macro_export]
macro_rules! for_each_dtype_triple {
    ($check:ident::<$c:ty>, $case:expr) => {
        $crate::for_each_dtype_triple!(@w $check [$c,], $case, [f32 optkern::f16 optkern::bf16])
    };
    ($check:ident, $case:expr) => {
        $crate::for_each_dtype_triple!(@w $check [], $case, [f32 optkern::f16 optkern::bf16])
    };
    (@w $check:ident $c:tt, $case:expr, [$($w:ty)*]) => {
        $( $crate::for_each_dtype_triple!(@t $check $c, $case, $w, [f32 optkern::f16 optkern::bf16]); )*
    };
    (@t $check:ident $c:tt, $case:expr, $w:ty, [$($t:ty)*]) => {
        $( $crate::for_each_dtype_triple!(@g $check $c, $case, $w, $t, [f32 optkern::f16 optkern::bf16]); )*
    };
    (@g $check:ident $c:tt, $case:expr, $w:ty, $t:ty, [$($g:ty)*]) => {
        $( $crate::for_each_dtype_triple!(@call $check $c, $case, $w, $t, $g); )*
    };
    (@call $check:ident [$($c:tt)*], $case:expr, $w:ty, $t:ty, $g:ty) => {
        $check::<$($c)* $w, $t, $g>($case)?
    };
}

/// The 1-thread and 4-thread pools the tests share.
pub fn pools() -> &'static [(&'static str, rayon::ThreadPool); 2] {
    static POOLS: std::sync::OnceLock<[(&str, rayon::ThreadPool); 2]> = std::sync::OnceLock::new();
    POOLS.get_or_init(|| [("1 thread", pool(1)), ("4 threads", pool(4))])
}

/// Compares two buffers' canonical bits (see [`data::bits`]) and describes the first
/// difference.
pub fn same_bits<E: optkern::Element>(what: &str, got: &[E], want: &[E]) -> Result<(), String> {
    let (g, w) = (data::bits(got), data::bits(want));
    match g.iter().zip(&w).position(|(a, b)| a != b) {
        None if g.len() == w.len() => Ok(()),
        None => Err(format!("{what}: lengths {} and {}", g.len(), w.len())),
        Some(i) => Err(format!(
            "{what}: element {i} of {} differs: {:?} ({:#010x}) but the oracle gives {:?} ({:#010x})",
            g.len(),
            got[i],
            g[i],
            want[i],
            w[i]
        )),
    }
}
