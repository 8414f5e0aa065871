//! The bit-exact property test of every optimizer, one test per case of
//! `tests/common/cases/`: on every backend that runs here (the 16-lane emulations included),
//! for all 27 combinations of element types, every option of the case's configs, lengths
//! 0..=2100, misaligned starts, steps from 1 to ten million, and values of every magnitude
//! (zeros, subnormals, 1e-30 to 1e30, infinities and NaNs), under both subnormal policies, the
//! result has exactly the bits of the scalar oracle, sequentially and split across 1 and 4
//! threads. Each case steps through
//! its optimizer's own single-tensor call, so the suite compiles each optimizer's kernels for
//! the 27 mixes once, and nothing else.

use crate::common;
use crate::for_each_dtype_triple;

use common::cases::{Case, StepFn, non_negative};
use common::data::{Misaligned, Rng};
use common::harness::{Bufs, matches_oracle};
use common::{run_property, same_bits, sequential};
use optkern::{Backend, DType, Element, Momentum, Optimizer, Sgd, Subnormals};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// What every case has besides its config.
#[derive(Clone, Debug)]
struct Layout {
    len: usize,
    offsets: [usize; 3],
    seed: u64,
    special: bool,
    step: u64,
    subnormals: Subnormals,
}

fn layout(max_step: u64) -> impl Strategy<Value = Layout> {
    (
        0usize..=2100,
        [0usize..16, 0usize..16, 0usize..16],
        any::<u64>(),
        any::<bool>(),
        prop_oneof![Just(1u64), 2u64..100, 100u64..max_step],
        prop_oneof![Just(Subnormals::Keep), Just(Subnormals::Flush)],
    )
        .prop_map(|(len, offsets, seed, special, step, subnormals)| Layout {
            len,
            offsets,
            seed,
            special,
            step,
            subnormals,
        })
}

/// One config and layout of case `C` on element types `W`, `T`, `G`.
fn bits_match<C: Case, W: Element, T: Element, G: Element>(
    case: &(Optimizer, Layout),
) -> Result<(), TestCaseError> {
    check_bits::<W, T, G>(C::CASE.name, C::step::<W, T, G>, case)
}

/// [`bits_match`] with the case's name and step: compiled once per mix. An optimizer without
/// state (SGD) runs only with `T = f32`: the state type is not part of its call.
fn check_bits<W: Element, T: Element, G: Element>(
    name: &str,
    step: StepFn<W, T, G>,
    (config, layout): &(Optimizer, Layout),
) -> Result<(), TestCaseError> {
    let names = config.state_buffers();
    if names.is_empty() && T::DTYPE != DType::F32 {
        return Ok(());
    }
    let non_negative: Vec<bool> = names.iter().map(|name| non_negative(name)).collect();
    let bufs = Bufs::<W, T, G>::new(
        layout.len,
        layout.offsets,
        &non_negative,
        layout.seed,
        layout.special,
    );
    matches_oracle(name, &bufs, |exec, b| {
        let (w, s, g) = b.parts();
        step(
            &exec.with_subnormals(layout.subnormals),
            w,
            s,
            g,
            config,
            layout.step,
        )
    })
}

fn property<C: Case>() {
    run_property(
        file!(),
        C::PROPERTY_CASES,
        (C::configs(), layout(C::MAX_STEP)),
        |case| {
            for_each_dtype_triple!(bits_match::<C>, &case);
            Ok(())
        },
    );
}

macro_rules! bit_exact_tests {
    ($($name:ident: $case:ty),* $(,)?) => {
        /// One test per case, so that they run in parallel.
        mod bits_equal_scalar_oracle {
            $(
                #[test]
                fn $name() {
                    super::property::<$case>();
                }
            )*
        }
    };
}
crate::for_each_case!(bit_exact_tests);

/// The fixed-type calls are PyTorch's plain heavy ball without the first-step rule: the same
/// bits as the config call at a step other than the first.
#[test]
fn fixed_type_calls_match_config_calls() {
    fn check<E: Element>(
        fixed: fn(&mut [E], &mut [E], &[E], f32, f32),
        sgd: fn(&mut [E], &[E], f32),
    ) {
        let mut rng = Rng::new(7);
        // 300_000: above `Threads::DEFAULT_MIN_LEN`, so that the default executor of the fixed-type
        // calls splits it across the pool.
        for len in [0, 1, 7, 8, 15, 16, 17, 100, 1000, 300_000] {
            let mk = |rng: &mut Rng| Misaligned::<E>::new(len, 3, || rng.value(false));
            let (w0, v0, g) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
            let config = Momentum::heavy_ball(0.01, 0.9).build().unwrap();
            let (mut w_ref, mut v_ref) = (w0.copy(), v0.copy());
            sequential(Backend::Scalar)
                .momentum_step(w_ref.slice_mut(), v_ref.slice_mut(), g.slice(), &config, 2)
                .unwrap();
            let (mut w, mut v) = (w0.copy(), v0.copy());
            fixed(w.slice_mut(), v.slice_mut(), g.slice(), 0.01, 0.9);
            same_bits("weights", w.slice(), w_ref.slice()).unwrap();
            same_bits("velocity", v.slice(), v_ref.slice()).unwrap();

            let mut w_ref = w0.copy();
            let plain = Sgd::new(0.01).unwrap();
            sequential(Backend::Scalar)
                .sgd_step(w_ref.slice_mut(), g.slice(), &plain, 1)
                .unwrap();
            let mut w = w0.copy();
            sgd(w.slice_mut(), g.slice(), 0.01);
            same_bits("sgd weights", w.slice(), w_ref.slice()).unwrap();
        }
    }
    check::<f32>(optkern::momentum_step_f32, optkern::sgd_step_f32);
    check::<optkern::f16>(optkern::momentum_step_f16, optkern::sgd_step_f16);
    check::<optkern::bf16>(optkern::momentum_step_bf16, optkern::sgd_step_bf16);
}
