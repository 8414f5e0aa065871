//! The floating-point environment every call runs in, whatever the caller left.
//!
//! The control registers that change arithmetic results are per thread: on x86-64 the MXCSR
//! (rounding mode, flush-to-zero `FTZ`, denormals-are-zero `DAZ`, the exception masks), on
//! aarch64 the FPCR (rounding mode, `FZ`, `FZ16`, default NaN, alternate half precision and
//! handling, trap enables). A caller may have changed them (`torch.set_flush_denormal(True)`,
//! a library built with fast-math, `fesetround`), on its own thread or on the pool's workers.
//!
//! [`Environment::enter`] sets the IEEE 754 default on the current thread (round to nearest
//! even, subnormals kept, every exception masked, no alternate behaviour) and the returned
//! guard puts the caller's registers back when it is dropped, also when the call unwinds. The
//! public calls enter it on the caller's thread, and [`super::Isa::run`] on every thread that
//! runs a chunk, so the bits of a result never depend on the caller's environment. The
//! exception flags (x86 MXCSR bits 0-5; aarch64 keeps them apart in FPSR, which is not
//! touched) raised during the call stay raised, as if the caller's own code had raised them.
//!
//! Reading the register is one instruction; it is written only when it differs from the
//! default (twice then: on entry and on exit).

/// The caller's floating-point environment, saved while a call runs in the default one.
#[must_use = "the default environment lasts as long as the guard"]
pub(crate) struct Environment {
    /// The caller's register value, `None` when it already was the default (nothing to put
    /// back).
    #[allow(dead_code)] // never read on targets without a known control register
    saved: Option<u64>,
}

impl Environment {
    /// Sets the default floating-point environment on this thread until the guard drops.
    #[inline]
    pub(crate) fn enter() -> Environment {
        let current = imp::read();
        if imp::is_default(current) {
            return Environment { saved: None };
        }
        imp::write(imp::DEFAULT);
        Environment {
            saved: Some(current),
        }
    }
}

impl Drop for Environment {
    #[inline]
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            imp::write(imp::restore(saved, imp::read()));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    /// Exception flags (bits 0-5).
    const FLAGS: u64 = 0x3f;
    /// Every exception masked (bits 7-12), round to nearest (bits 13-14 clear), no FTZ
    /// (bit 15) and no DAZ (bit 6): the value the System V ABI starts a thread with.
    pub(super) const DEFAULT: u64 = 0x1f80;

    pub(super) fn is_default(csr: u64) -> bool {
        csr & !FLAGS == DEFAULT
    }

    /// The caller's controls with the flags raised in the meantime added.
    pub(super) fn restore(saved: u64, now: u64) -> u64 {
        saved | (now & FLAGS)
    }

    #[inline]
    pub(super) fn read() -> u64 {
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` stores the 32-bit MXCSR to the given address, a valid `u32` on
        // the stack; SSE is part of x86-64.
        unsafe {
            core::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        }
        u64::from(csr)
    }

    #[inline]
    pub(super) fn write(csr: u64) {
        let csr = csr as u32;
        // SAFETY: `ldmxcsr` loads MXCSR from a valid `u32`; every value written here has the
        // reserved bits (16-31) clear, as read or as the default.
        unsafe {
            core::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// All controls clear: round to nearest (RMode, bits 22-23), no flush to zero (FZ bit 24,
    /// FZ16 bit 19), NaN propagation (DN bit 25), IEEE half precision (AHP bit 26), no
    /// alternate handling (FEAT_AFP's FIZ, AH, NEP, bits 0-2), no trap enabled (bits 8-12,
    /// 15): what Linux starts a thread with.
    pub(super) const DEFAULT: u64 = 0;

    pub(super) fn is_default(fpcr: u64) -> bool {
        fpcr == DEFAULT
    }

    /// The flags live in FPSR, which the crate does not touch.
    pub(super) fn restore(saved: u64, _now: u64) -> u64 {
        saved
    }

    #[inline]
    pub(super) fn read() -> u64 {
        let fpcr: u64;
        // SAFETY: reading FPCR is allowed at EL0 and has no side effect.
        unsafe {
            core::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
        fpcr
    }

    #[inline]
    pub(super) fn write(fpcr: u64) {
        // SAFETY: writing FPCR is allowed at EL0; the value is the default or one read from
        // the register before.
        unsafe {
            core::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nostack, preserves_flags));
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    //! No control register known to the crate: the environment is left as it is.
    pub(super) const DEFAULT: u64 = 0;
    pub(super) fn is_default(_: u64) -> bool {
        true
    }
    pub(super) fn restore(saved: u64, _: u64) -> u64 {
        saved
    }
    pub(super) fn read() -> u64 {
        DEFAULT
    }
    pub(super) fn write(_: u64) {}
}

/// Sets a thread's floating-point controls for the crate's tests: `flush` sets flush-to-zero
/// and denormals-are-zero (FZ and FZ16 on aarch64), `toward_zero` the rounding mode. Returns
/// the previous register value, for [`restore_for_tests`].
#[cfg(feature = "emulated-backends")]
pub(crate) fn set_for_tests(flush: bool, toward_zero: bool) -> u64 {
    let previous = imp::read();
    #[cfg(target_arch = "x86_64")]
    let value = previous | if flush { 0x8040 } else { 0 } | if toward_zero { 0x6000 } else { 0 };
    #[cfg(target_arch = "aarch64")]
    let value = previous
        | if flush { (1 << 24) | (1 << 19) } else { 0 }
        | if toward_zero { 3 << 22 } else { 0 };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let value = {
        let _ = (flush, toward_zero);
        previous
    };
    imp::write(value);
    previous
}

/// Puts back a value [`set_for_tests`] returned.
#[cfg(feature = "emulated-backends")]
pub(crate) fn restore_for_tests(previous: u64) {
    imp::write(previous);
}

/// This thread's control register, for the crate's tests.
#[cfg(feature = "emulated-backends")]
pub(crate) fn current_for_tests() -> u64 {
    imp::read()
}
