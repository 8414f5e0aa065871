//! The registry: every optimizer of the crate, one entry each.
//!
//! An entry names the optimizer's variant of [`Optimizer`], its config type, its checkpoint
//! code (never reused: a checkpoint stores it) and its display name, then its public
//! single-tensor calls: the buffers each takes (weights; the state buffers every config of it
//! uses; those only some configs use, passed as `Option`; gradient), named as its
//! `state_buffers` names them, and its fixed-type quick calls: the config's function that turns
//! their scalars into a config and a step, and the names of the `f32`, `f16` and `bf16` calls.
//!
//! Three places expand the registry, each with a macro of its own: [`Optimizer`] and its
//! dispatch (here, from the list of variants), the executor's single-tensor calls
//! (`executor.rs`) and the free functions (`calls.rs`), one call at a time. The table is
//! parsed in one place, `parse_registry`. Adding an optimizer is its file in `optim/` and one
//! entry here.

/// Expands the table of every optimizer for `$callback!`: `registry!(variants, cb)` calls it
/// once with every variant (`Variant(Config) = code, "name";`), `registry!(calls, cb)` once per
/// single-tensor call (`[docs] [quick docs] Config, call, try_call, (w; state..; optional..; g),
/// quick_fn, (scalars), [typed / try_typed: type, ..]`).
macro_rules! registry {
    ($mode:ident, $callback:ident) => {
        $crate::optim::registry::parse_registry! { $mode $callback
            /// Plain SGD (no state).
            Sgd($crate::optim::sgd::Sgd) = 0, "SGD" {
                /// One step of plain SGD.
                fn sgd_step / try_sgd_step (w; ; ; g)
                    /// Plain SGD, `w -= lr*g`: PyTorch's `SGD(lr)` without momentum.
                    quick sgd_quick (lr: f32)
                    [sgd_step_f32 / try_sgd_step_f32: f32, sgd_step_f16 / try_sgd_step_f16: f16,
                     sgd_step_bf16 / try_sgd_step_bf16: bf16];
            }
            /// SGD with momentum, in any of its forms (one buffer: the velocity).
            Momentum($crate::optim::momentum::Momentum) = 1, "momentum" {
                /// One step of SGD with momentum (in the PyTorch form, step 1 sets `v = g`
                /// without reading `v`).
                fn momentum_step / try_momentum_step (w; velocity; ; g)
                    /// Heavy-ball momentum, `v = mu*v + g; w -= lr*v`: PyTorch's
                    /// `SGD(lr, momentum=mu)` without dampening, Nesterov or weight decay. The
                    /// call takes no step count and never applies PyTorch's first-step rule
                    /// (`v = g`), which gives the same result on a velocity that starts at zero.
                    quick momentum_quick (lr: f32, mu: f32)
                    [momentum_step_f32 / try_momentum_step_f32: f32,
                     momentum_step_f16 / try_momentum_step_f16: f16,
                     momentum_step_bf16 / try_momentum_step_bf16: bf16];
            }
            /// Adam, AdamW, AMSGrad.
            Adam($crate::optim::adam::Adam) = 2, "Adam" {
                /// One Adam (or AdamW) step; for AMSGrad, see `amsgrad_step`.
                fn adam_step / try_adam_step (w; m, v; ; g)
                    /// Adam with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`).
                    quick adam_quick (lr: f32, step: u64)
                    [adam_step_f32 / try_adam_step_f32: f32, adam_step_f16 / try_adam_step_f16: f16,
                     adam_step_bf16 / try_adam_step_bf16: bf16];
                /// One AMSGrad step: Adam with the running maximum of the second moment in
                /// `v_max` (the config must have `amsgrad` set).
                fn amsgrad_step / try_amsgrad_step (w; m, v, v_max; ; g)
                    /// AMSGrad with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`).
                    quick amsgrad_quick (lr: f32, step: u64)
                    [amsgrad_step_f32 / try_amsgrad_step_f32: f32,
                     amsgrad_step_f16 / try_amsgrad_step_f16: f16,
                     amsgrad_step_bf16 / try_amsgrad_step_bf16: bf16];
            }
            /// RMSprop.
            Rmsprop($crate::optim::rmsprop::Rmsprop) = 3, "RMSprop" {
                /// One RMSprop step: `grad_avg` is `Some` exactly when the config is centered,
                /// `momentum_buffer` exactly when it has a momentum buffer.
                fn rmsprop_step / try_rmsprop_step (w; square_avg; grad_avg, momentum_buffer; g)
                    /// RMSprop with PyTorch's defaults (`alpha = 0.99`, `eps = 1e-8`, not
                    /// centered, no momentum).
                    quick rmsprop_quick (lr: f32)
                    [rmsprop_step_f32 / try_rmsprop_step_f32: f32,
                     rmsprop_step_f16 / try_rmsprop_step_f16: f16,
                     rmsprop_step_bf16 / try_rmsprop_step_bf16: bf16];
            }
            /// Adagrad.
            Adagrad($crate::optim::adagrad::Adagrad) = 4, "Adagrad" {
                /// One Adagrad step (on step 1 the accumulator is not read).
                fn adagrad_step / try_adagrad_step (w; sum; ; g)
                    /// Adagrad with PyTorch's defaults (no decay, `eps = 1e-10`, the
                    /// accumulator starting at 0 on step 1).
                    quick adagrad_quick (lr: f32, step: u64)
                    [adagrad_step_f32 / try_adagrad_step_f32: f32,
                     adagrad_step_f16 / try_adagrad_step_f16: f16,
                     adagrad_step_bf16 / try_adagrad_step_bf16: bf16];
            }
            /// Lion.
            Lion($crate::optim::lion::Lion) = 5, "Lion" {
                /// One Lion step.
                fn lion_step / try_lion_step (w; m; ; g)
                    /// Lion with lion-pytorch's defaults (`betas = (0.9, 0.99)`, no decay).
                    quick lion_quick (lr: f32)
                    [lion_step_f32 / try_lion_step_f32: f32, lion_step_f16 / try_lion_step_f16: f16,
                     lion_step_bf16 / try_lion_step_bf16: bf16];
            }
            /// LAMB.
            Lamb($crate::optim::lamb::Lamb) = 6, "LAMB" {
                /// One LAMB step on one tensor: the clipping by `max_grad_norm` uses this
                /// tensor's gradient norm; to clip by the norm of a whole model, step its
                /// tensors together with `Executor::step_many`.
                fn lamb_step / try_lamb_step (w; m, v; ; g)
                    /// LAMB with timm's defaults (`betas = (0.9, 0.999)`, `eps = 1e-6`,
                    /// `weight_decay = 0.01`, `max_grad_norm = 1.0`).
                    quick lamb_quick (lr: f32, step: u64)
                    [lamb_step_f32 / try_lamb_step_f32: f32, lamb_step_f16 / try_lamb_step_f16: f16,
                     lamb_step_bf16 / try_lamb_step_bf16: bf16];
            }
            /// Adamax.
            Adamax($crate::optim::adamax::Adamax) = 7, "Adamax" {
                /// One Adamax step.
                fn adamax_step / try_adamax_step (w; m, u; ; g)
                    /// Adamax with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`).
                    quick adamax_quick (lr: f32, step: u64)
                    [adamax_step_f32 / try_adamax_step_f32: f32,
                     adamax_step_f16 / try_adamax_step_f16: f16,
                     adamax_step_bf16 / try_adamax_step_bf16: bf16];
            }
            /// Adadelta.
            Adadelta($crate::optim::adadelta::Adadelta) = 8, "Adadelta" {
                /// One Adadelta step.
                fn adadelta_step / try_adadelta_step (w; square_avg, acc_delta; ; g)
                    /// Adadelta with PyTorch's defaults (`rho = 0.9`, `eps = 1e-6`; its
                    /// default `lr` is 1.0).
                    quick adadelta_quick (lr: f32)
                    [adadelta_step_f32 / try_adadelta_step_f32: f32,
                     adadelta_step_f16 / try_adadelta_step_f16: f16,
                     adadelta_step_bf16 / try_adadelta_step_bf16: bf16];
            }
            /// NAdam and NAdamW.
            Nadam($crate::optim::nadam::Nadam) = 9, "NAdam" {
                /// One NAdam (or NAdamW) step.
                fn nadam_step / try_nadam_step (w; m, v; ; g)
                    /// NAdam with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`,
                    /// `momentum_decay = 4e-3`).
                    quick nadam_quick (lr: f32, step: u64)
                    [nadam_step_f32 / try_nadam_step_f32: f32,
                     nadam_step_f16 / try_nadam_step_f16: f16,
                     nadam_step_bf16 / try_nadam_step_bf16: bf16];
            }
            /// RAdam and RAdamW.
            Radam($crate::optim::radam::Radam) = 10, "RAdam" {
                /// One RAdam (or RAdamW) step.
                fn radam_step / try_radam_step (w; m, v; ; g)
                    /// RAdam with PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`).
                    quick radam_quick (lr: f32, step: u64)
                    [radam_step_f32 / try_radam_step_f32: f32,
                     radam_step_f16 / try_radam_step_f16: f16,
                     radam_step_bf16 / try_radam_step_bf16: bf16];
            }
            /// Rprop.
            Rprop($crate::optim::rprop::Rprop) = 11, "Rprop" {
                /// One Rprop step (on step 1 neither buffer is read: `prev` is 0 and the step
                /// sizes are `lr`).
                fn rprop_step / try_rprop_step (w; prev, step_size; ; g)
                    /// Rprop with PyTorch's defaults (`etas = (0.5, 1.2)`, `step_sizes =
                    /// (1e-6, 50)`; `lr` the initial step size).
                    quick rprop_quick (lr: f32, step: u64)
                    [rprop_step_f32 / try_rprop_step_f32: f32,
                     rprop_step_f16 / try_rprop_step_f16: f16,
                     rprop_step_bf16 / try_rprop_step_bf16: bf16];
            }
            /// ASGD.
            Asgd($crate::optim::asgd::Asgd) = 12, "ASGD" {
                /// One ASGD step (`ax` is the averaged weights).
                fn asgd_step / try_asgd_step (w; ax; ; g)
                    /// ASGD with PyTorch's defaults (`lambd = 1e-4`, `alpha = 0.75`,
                    /// `t0 = 1e6`).
                    quick asgd_quick (lr: f32, step: u64)
                    [asgd_step_f32 / try_asgd_step_f32: f32,
                     asgd_step_f16 / try_asgd_step_f16: f16,
                     asgd_step_bf16 / try_asgd_step_bf16: bf16];
            }
            /// ADOPT.
            Adopt($crate::optim::adopt::Adopt) = 13, "ADOPT" {
                /// One ADOPT step (step 1 only sets `v = g * g`).
                fn adopt_step / try_adopt_step (w; m, v; ; g)
                    /// ADOPT with `pytorch_optimizer`'s defaults (`betas = (0.9, 0.9999)`,
                    /// `eps = 1e-6`, the clip `t^0.25`).
                    quick adopt_quick (lr: f32, step: u64)
                    [adopt_step_f32 / try_adopt_step_f32: f32,
                     adopt_step_f16 / try_adopt_step_f16: f16,
                     adopt_step_bf16 / try_adopt_step_bf16: bf16];
            }
            /// AdEMAMix.
            Ademamix($crate::optim::ademamix::Ademamix) = 14, "AdEMAMix" {
                /// One AdEMAMix step (`slow` is the slow average).
                fn ademamix_step / try_ademamix_step (w; m, v, slow; ; g)
                    /// AdEMAMix with `pytorch_optimizer`'s defaults (`betas = (0.9, 0.999,
                    /// 0.9999)`, `alpha = 5`, no warm-up, `eps = 1e-8`).
                    quick ademamix_quick (lr: f32, step: u64)
                    [ademamix_step_f32 / try_ademamix_step_f32: f32,
                     ademamix_step_f16 / try_ademamix_step_f16: f16,
                     ademamix_step_bf16 / try_ademamix_step_bf16: bf16];
            }
            /// Schedule-Free AdamW.
            ScheduleFreeAdamw($crate::optim::schedulefree::ScheduleFreeAdamw) = 15,
                "Schedule-Free AdamW" {
                /// One Schedule-Free AdamW step: the weights hold `y` (step 1 reads neither
                /// buffer: `z` becomes the weights).
                fn schedulefree_adamw_step / try_schedulefree_adamw_step (w; z, v; ; g)
                    /// Schedule-Free AdamW with the library's defaults (`betas = (0.9,
                    /// 0.999)`, `eps = 1e-8`, no warm-up, `r = 0`, `weight_lr_power = 2`).
                    quick schedulefree_adamw_quick (lr: f32, step: u64)
                    [schedulefree_adamw_step_f32 / try_schedulefree_adamw_step_f32: f32,
                     schedulefree_adamw_step_f16 / try_schedulefree_adamw_step_f16: f16,
                     schedulefree_adamw_step_bf16 / try_schedulefree_adamw_step_bf16: bf16];
            }
            /// Schedule-Free SGD.
            ScheduleFreeSgd($crate::optim::schedulefree::ScheduleFreeSgd) = 16,
                "Schedule-Free SGD" {
                /// One Schedule-Free SGD step: the weights hold `y` (step 1 does not read `z`:
                /// it becomes the weights).
                fn schedulefree_sgd_step / try_schedulefree_sgd_step (w; z; ; g)
                    /// Schedule-Free SGD with the library's defaults (`momentum = 0.9`, no
                    /// warm-up, `r = 0`, `weight_lr_power = 2`).
                    quick schedulefree_sgd_quick (lr: f32, step: u64)
                    [schedulefree_sgd_step_f32 / try_schedulefree_sgd_step_f32: f32,
                     schedulefree_sgd_step_f16 / try_schedulefree_sgd_step_f16: f16,
                     schedulefree_sgd_step_bf16 / try_schedulefree_sgd_step_bf16: bf16];
            }
        }
    };
}
pub(crate) use registry;

/// Parses the registry's table, once, for [`registry`].
macro_rules! parse_registry {
    (variants $callback:ident $(
        $(#[$vdoc:meta])*
        $variant:ident($config:path) = $code:literal, $name:literal { $($calls:tt)* }
    )+) => {
        $callback! { $($(#[$vdoc])* $variant($config) = $code, $name;)+ }
    };
    (calls $callback:ident $(
        $(#[$vdoc:meta])*
        $variant:ident($config:path) = $code:literal, $name:literal {
            $(
                $(#[$doc:meta])*
                fn $call:ident / $try_call:ident $buffers:tt
                    $(#[$qdoc:meta])*
                    quick $quick:ident $scalars:tt $typed:tt;
            )+
        }
    )+) => {
        $($(
            $callback! {
                [$(#[$doc])*] [$(#[$qdoc])*] $config, $call, $try_call, $buffers, $quick, $scalars, $typed
            }
        )+)+
    };
}
pub(crate) use parse_registry;

/// Writes [`Optimizer`] from the registry.
macro_rules! optimizer_enum {
    ($($(#[$vdoc:meta])* $variant:ident($config:path) = $code:literal, $name:literal;)+) => {
        /// Any optimizer config of the crate, for the calls that step many tensors and for the
        /// stateful optimizer.
        ///
        /// | variant | checkpoint code | name |
        /// |---|---|---|
        $(#[doc = concat!("| `", stringify!($variant), "` | ", $code, " | ", $name, " |")])+
        #[derive(Clone, Copy, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum Optimizer {
            $($(#[$vdoc])* $variant($config),)+
        }

        $(
            impl From<$config> for Optimizer {
                fn from(config: $config) -> Optimizer {
                    Optimizer::$variant(config)
                }
            }
        )+

        impl Optimizer {
            /// The optimizer's name, for messages (`"Adam"`, `"momentum"`, ...).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Optimizer::$variant(_) => $name,)+
                }
            }

            /// The code that identifies the optimizer in a checkpoint (see the table above).
            pub fn code(&self) -> u8 {
                match self {
                    $(Optimizer::$variant(_) => $code,)+
                }
            }

            /// The state buffers each tensor needs with this config, in the order a
            /// [`TensorStep`](crate::TensorStep) gives them; each optimizer's documentation
            /// lists them.
            pub fn state_buffers(&self) -> &'static [&'static str] {
                match self {
                    $(Optimizer::$variant(c) => OptimizerConfig::state_buffers(c),)+
                }
            }

            /// The learning rate.
            pub fn lr(&self) -> f64 {
                match self {
                    $(Optimizer::$variant(c) => c.lr(),)+
                }
            }

            /// Changes the learning rate (for a schedule), checking it as the config's own
            /// `set_lr` does; nothing changes when it fails.
            pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
                match self {
                    $(Optimizer::$variant(c) => c.set_lr(lr),)+
                }
            }

            /// The names of the flags of its checkpoint record, in their order: the discrete
            /// choices of the config, which a checkpoint must share with the optimizer it is
            /// loaded into (see [`StatefulOptimizer::load`](crate::StatefulOptimizer::load)).
            pub(crate) fn flag_names(&self) -> &'static [&'static str] {
                match self {
                    $(Optimizer::$variant(_) => {
                        const {
                            assert!(
                                <$config as OptimizerConfig>::FLAG_NAMES.len()
                                    == <$config as OptimizerConfig>::FIELDS.1
                            )
                        };
                        <$config as OptimizerConfig>::FLAG_NAMES
                    })+
                }
            }

            /// The checkpoint record: the code, the numbers and the flags.
            pub(crate) fn fields(&self) -> (u8, Vec<f64>, Vec<u8>) {
                match self {
                    $(Optimizer::$variant(c) => {
                        let (nums, flags) = c.fields();
                        debug_assert_eq!(
                            (nums.len(), flags.len()),
                            <$config as OptimizerConfig>::FIELDS,
                            "checkpoint record length"
                        );
                        ($code, nums, flags)
                    })+
                }
            }

            /// The config of a checkpoint record, validated by its optimizer's builder.
            pub(crate) fn from_fields(
                code: u8,
                nums: &[f64],
                flags: &[u8],
            ) -> Result<Optimizer, CheckpointError> {
                match code {
                    $($code => {
                        if (nums.len(), flags.len()) != <$config as OptimizerConfig>::FIELDS {
                            return Err(WRONG_FIELD_COUNT);
                        }
                        <$config as OptimizerConfig>::from_fields(nums, flags).map(Optimizer::$variant)
                    })+
                    _ => Err(CheckpointError::Malformed {
                        reason: "unknown optimizer code",
                    }),
                }
            }

            /// One step of every tensor (checked against `state_buffers`).
            pub(crate) fn step_many<W: Element, T: Element, G: Element, C: Element>(
                &self,
                ctx: &Context,
                tensors: &mut [TensorStep<'_, W, T, G, C>],
                step: u64,
            ) {
                match self {
                    $(Optimizer::$variant(c) => c.step_many(ctx, tensors, step),)+
                }
            }
        }
    };
}

use super::OptimizerConfig;
use crate::driver::{Context, TensorStep};
use crate::element::Element;
use crate::error::{CheckpointError, Error};

const WRONG_FIELD_COUNT: CheckpointError = CheckpointError::Malformed {
    reason: "the config has the wrong number of fields for its optimizer",
};

registry!(variants, optimizer_enum);
