//! Which instruction set runs the kernels: detection, the `OPTKERN_BACKEND` override, and
//! explicit choice.

use core::fmt;
use core::str::FromStr;
use std::sync::OnceLock;

use crate::arch::Isa;
use crate::error::Error;

/// An instruction set the kernels can run on.
///
/// Every backend gives the same bits for the same inputs (see the crate documentation), so
/// the choice is about speed only. By default the best backend the CPU supports runs, unless
/// the environment variable `OPTKERN_BACKEND` names another (see [`Backend::detect`]); an
/// [`Executor`](crate::Executor) can run any available backend explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// Portable Rust, one element at a time. Runs everywhere; the reference the others are
    /// tested against.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C (x86-64-v3 plus F16C): 8 `f32` lanes.
    Avx2,
    /// x86-64 with AVX-512 F, BW, CD, DQ and VL (x86-64-v4): 16 `f32` lanes.
    Avx512,
    /// aarch64 with NEON (Advanced SIMD): 4 `f32` lanes.
    Neon,
    /// The 16-lane code paths run in portable code (pulp's `Scalar512b`): for the crate's
    /// tests, so that 16-lane logic is exercised on machines without AVX-512. Available only
    /// off x86-64: there the AVX2-pair emulation runs the same walk, and compiling both made
    /// the library's test build more than twice its time.
    #[cfg(feature = "emulated-backends")]
    #[doc(hidden)]
    EmulatedScalar16,
    /// The 16-lane code paths run as pairs of AVX2 vectors (pulp's `V3_512b`): for the crate's
    /// tests.
    #[cfg(feature = "emulated-backends")]
    #[doc(hidden)]
    EmulatedAvx2Pair,
}

/// What the CPU supports, detected once.
struct Detected {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<crate::arch::x86::Avx2>,
    #[cfg(target_arch = "x86_64")]
    avx512: Option<crate::arch::x86::Avx512>,
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    neon: Option<crate::arch::aarch64::NeonToken>,
}

fn detected() -> &'static Detected {
    static DETECTED: OnceLock<Detected> = OnceLock::new();
    DETECTED.get_or_init(|| Detected {
        #[cfg(target_arch = "x86_64")]
        avx2: crate::arch::x86::Avx2::try_new(),
        #[cfg(target_arch = "x86_64")]
        avx512: crate::arch::x86::Avx512::try_new(),
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        neon: crate::arch::aarch64::NeonToken::try_new(),
    })
}

impl Backend {
    /// Every backend the crate knows, in order of preference from worst to best within each
    /// architecture.
    pub const ALL: [Backend; 4] = [
        Backend::Scalar,
        Backend::Avx2,
        Backend::Avx512,
        Backend::Neon,
    ];

    /// The name used by `OPTKERN_BACKEND` and [`FromStr`]: `scalar`, `avx2`, `avx512`, `neon`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
            #[cfg(feature = "emulated-backends")]
            Backend::EmulatedScalar16 => "emulated-scalar16",
            #[cfg(feature = "emulated-backends")]
            Backend::EmulatedAvx2Pair => "emulated-avx2pair",
        }
    }

    /// How many `f32` lanes one vector holds.
    pub const fn lanes(self) -> usize {
        match self {
            Backend::Scalar => 1,
            Backend::Avx2 => 8,
            Backend::Avx512 => 16,
            Backend::Neon => 4,
            #[cfg(feature = "emulated-backends")]
            Backend::EmulatedScalar16 | Backend::EmulatedAvx2Pair => 16,
        }
    }

    /// Whether this backend can run on this CPU.
    pub fn is_available(self) -> bool {
        self.isa().is_some()
    }

    /// The backends this CPU can run, best first (the scalar backend is always last).
    ///
    /// This is what the hardware supports; `OPTKERN_BACKEND` does not shorten it.
    pub fn available() -> Vec<Backend> {
        let mut list: Vec<Backend> = Backend::ALL
            .into_iter()
            .rev()
            .filter(|b| b.is_available())
            .collect();
        // Keep the scalar fallback last whatever the declaration order.
        list.sort_by_key(|b| *b == Backend::Scalar);
        list
    }

    /// The best backend this CPU can run, ignoring `OPTKERN_BACKEND`.
    pub fn best() -> Backend {
        Backend::available()[0]
    }

    /// The backend the crate's calls use by default.
    ///
    /// That is the best one the CPU supports, unless the environment variable
    /// `OPTKERN_BACKEND` is set to `scalar`, `avx2`, `avx512` or `neon` (any case): then that
    /// backend, which caps the choice (for instance `avx2` on an AVX-512 machine). An empty
    /// value or `auto` means no cap. A name that is not a backend, or a backend this CPU lacks,
    /// is an error: the crate never falls back silently and never runs an instruction the CPU
    /// does not have.
    ///
    /// The variable is read once, on first use, and the answer is kept for the life of the
    /// process.
    pub fn detect() -> Result<Backend, Error> {
        static DEFAULT: OnceLock<Result<Backend, Error>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| Backend::from_env(std::env::var("OPTKERN_BACKEND").ok()))
            .clone()
    }

    /// What `detect` does with a given value of `OPTKERN_BACKEND` (`None`: unset).
    fn from_env(value: Option<String>) -> Result<Backend, Error> {
        match value.as_deref().map(str::trim) {
            None | Some("") => Ok(Backend::best()),
            Some(name) if name.eq_ignore_ascii_case("auto") => Ok(Backend::best()),
            Some(name) => {
                let backend: Backend = name.parse()?;
                if backend.is_available() {
                    Ok(backend)
                } else {
                    Err(backend.unavailable("OPTKERN_BACKEND"))
                }
            }
        }
    }

    /// The error for this backend when the CPU cannot run it, asked for from `source`; it
    /// carries the list of the backends that can run.
    pub(crate) fn unavailable(self, source: &'static str) -> Error {
        Error::BackendUnavailable {
            backend: self.name(),
            source,
            available: Backend::available().iter().map(|b| b.name()).collect(),
        }
    }

    /// The token proving this backend can run, if it can.
    pub(crate) fn isa(self) -> Option<Isa> {
        let _detected = detected();
        match self {
            Backend::Scalar => Some(Isa::Scalar),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => _detected.avx2.map(Isa::Avx2),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => _detected.avx512.map(Isa::Avx512),
            #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
            Backend::Neon => _detected.neon.map(Isa::Neon),
            #[cfg(all(
                feature = "emulated-backends",
                not(target_arch = "x86_64"),
                not(optkern_no_scalar16)
            ))]
            Backend::EmulatedScalar16 => Some(Isa::Scalar16),
            #[cfg(all(feature = "emulated-backends", target_arch = "x86_64"))]
            Backend::EmulatedAvx2Pair => _detected.avx2.map(Isa::Avx2Pair),
            _ => None,
        }
    }

    /// The emulated 16-lane backends this machine can run (for the crate's tests).
    #[cfg(feature = "emulated-backends")]
    #[doc(hidden)]
    pub fn emulated() -> Vec<Backend> {
        [Backend::EmulatedScalar16, Backend::EmulatedAvx2Pair]
            .into_iter()
            .filter(|b| b.is_available())
            .collect()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    /// Parses `scalar`, `avx2`, `avx512` or `neon`, in any case.
    fn from_str(name: &str) -> Result<Self, Error> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| Error::UnknownBackend {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values() {
        assert_eq!(Backend::from_env(None), Ok(Backend::best()));
        assert_eq!(
            Backend::from_env(Some(" AUTO ".into())),
            Ok(Backend::best())
        );
        assert_eq!(
            Backend::from_env(Some("Scalar".into())),
            Ok(Backend::Scalar)
        );
        assert_eq!(
            Backend::from_env(Some("sse9".into())),
            Err(Error::UnknownBackend {
                name: "sse9".into()
            })
        );
        for backend in Backend::ALL {
            let got = Backend::from_env(Some(backend.name().into()));
            if backend.is_available() {
                assert_eq!(got, Ok(backend));
            } else {
                assert_eq!(got, Err(backend.unavailable("OPTKERN_BACKEND")));
                let message = got.unwrap_err().to_string();
                assert!(
                    message.contains(backend.name()) && message.contains("scalar"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn available_is_best_first_and_ends_with_scalar() {
        let list = Backend::available();
        assert_eq!(list.last(), Some(&Backend::Scalar));
        assert_eq!(list[0], Backend::best());
        assert!(list.iter().all(|b| b.is_available()));
    }
}
