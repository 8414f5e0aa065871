//! One case per optimizer, one file each: everything the shared suites need to test it.
//!
//! A case is a type implementing [`Case`]: its [`OptimizerCase`] (name, random configs with
//! every option drawn, the configs its builder must refuse, and an independent `f64` reference
//! of one step with its stated error bound, where the optimizer has one), the configs of its
//! bit-exact property test, and how one step runs through the optimizer's own single-tensor
//! call (so that a suite generic over the case compiles only that optimizer's kernels).
//!
//! The suites loop over every case: `tests/optimizer_props.rs` (bit-exact against the scalar
//! oracle on every backend and the 27 element-type mixes, one test per case),
//! `tests/reference_optimizers.rs` (the `f64` references, the 27 mixes),
//! `tests/optimizers.rs` (the refused configs, bad buffers, checkpoints and resuming, the
//! caller's floating-point environment) and `tests/mixed_precision.rs` (many tensors, model
//! copies, stochastic rounding, the checked step), the last two through [`CASES`].
//!
//! A new optimizer gets all of them by adding its file here and its line in
//! [`for_each_case`].

use optkern::{Element, Error, Executor, MomentumForm, Optimizer, WeightDecay};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

use super::data::Rng;
pub use super::hyper::{Hyper, built, decay};

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod ademamix;
pub mod adopt;
pub mod asgd;
pub mod lamb;
pub mod lion;
pub mod momentum;
pub mod nadam;
pub mod radam;
pub mod rmsprop;
pub mod rprop;
pub mod schedulefree;
pub mod sgd;

/// Calls `$callback! { test_name: CaseType, ... }` with every case, in the order of the
/// optimizers' checkpoint codes: the one list of the cases.
#[macro_export]
macro_rules! for_each_case {
    ($callback:ident) => {
        $callback! {
            sgd: $crate::common::cases::sgd::SgdCase,
            momentum: $crate::common::cases::momentum::MomentumCase,
            adam: $crate::common::cases::adam::AdamCase,
            rmsprop: $crate::common::cases::rmsprop::RmspropCase,
            adagrad: $crate::common::cases::adagrad::AdagradCase,
            lion: $crate::common::cases::lion::LionCase,
            lamb: $crate::common::cases::lamb::LambCase,
            adamax: $crate::common::cases::adamax::AdamaxCase,
            adadelta: $crate::common::cases::adadelta::AdadeltaCase,
            nadam: $crate::common::cases::nadam::NadamCase,
            radam: $crate::common::cases::radam::RadamCase,
            rprop: $crate::common::cases::rprop::RpropCase,
            asgd: $crate::common::cases::asgd::AsgdCase,
            adopt: $crate::common::cases::adopt::AdoptCase,
            ademamix: $crate::common::cases::ademamix::AdemamixCase,
            schedulefree_adamw: $crate::common::cases::schedulefree::ScheduleFreeAdamwCase,
            schedulefree_sgd: $crate::common::cases::schedulefree::ScheduleFreeSgdCase,
        }
    };
}

macro_rules! case_list {
    ($($name:ident: $case:ty),* $(,)?) => {
        /// Every case's data, in the order of the checkpoint codes.
        pub const CASES: &[OptimizerCase] = &[$(<$case as Case>::CASE),*];
    };
}
for_each_case!(case_list);

/// The `step` of a [`Case`]: `own_call!(Variant, |exec, w, state, g, config, step| call)` with
/// `config` the variant's config and `state` the buffers (a `Vec<&mut [T]>`, in the order of
/// `state_buffers`).
#[macro_export]
macro_rules! own_call {
    ($variant:ident, |$exec:ident, $w:ident, $state:ident, $g:ident, $c:ident, $step:ident| $call:expr) => {
        fn step<W: optkern::Element, T: optkern::Element, G: optkern::Element>(
            $exec: &optkern::Executor,
            $w: &mut [W],
            #[allow(unused_mut)] mut $state: Vec<&mut [T]>,
            $g: &[G],
            config: &optkern::Optimizer,
            $step: u64,
        ) -> Result<(), optkern::Error> {
            let optkern::Optimizer::$variant($c) = config else {
                unreachable!(concat!("a config of ", stringify!($variant)))
            };
            $call
        }
    };
}

/// `builder.weight_decay(wd).maximize(maximize)`, built (it must be valid) into an
/// [`Optimizer`].
#[macro_export]
macro_rules! built_with {
    ($builder:expr, $wd:expr, $maximize:expr) => {
        optkern::Optimizer::from(
            $builder
                .weight_decay($wd)
                .maximize($maximize)
                .build()
                .unwrap(),
        )
    };
}

/// Everything the suites know about one optimizer.
pub trait Case {
    /// Its data.
    const CASE: OptimizerCase;
    /// The number of random configs its bit-exact property test runs (before
    /// `OPTKERN_PROPTEST_CASES`).
    const PROPERTY_CASES: u32 = 96;
    /// The step numbers of its bit-exact property test run below this (steps change only the
    /// coefficients, computed once per call in `f64`).
    const MAX_STEP: u64 = 10_000_000;
    /// The configs of its bit-exact property test: every option, hyperparameters over their
    /// whole valid range.
    fn configs() -> BoxedStrategy<Optimizer>;
    /// One step of `config` (a config of this optimizer) through its own single-tensor call,
    /// with the state buffers in the order of `state_buffers`.
    fn step<W: Element, T: Element, G: Element>(
        exec: &Executor,
        w: &mut [W],
        state: Vec<&mut [T]>,
        g: &[G],
        config: &Optimizer,
        step: u64,
    ) -> Result<(), Error>;
}

/// A [`Case::step`] on fixed element types, as a function pointer: the suites' generic code
/// takes one, so that it is compiled once per element-type mix, not once per case too.
pub type StepFn<W, T, G> =
    fn(&Executor, &mut [W], Vec<&mut [T]>, &[G], &Optimizer, u64) -> Result<(), Error>;

/// An optimizer's test data.
pub struct OptimizerCase {
    /// The optimizer's name ([`Optimizer::name`]).
    pub name: &'static str,
    /// A random config, every option drawn.
    pub random: fn(&mut Rng) -> Optimizer,
    /// Configs its builder refuses, each with a word the error message must contain.
    pub refused: fn() -> Vec<Refused>,
    /// Calls of its own single-tensor entry point that must be refused, writing nothing.
    pub bad_calls: fn() -> Vec<BadCall>,
    /// An `f64` reference of one step, if the optimizer has an elementwise one (LAMB's trust
    /// ratio is a property of the whole tensor: its golden trajectories and the bit-exact
    /// suites test it).
    pub reference: Option<Reference>,
    /// The golden trajectories' optimizer names it maps onto its configs, if a library's
    /// trajectories exist (`tests/golden/`).
    pub golden: Option<Golden>,
}

/// How a case reads the golden case files of its library optimizers.
#[derive(Clone, Copy)]
pub struct Golden {
    /// The `optimizer` names of the case files it maps.
    pub names: &'static [&'static str],
    /// A case file's optimizer name and hyperparameters (read with the library's defaults)
    /// to a config.
    pub map: fn(&str, &mut Hyper) -> Result<Mapped, String>,
}

/// A scalar state entry as the crate computes it from the config and the number of steps.
pub type ScalarState = fn(&Optimizer, u64) -> f64;

/// A library optimizer as the crate runs it.
pub struct Mapped {
    pub config: Optimizer,
    /// The library's names of the state buffers, in the order of `state_buffers`.
    pub state: Vec<&'static str>,
    /// The library keeps the negative of the crate's first buffer (Keras' SGD velocity).
    pub negated: bool,
    /// The library's scalar state entries (NAdam's `mu_product`), each as the crate computes
    /// it from the config and the number of steps taken.
    pub scalars: Vec<(&'static str, ScalarState)>,
}

impl Mapped {
    pub fn new(config: impl Into<Optimizer>, state: &[&'static str]) -> Result<Mapped, String> {
        Ok(Mapped {
            config: config.into(),
            state: state.to_vec(),
            negated: false,
            scalars: Vec::new(),
        })
    }
}

/// A config the builder must refuse, and a word its error message must contain.
pub type Refused = (Result<Optimizer, Error>, &'static str);

/// A [`Refused`] config: `result` is a builder's `build()`.
pub fn refuse<C: Into<Optimizer>>(result: Result<C, Error>, word: &'static str) -> Refused {
    (result.map(Into::into), word)
}

/// A call of an optimizer's own entry point that must be refused (bad buffers, a missing or
/// extra state buffer, step 0) with an error naming what is wrong, every buffer left as it was.
pub struct BadCall {
    /// The lengths of the `f32` buffers it gets: the weights, then the state buffers, the
    /// gradient last.
    pub lens: &'static [usize],
    /// Words its error message must contain (the call, the buffer, the lengths).
    pub words: &'static [&'static str],
    /// The call, on buffers of those lengths (see [`parts`]).
    pub call: fn(&Executor, &mut [Vec<f32>]) -> Result<(), Error>,
}

/// A [`BadCall`].
pub fn bad(
    lens: &'static [usize],
    words: &'static [&'static str],
    call: fn(&Executor, &mut [Vec<f32>]) -> Result<(), Error>,
) -> BadCall {
    BadCall { lens, words, call }
}

/// A bad call's buffers as the weights, the state buffers and the gradient (the last one).
pub fn parts(buffers: &mut [Vec<f32>]) -> (&mut [f32], Vec<&mut [f32]>, &[f32]) {
    let (g, rest) = buffers.split_last_mut().expect("a gradient");
    let (w, state) = rest.split_first_mut().expect("weights");
    (w, state.iter_mut().map(|b| &mut b[..]).collect(), g)
}

/// One step of an optimizer on one element in `f64`, from the published formula, with the
/// bound on the error of the crate's `f32` computation of each result (before the final
/// rounding into storage, which the suite adds).
#[derive(Clone, Copy)]
pub struct Reference {
    /// The configs it is checked on, each with its step count and a seed for the data.
    pub configs: fn() -> BoxedStrategy<(Optimizer, u64, u64)>,
    /// Inputs reach `10^span` (`10^-span` for the small ones); f16 keeps to its range.
    pub span: f64,
    /// Moves one element's drawn state (in the order of `state_buffers`, already rounded to
    /// the state's type) into the domain where the bound holds, if it has one.
    pub prepare: Option<fn(&Optimizer, &mut Rng, &mut [f64])>,
    /// The step: config, weight, state, gradient and step count in, [`Want`] out.
    pub step: fn(&Optimizer, f64, &[f64], f64, u64) -> Want,
}

impl Reference {
    /// A reference on inputs up to `10^15`, on the state as drawn.
    pub const fn new(
        configs: fn() -> BoxedStrategy<(Optimizer, u64, u64)>,
        step: fn(&Optimizer, f64, &[f64], f64, u64) -> Want,
    ) -> Option<Reference> {
        Some(Reference {
            configs,
            span: 15.0,
            prepare: None,
            step,
        })
    }
}

/// A case's [`Golden`] mapping of the library optimizers `names`.
pub const fn maps(
    names: &'static [&'static str],
    map: fn(&str, &mut Hyper) -> Result<Mapped, String>,
) -> Option<Golden> {
    Some(Golden { names, map })
}

/// The configs of a reference: `options` built by `config`, with `steps` and a seed for the
/// data.
pub fn with_steps<O: std::fmt::Debug + 'static>(
    options: impl Strategy<Value = O> + 'static,
    steps: impl Strategy<Value = u64> + 'static,
    config: fn(O) -> Optimizer,
) -> BoxedStrategy<(Optimizer, u64, u64)> {
    (options, steps, any::<u64>())
        .prop_map(move |(options, step, seed)| (config(options), step, seed))
        .boxed()
}

/// What one step must give on one element.
pub struct Want {
    /// The new weight: any of these (more than one where rounding cannot decide between
    /// outcomes, as the sign of a value within its error of zero).
    pub w: Vec<f64>,
    /// The bound on the weight's error.
    pub w_err: f64,
    /// The new state, in the order of `state_buffers`, and the bound on each one's error.
    pub state: Vec<(f64, f64)>,
}

/// A random config of case `kind % CASES.len()`.
pub fn random_config(kind: u64, rng: &mut Rng) -> Optimizer {
    (CASES[(kind % CASES.len() as u64) as usize].random)(rng)
}

/// Whether a state buffer holds magnitudes only (second moments, sums, infinity norms).
pub fn non_negative(name: &str) -> bool {
    matches!(
        name,
        "v" | "v_max" | "square_avg" | "sum" | "u" | "acc_delta" | "step_size"
    )
}

// ---- random configs ----

pub fn pick<T: Copy>(rng: &mut Rng, options: &[T]) -> T {
    options[(rng.next_u64() % options.len() as u64) as usize]
}

pub fn lr(rng: &mut Rng) -> f64 {
    pick(rng, &[0.0, 1e-4, 1e-3, 0.01, 0.1, 0.7])
}

pub fn beta(rng: &mut Rng) -> f64 {
    let any = rng.unit() * 0.999;
    pick(rng, &[0.0, 0.5, 0.9, 0.99, 0.999, any])
}

pub fn weight_decay(rng: &mut Rng) -> WeightDecay {
    let wd = pick(rng, &[1e-4, 0.01, 0.3]);
    pick(
        rng,
        &[
            WeightDecay::None,
            WeightDecay::L2(wd),
            WeightDecay::Decoupled(wd),
        ],
    )
}

pub fn flag(rng: &mut Rng) -> bool {
    rng.next_u64() & 1 == 1
}

/// The strategies of the bit-exact property tests: every valid value, the edges included.
pub mod any_valid {
    use super::*;

    pub fn lr() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0f64), (-6.0f64..1.0).prop_map(|e| 10f64.powf(e))]
    }

    pub fn beta() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0f64), Just(0.9), Just(0.999), 0.0f64..1.0]
    }

    pub fn eps() -> impl Strategy<Value = f64> {
        (-12.0f64..-1.0).prop_map(|e| 10f64.powf(e))
    }

    pub fn weight_decay() -> impl Strategy<Value = WeightDecay> {
        let wd = (-6.0f64..0.0).prop_map(|e| 10f64.powf(e));
        // Decoupled decay below 0.1, so that `lr * wd <= 1` for every `lr()` (below 10).
        let decoupled = (-6.0f64..-1.0).prop_map(|e| 10f64.powf(e));
        prop_oneof![
            Just(WeightDecay::None),
            wd.prop_map(WeightDecay::L2),
            decoupled.prop_map(WeightDecay::Decoupled),
        ]
    }

    /// `(lr, beta1, beta2, eps, weight_decay)`, the options of the Adam family.
    pub fn adam_family() -> impl Strategy<Value = (f64, f64, f64, f64, WeightDecay)> {
        (lr(), beta(), beta(), eps(), weight_decay())
    }

    pub fn momentum_form() -> impl Strategy<Value = MomentumForm> {
        prop_oneof![
            Just(MomentumForm::HeavyBall),
            Just(MomentumForm::LrInVelocity),
            Just(MomentumForm::MovingAverage)
        ]
    }
}

// ---- the f64 references ----

/// The unit roundoff of f32.
pub use super::reference::U;

/// The factor of the references' bounds (`tests/reference_optimizers.rs` derives it): each
/// result may differ from the f64 one by `K * u * M`, `M` the sum of the magnitudes of its
/// terms.
pub const K: f64 = 16.0;

/// The weight decays of the reference tests.
pub fn reference_weight_decay() -> impl Strategy<Value = WeightDecay> {
    let wd = (-5.0f64..-0.5).prop_map(|e| 10f64.powf(e));
    prop_oneof![
        Just(WeightDecay::None),
        wd.clone().prop_map(WeightDecay::L2),
        wd.prop_map(WeightDecay::Decoupled)
    ]
}

/// The gradient as every optimizer reads it (negated to maximize, plus L2 decay), its
/// magnitude sum, and the decoupled-decayed weight.
pub fn gradient_in(wd: WeightDecay, maximize: bool, lr: f64, w: f64, g: f64) -> (f64, f64, f64) {
    let g_sign = if maximize { -g } else { g };
    match wd {
        WeightDecay::L2(l2) => (g_sign + l2 * w, g.abs() + (l2 * w).abs(), w),
        WeightDecay::Decoupled(d) => (g_sign, g.abs(), w * (1.0 - lr * d)),
        WeightDecay::None => (g_sign, g.abs(), w),
    }
}

/// A reference's result with one acceptable weight.
pub fn want(w: f64, w_err: f64, state: Vec<(f64, f64)>) -> Want {
    Want {
        w: vec![w],
        w_err,
        state,
    }
}
