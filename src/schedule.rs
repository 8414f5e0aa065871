//! Learning-rate schedules, as plain functions of the step.
//!
//! A [`StatefulOptimizer`](crate::StatefulOptimizer) takes a new learning rate between any two
//! steps ([`set_lr`](crate::StatefulOptimizer::set_lr)), so a schedule needs no object of its
//! own: compute the rate for the coming step and set it. [`WarmupCosine`] is the common one
//! (linear warm-up, then cosine decay); [`linear_warmup`] and [`cosine_decay`] are its two
//! halves, to combine as you like.
//!
//! ```
//! use optkern::schedule::WarmupCosine;
//! use optkern::{Adam, StatefulOptimizer};
//!
//! let schedule = WarmupCosine::new(1e-3, 100, 1000, 1e-5);
//! let mut opt = StatefulOptimizer::<f32>::new(Adam::builder(schedule.lr(1)).build()?)?;
//! let (mut w, g) = (vec![1.0f32; 10], vec![0.1f32; 10]);
//! for step in 1..=3 {
//!     opt.set_lr(schedule.lr(step))?;
//!     opt.step(&mut [&mut w[..]], &[&g[..]])?;
//! }
//! assert_eq!(opt.steps(), 3);
//! # Ok::<(), optkern::Error>(())
//! ```
//!
//! The cosine comes from the platform's math library (`f64::cos`); on one machine the
//! schedule gives the same rates every run, so a resumed run gets the same bits.

/// The warm-up factor of step `step` (counted from 1): `step / warmup_steps`, reaching 1 at
/// the end of the warm-up and staying there; 1 when `warmup_steps` is 0.
pub fn linear_warmup(step: u64, warmup_steps: u64) -> f64 {
    if step >= warmup_steps {
        1.0
    } else {
        step as f64 / warmup_steps as f64
    }
}

/// The cosine decay factor after `step` of `total_steps` decay steps: from 1 at step 0 down to
/// `min_factor` at `total_steps` and after, `min + (1 - min) * (1 + cos(pi * step / total)) / 2`.
/// `min_factor` when `total_steps` is 0.
pub fn cosine_decay(step: u64, total_steps: u64, min_factor: f64) -> f64 {
    if step >= total_steps {
        return min_factor;
    }
    let progress = step as f64 / total_steps as f64;
    min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (core::f64::consts::PI * progress).cos())
}

/// Linear warm-up to `base_lr` over `warmup_steps`, then cosine decay to `min_lr` at
/// `total_steps` (and `min_lr` after): the schedule of most transformer recipes.
///
/// Step `k <= warmup_steps` gets `base_lr * k / warmup_steps`; the decay starts from `base_lr`
/// at the last warm-up step (step 1 without warm-up) and reaches `min_lr` at `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// The peak learning rate, reached at the end of the warm-up.
    pub base_lr: f64,
    /// Steps of linear warm-up (0: none).
    pub warmup_steps: u64,
    /// The step at which the decay reaches `min_lr`.
    pub total_steps: u64,
    /// The final learning rate.
    pub min_lr: f64,
}

impl WarmupCosine {
    /// The schedule with these values.
    pub fn new(base_lr: f64, warmup_steps: u64, total_steps: u64, min_lr: f64) -> WarmupCosine {
        WarmupCosine {
            base_lr,
            warmup_steps,
            total_steps,
            min_lr,
        }
    }

    /// The learning rate of step `step` (counted from 1, as the kernels count).
    ///
    /// ```
    /// let s = optkern::schedule::WarmupCosine::new(1.0, 10, 110, 0.0);
    /// assert_eq!(s.lr(5), 0.5);
    /// assert_eq!(s.lr(10), 1.0);
    /// assert!((s.lr(60) - 0.5).abs() < 1e-12);
    /// assert_eq!(s.lr(110), 0.0);
    /// ```
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * linear_warmup(step, self.warmup_steps);
        }
        // The decay starts from base_lr at the last warm-up step (at step 1 without warm-up).
        let start = self.warmup_steps.max(1);
        let decay_steps = self.total_steps.saturating_sub(start);
        let since = step.saturating_sub(start);
        // cosine_decay with the factor applied to the span above min_lr, so that the end
        // is exactly min_lr.
        self.min_lr + (self.base_lr - self.min_lr) * cosine_decay(since, decay_steps, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine() {
        let s = WarmupCosine::new(2.0, 4, 104, 0.5);
        let lrs: Vec<f64> = (1..=4).map(|k| s.lr(k)).collect();
        assert_eq!(lrs, [0.5, 1.0, 1.5, 2.0]);
        assert!((s.lr(54) - 1.25).abs() < 1e-12, "half way: {}", s.lr(54));
        assert_eq!(s.lr(104), 0.5);
        assert_eq!(s.lr(10_000), 0.5);
        // Decreasing after the warm-up.
        assert!((5..=104).all(|k| s.lr(k) <= s.lr(k - 1)));
    }

    #[test]
    fn without_warm_up_the_first_step_gets_the_base_rate() {
        let s = WarmupCosine::new(1.0, 0, 101, 0.0);
        assert_eq!(s.lr(1), 1.0);
        assert!((s.lr(51) - 0.5).abs() < 1e-12);
        assert_eq!(s.lr(101), 0.0);
        // No decay span at all: the minimum after the warm-up.
        let flat = WarmupCosine::new(1.0, 10, 5, 0.1);
        assert_eq!((flat.lr(10), flat.lr(11)), (0.1, 0.1));
        assert_eq!(linear_warmup(3, 0), 1.0);
        assert_eq!(cosine_decay(0, 0, 0.25), 0.25);
        assert_eq!(cosine_decay(0, 10, 0.25), 1.0);
    }
}
