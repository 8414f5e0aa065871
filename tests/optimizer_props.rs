//! The bit-exact property test every optimizer gets from its case in `tests/common/cases.rs`:
//! on every backend that runs here (the 16-lane emulations included), for all 27 combinations
//! of element types, every option (the case's strategy), lengths 0..=2100, misaligned starts,
//! steps from 1 to 10^7, random hyperparameters and values of every magnitude (zeros,
//! subnormals, 1e-30 to 1e30, infinities and NaNs), one step through
//! [`Executor::step_many`](optkern::Executor::step_many) has exactly the bits of the scalar
//! oracle, sequentially and split into 64-element chunks on 1 and 4 threads.
//!
//! The cases run side by side on threads of their own, each with its own proptest runner
//! (`property_cases` random cases, or `OPTKERN_PROPTEST_CASES`); a failure names the optimizer
//! and the shrunk case.

use crate::common;
use crate::for_each_dtype_triple;

use common::cases::{CASES, OptimizerCase, non_negative};
use common::harness::{Bufs, matches_oracle};
use common::proptest_cases;
use optkern::{Element, Optimizer, TensorStep};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// What every case has besides its config.
#[derive(Clone, Debug)]
struct Layout {
    len: usize,
    offsets: [usize; 3],
    seed: u64,
    special: bool,
    step: u64,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        0usize..=2100,
        [0usize..16, 0usize..16, 0usize..16],
        any::<u64>(),
        any::<bool>(),
        prop_oneof![Just(1u64), 2u64..100, 100u64..10_000_000],
    )
        .prop_map(|(len, offsets, seed, special, step)| Layout {
            len,
            offsets,
            seed,
            special,
            step,
        })
}

/// One step of `config` on the buffers `layout` describes, on every backend and split, against
/// the scalar oracle. The state buffers that hold magnitudes (second moments, sums) start
/// non-negative.
fn matches<W: Element, T: Element, G: Element>(
    (config, layout): &(Optimizer, Layout),
) -> Result<(), TestCaseError> {
    let names = config.state_buffers();
    let magnitudes: Vec<bool> = names.iter().map(|name| non_negative(name)).collect();
    let bufs = Bufs::<W, T, G>::new(
        layout.len,
        layout.offsets,
        &magnitudes,
        layout.seed,
        layout.special,
    );
    matches_oracle(config.name(), &bufs, |exec, b| {
        let (w, s, g) = b.parts();
        exec.step_many(&mut [TensorStep::new(w, s, g)], config, layout.step)
    })
}

/// The property test of one case.
fn check_case(case: &OptimizerCase) -> Result<(), String> {
    let config = Config {
        cases: proptest_cases(case.property_cases),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(&((case.strategy)(), layout()), |c| {
            assert_eq!(
                c.0.name(),
                case.name,
                "the case's strategy makes its optimizer"
            );
            for_each_dtype_triple!(matches, &c);
            Ok(())
        })
        .map_err(|e| format!("{}: {e}", case.name))
}

#[test]
fn every_optimizer_bits_equal_scalar_oracle() {
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = CASES
            .iter()
            .map(|case| scope.spawn(move || check_case(case)))
            .collect();
        runs.into_iter()
            .filter_map(|run| match run.join() {
                Ok(result) => result.err(),
                Err(_) => Some("a case panicked (see above)".to_owned()),
            })
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
