//! The crate's free functions, on the default [`Executor`]: every optimizer's calls (generated
//! from the registry) and [`convert`].
//!
//! The naming rule of the calls, the same for every optimizer `X`:
//!
//! - `X_step(buffers.., &config, step)`: the configured call, buffers of any element types (the
//!   state buffers all of one type), panicking on bad input; `try_X_step` returns the error.
//! - `X_step_f32`, `X_step_f16`, `X_step_bf16`: the quick call, every buffer of that type, the
//!   defaults of the library the optimizer follows, and the scalars it takes bare (the
//!   learning rate; momentum's `mu`; the step where the formula depends on it); each has its
//!   `try_` twin.
//! - `Executor::X_step(..)`: the configured call on a chosen executor, returning the error.
//!
//! Every panic message starts with `optkern: `.

use crate::element::{Element, bf16, f16};
use crate::error::Error;
use crate::executor::Executor;
use crate::optim::registry::registry;

/// Converts `src` into `dst` with the default [`Executor`] (see [`Executor::convert`]).
///
/// # Panics
/// If the lengths differ or `OPTKERN_BACKEND` is invalid; nothing is written then.
/// [`try_convert`] returns the error instead.
pub fn convert<A: Element, B: Element>(src: &[A], dst: &mut [B]) {
    if let Err(e) = try_convert(src, dst) {
        panic!("optkern: {e}");
    }
}

/// [`convert`], returning the error instead of panicking.
pub fn try_convert<A: Element, B: Element>(src: &[A], dst: &mut [B]) -> Result<(), Error> {
    Executor::new()?.convert(src, dst)
}

/// Schedule-free: turns the training weights `y` into the evaluation weights `x` with the
/// default [`Executor`] (see [`Executor::schedulefree_eval`]); `beta` is the config's `beta1`
/// (AdamW) or `momentum` (SGD).
///
/// # Panics
/// If the lengths differ, `beta` is invalid or `OPTKERN_BACKEND` is invalid; nothing is
/// written then. [`try_schedulefree_eval`] returns the error instead.
pub fn schedulefree_eval<W: Element, T: Element>(w: &mut [W], z: &[T], beta: f64) {
    if let Err(e) = try_schedulefree_eval(w, z, beta) {
        panic!("optkern: {e}");
    }
}

/// [`schedulefree_eval`], returning the error instead of panicking.
pub fn try_schedulefree_eval<W: Element, T: Element>(
    w: &mut [W],
    z: &[T],
    beta: f64,
) -> Result<(), Error> {
    Executor::new()?.schedulefree_eval(w, z, beta)
}

/// Schedule-free: turns the evaluation weights `x` back into the training weights `y` with
/// the default [`Executor`] (see [`Executor::schedulefree_train`]).
///
/// # Panics
/// As [`schedulefree_eval`]. [`try_schedulefree_train`] returns the error instead.
pub fn schedulefree_train<W: Element, T: Element>(w: &mut [W], z: &[T], beta: f64) {
    if let Err(e) = try_schedulefree_train(w, z, beta) {
        panic!("optkern: {e}");
    }
}

/// [`schedulefree_train`], returning the error instead of panicking.
pub fn try_schedulefree_train<W: Element, T: Element>(
    w: &mut [W],
    z: &[T],
    beta: f64,
) -> Result<(), Error> {
    Executor::new()?.schedulefree_train(w, z, beta)
}

/// Writes every optimizer's free functions from the registry.
macro_rules! free_calls {
    ([$(#[$doc:meta])*] [$(#[$qdoc:meta])*] $config:path, $call:ident, $try_call:ident,
        ($w:ident; $($s:ident),*; $($o:ident),*; $g:ident), $quick:ident, ($($qa:ident: $qty:ty),*),
        [$($typed:ident / $try_typed:ident: $t:ident),+]) => {
        free_calls!(@generic [$(#[$doc])*] $call, $try_call, $config, $w; $($s),*; $($o),*; $g);
        free_calls!(@quicks [$($typed / $try_typed: $t),+]
            ([$(#[$qdoc])*] $call, $config, $quick, $w; $($s),*; $($o),*; $g; $($qa: $qty),*));
    };
    (@quicks [$($typed:ident / $try_typed:ident: $t:ident),+] $args:tt) => {
        $(free_calls!(@quick $typed, $try_typed, $t, $args);)+
    };
    (@generic [$(#[$doc:meta])*] $call:ident, $try_call:ident, $config:path, $w:ident; ; ; $g:ident) => {
        free_calls!(@emit [$(#[$doc])*
            ///
            /// On the default [`Executor`], for weights and gradient of any element types;
            /// `step` counts from 1.
            ///
            /// # Panics
            /// If the lengths differ, `step` is 0, or `OPTKERN_BACKEND` is invalid; nothing is
            /// written then.
        ] [W: Element, G: Element] [f32] $call, $try_call, $config, $w; ; ; $g);
    };
    (@generic [$(#[$doc:meta])*] $call:ident, $try_call:ident, $config:path, $w:ident; $($s:ident),*; $($o:ident),*; $g:ident) => {
        free_calls!(@emit [$(#[$doc])*
            ///
            /// On the default [`Executor`], for buffers of any element types (the state buffers
            /// all of one type); `step` counts from 1.
            ///
            /// # Panics
            /// If a buffer's length differs from the weights', the state buffers given are not
            /// those the config uses, `step` is 0, or `OPTKERN_BACKEND` is invalid; nothing is
            /// written then.
        ] [W: Element, T: Element, G: Element] [T] $call, $try_call, $config, $w; $($s),*; $($o),*; $g);
    };
    (@emit [$(#[$doc:meta])*] [$($generics:tt)*] [$t:ty] $call:ident, $try_call:ident, $config:path,
        $w:ident; $($s:ident),*; $($o:ident),*; $g:ident) => {
        $(#[$doc])*
        #[doc = concat!("[`", stringify!($try_call), "`] returns the error instead.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $call<$($generics)*>($w: &mut [W], $($s: &mut [$t],)* $($o: Option<&mut [$t]>,)*
            $g: &[G], config: &$config, step: u64) {
            if let Err(e) = $try_call($w, $($s,)* $($o,)* $g, config, step) {
                panic!("optkern: {e}");
            }
        }

        #[doc = concat!("[`", stringify!($call), "`], returning the error instead of panicking.")]
        #[allow(clippy::too_many_arguments)]
        pub fn $try_call<$($generics)*>($w: &mut [W], $($s: &mut [$t],)* $($o: Option<&mut [$t]>,)*
            $g: &[G], config: &$config, step: u64) -> Result<(), Error> {
            Executor::new()?.$call($w, $($s,)* $($o,)* $g, config, step)
        }
    };
    (@quick $typed:ident, $try_typed:ident, $t:ident, ([$(#[$qdoc:meta])*] $call:ident, $config:path, $quick:ident,
        $w:ident; $($s:ident),*; $($o:ident),*; $g:ident; $($qa:ident: $qty:ty),*)) => {
        #[doc = concat!("The quick form of [`", stringify!($call), "`]: every buffer in `", stringify!($t), "`, on the default [`Executor`].")]
        ///
        $(#[$qdoc])*
        /// Computes in `f32` and rounds each stored value to nearest even.
        ///
        /// # Panics
        /// If a buffer is not as long as the weights, a scalar is invalid for the optimizer
        /// (checked as its builder checks it), or `OPTKERN_BACKEND` is invalid. Nothing is
        /// written then.
        #[doc = concat!("[`", stringify!($try_typed), "`] returns the error instead.")]
        pub fn $typed($w: &mut [$t], $($s: &mut [$t],)* $g: &[$t], $($qa: $qty),*) {
            if let Err(e) = $try_typed($w, $($s,)* $g, $($qa),*) {
                panic!("optkern: {e}");
            }
        }

        #[doc = concat!("[`", stringify!($typed), "`], returning the error instead of panicking.")]
        pub fn $try_typed($w: &mut [$t], $($s: &mut [$t],)* $g: &[$t], $($qa: $qty),*) -> Result<(), Error> {
            let (config, step) = <$config>::$quick($($qa),*)?;
            Executor::new()?
                .$call($w, $($s,)* $(free_calls!(@none $o),)* $g, &config, step)
                .map_err(|e| e.in_call(stringify!($typed)))
        }
    };
    (@none $o:ident) => {
        None
    };
}

registry!(calls, free_calls);
