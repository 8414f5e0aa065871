//! The kernels the benchmarks and the comparison example measure, each with the plain
//! per-element loop a user would write without this crate (the baseline). Included by
//! `benches/kernels.rs` and `examples/compare.rs` with `#[path]`.

#![allow(dead_code)]

use optkern::{
    Adadelta, Adagrad, Adam, Adamax, Ademamix, Adopt, Asgd, Element, Executor, Lion, Momentum,
    Nadam, Radam, Rmsprop, Rprop, ScheduleFreeAdamw, ScheduleFreeSgd,
};

/// One optimizer's kernel call and its plain loop, over weights, `STATES` state buffers and a
/// gradient.
pub trait Kernel<const STATES: usize> {
    const NAME: &'static str;
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        s: &mut [Vec<T>; STATES],
        g: &[G],
    );
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        s: &mut [Vec<T>; STATES],
        g: &[G],
    );
}

/// The learning rate of every measured step.
pub const LR: f32 = 1e-3;
/// The learning rate as the configs take it.
pub const LR64: f64 = LR as f64;

pub struct MomentumKernel(pub Momentum);

impl Kernel<1> for MomentumKernel {
    const NAME: &'static str = "momentum";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [v]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.momentum_step(w, v, g, &self.0, 2).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [v]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        let mu = self.0.momentum() as f32;
        for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
            let vn = mu * v.to_f32() + g.to_f32();
            *v = T::from_f32(vn);
            *w = W::from_f32(w.to_f32() - LR * vn);
        }
    }
}

pub struct AdamKernel(pub Adam);

impl Kernel<2> for AdamKernel {
    const NAME: &'static str = "adam";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.adam_step(w, m, v, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let ((b1, b2), eps) = (self.0.betas(), self.0.eps() as f32);
        let (b1, b2) = (b1 as f32, b2 as f32);
        let step_size = LR / (1.0 - b1.powi(10));
        let k = 1.0 / (1.0 - b2.powi(10)).sqrt();
        for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g.to_f32();
            let mn = b1 * m.to_f32() + (1.0 - b1) * g;
            let vn = b2 * v.to_f32() + (1.0 - b2) * g * g;
            *m = T::from_f32(mn);
            *v = T::from_f32(vn);
            *w = W::from_f32(w.to_f32() - step_size * mn / (vn.sqrt() * k + eps));
        }
    }
}

pub struct RmspropKernel(pub Rmsprop);

impl Kernel<1> for RmspropKernel {
    const NAME: &'static str = "rmsprop";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [sq]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.rmsprop_step(w, sq, None, None, g, &self.0, 1).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [sq]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        let (alpha, eps) = (self.0.alpha() as f32, self.0.eps() as f32);
        for ((w, sq), g) in w.iter_mut().zip(sq.iter_mut()).zip(g) {
            let g = g.to_f32();
            let s = alpha * sq.to_f32() + (1.0 - alpha) * g * g;
            *sq = T::from_f32(s);
            *w = W::from_f32(w.to_f32() - LR * g / (s.sqrt() + eps));
        }
    }
}

pub struct AdagradKernel(pub Adagrad);

impl Kernel<1> for AdagradKernel {
    const NAME: &'static str = "adagrad";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [sum]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.adagrad_step(w, sum, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [sum]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        for ((w, sum), g) in w.iter_mut().zip(sum.iter_mut()).zip(g) {
            let g = g.to_f32();
            let s = sum.to_f32() + g * g;
            *sum = T::from_f32(s);
            *w = W::from_f32(w.to_f32() - LR * g / (s.sqrt() + self.0.eps() as f32));
        }
    }
}

pub struct LionKernel(pub Lion);

impl Kernel<1> for LionKernel {
    const NAME: &'static str = "lion";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.lion_step(w, m, g, &self.0, 1).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        for ((w, m), g) in w.iter_mut().zip(m.iter_mut()).zip(g) {
            let (g, mv) = (g.to_f32(), m.to_f32());
            let c = b1 * mv + (1.0 - b1) * g;
            let sign = if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            *w = W::from_f32(w.to_f32() - LR * sign);
            *m = T::from_f32(b2 * mv + (1.0 - b2) * g);
        }
    }
}

pub struct AdamaxKernel(pub Adamax);

impl Kernel<2> for AdamaxKernel {
    const NAME: &'static str = "adamax";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, u]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.adamax_step(w, m, u, g, &self.0, 1).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, u]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let eps = self.0.eps() as f32;
        let step_size = LR / (1.0 - b1);
        for (((w, m), u), g) in w.iter_mut().zip(m.iter_mut()).zip(u.iter_mut()).zip(g) {
            let g = g.to_f32();
            let mv = b1 * m.to_f32() + (1.0 - b1) * g;
            let uv = (b2 * u.to_f32()).max(g.abs() + eps);
            *w = W::from_f32(w.to_f32() - step_size * mv / uv);
            *m = T::from_f32(mv);
            *u = T::from_f32(uv);
        }
    }
}

pub struct AdadeltaKernel(pub Adadelta);

impl Kernel<2> for AdadeltaKernel {
    const NAME: &'static str = "adadelta";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [sq, acc]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.adadelta_step(w, sq, acc, g, &self.0, 1).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [sq, acc]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (rho, eps) = (self.0.rho() as f32, self.0.eps() as f32);
        for (((w, sq), acc), g) in w.iter_mut().zip(sq.iter_mut()).zip(acc.iter_mut()).zip(g) {
            let g = g.to_f32();
            let s = rho * sq.to_f32() + (1.0 - rho) * g * g;
            let a = acc.to_f32();
            let delta = (a + eps).sqrt() / (s + eps).sqrt() * g;
            *w = W::from_f32(w.to_f32() - LR * delta);
            *sq = T::from_f32(s);
            *acc = T::from_f32(rho * a + (1.0 - rho) * delta * delta);
        }
    }
}

pub struct NadamKernel(pub Nadam);

/// NAdam is timed at step 10 (its coefficients computed once per call).
impl Kernel<2> for NadamKernel {
    const NAME: &'static str = "nadam";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.nadam_step(w, m, v, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let eps = self.0.eps() as f32;
        let (mu, mu_next) = (self.0.momentum_at(10), self.0.momentum_at(11));
        let product = self.0.mu_product(10);
        let a = (LR64 * (1.0 - mu) / (1.0 - product)) as f32;
        let b = (LR64 * mu_next / (1.0 - product * mu_next)) as f32;
        let bc2 = 1.0 - b2.powi(10);
        for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g.to_f32();
            let mv = b1 * m.to_f32() + (1.0 - b1) * g;
            let vv = b2 * v.to_f32() + (1.0 - b2) * g * g;
            let denom = (vv / bc2).sqrt() + eps;
            *w = W::from_f32(w.to_f32() - (a * g + b * mv) / denom);
            *m = T::from_f32(mv);
            *v = T::from_f32(vv);
        }
    }
}

pub struct RadamKernel(pub Radam);

/// RAdam is timed at step 10, a rectified step (the first is step 6 at `beta2 = 0.999`).
impl Kernel<2> for RadamKernel {
    const NAME: &'static str = "radam";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.radam_step(w, m, v, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let eps = self.0.eps() as f32;
        let r = self.0.rectification(10).expect("step 10 is rectified") as f32;
        let step_size = LR * r * (1.0 - b2.powi(10)).sqrt() / (1.0 - b1.powi(10));
        for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g.to_f32();
            let mv = b1 * m.to_f32() + (1.0 - b1) * g;
            let vv = b2 * v.to_f32() + (1.0 - b2) * g * g;
            *w = W::from_f32(w.to_f32() - step_size * mv / (vv.sqrt() + eps));
            *m = T::from_f32(mv);
            *v = T::from_f32(vv);
        }
    }
}

pub struct RpropKernel(pub Rprop);

/// Rprop is timed at step 2 (step 1 reads no state).
impl Kernel<2> for RpropKernel {
    const NAME: &'static str = "rprop";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [prev, size]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.rprop_step(w, prev, size, g, &self.0, 2).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [prev, size]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let ((minus, plus), (lo, hi)) = (self.0.etas(), self.0.step_sizes());
        let (minus, plus, lo, hi) = (minus as f32, plus as f32, lo as f32, hi as f32);
        for (((w, prev), size), g) in w
            .iter_mut()
            .zip(prev.iter_mut())
            .zip(size.iter_mut())
            .zip(g)
        {
            let g = g.to_f32();
            let p = g * prev.to_f32();
            let f = if p > 0.0 {
                plus
            } else if p < 0.0 {
                minus
            } else {
                1.0
            };
            let s = (size.to_f32() * f).clamp(lo, hi);
            let g = if p < 0.0 { 0.0 } else { g };
            let sign = if g > 0.0 {
                1.0
            } else if g < 0.0 {
                -1.0
            } else {
                0.0
            };
            *w = W::from_f32(w.to_f32() - sign * s);
            *prev = T::from_f32(g);
            *size = T::from_f32(s);
        }
    }
}

pub struct AsgdKernel(pub Asgd);

/// ASGD is timed past its `t0` (the averaging branch).
impl Kernel<1> for AsgdKernel {
    const NAME: &'static str = "asgd";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [ax]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.asgd_step(w, ax, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [ax]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        let (eta, mu) = (self.0.eta(10), self.0.mu(10));
        let shrink = (1.0 - self.0.lambd() * f64::from(eta)) as f32;
        for ((w, ax), g) in w.iter_mut().zip(ax.iter_mut()).zip(g) {
            let wn = w.to_f32() * shrink - eta * g.to_f32();
            let a = ax.to_f32();
            *ax = T::from_f32(a + (wn - a) * mu);
            *w = W::from_f32(wn);
        }
    }
}

pub struct AdoptKernel(pub Adopt);

/// ADOPT is timed at step 10 (step 1 only sets the second moment).
impl Kernel<2> for AdoptKernel {
    const NAME: &'static str = "adopt";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.adopt_step(w, m, v, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let eps = self.0.eps() as f32;
        let clip = Adopt::clip_bound(10);
        for (((w, m), v), g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g.to_f32();
            let vo = v.to_f32();
            let n = (g / vo.sqrt().max(eps)).clamp(-clip, clip);
            let mv = b1 * m.to_f32() + (1.0 - b1) * n;
            *w = W::from_f32(w.to_f32() - LR * mv);
            *m = T::from_f32(mv);
            *v = T::from_f32(b2 * vo + (1.0 - b2) * g * g);
        }
    }
}

pub struct AdemamixKernel(pub Ademamix);

/// AdEMAMix is timed at step 10.
impl Kernel<3> for AdemamixKernel {
    const NAME: &'static str = "ademamix";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [m, v, slow]: &mut [Vec<T>; 3],
        g: &[G],
    ) {
        exec.ademamix_step(w, m, v, slow, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [m, v, slow]: &mut [Vec<T>; 3],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let b3 = self.0.beta3_at(10) as f32;
        let eps = self.0.eps() as f32;
        let a = LR / (1.0 - b1.powi(10));
        let b = LR * self.0.alpha_at(10) as f32;
        let bc2 = 1.0 - b2.powi(10);
        let state = m.iter_mut().zip(v.iter_mut()).zip(slow.iter_mut());
        for ((w, ((m, v), slow)), g) in w.iter_mut().zip(state).zip(g) {
            let g = g.to_f32();
            let mv = b1 * m.to_f32() + (1.0 - b1) * g;
            let vv = b2 * v.to_f32() + (1.0 - b2) * g * g;
            let sv = b3 * slow.to_f32() + (1.0 - b3) * g;
            let denom = (vv / bc2).sqrt() + eps;
            *w = W::from_f32(w.to_f32() - (a * mv + b * sv) / denom);
            *m = T::from_f32(mv);
            *v = T::from_f32(vv);
            *slow = T::from_f32(sv);
        }
    }
}

pub struct ScheduleFreeAdamwKernel(pub ScheduleFreeAdamw);

/// Schedule-Free AdamW is timed at step 10.
impl Kernel<2> for ScheduleFreeAdamwKernel {
    const NAME: &'static str = "schedulefree_adamw";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [z, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        exec.schedulefree_adamw_step(w, z, v, g, &self.0, 10)
            .unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [z, v]: &mut [Vec<T>; 2],
        g: &[G],
    ) {
        let (b1, b2) = (self.0.betas().0 as f32, self.0.betas().1 as f32);
        let (lr_t, c) = self.0.schedule_at(10);
        let (lr_t, c) = (lr_t as f32, c as f32);
        let eps = self.0.eps() as f32;
        let bc2 = 1.0 - b2.powi(10);
        let y_step = lr_t * (b1 * (1.0 - c) - 1.0);
        let state = z.iter_mut().zip(v.iter_mut());
        for ((w, (z, v)), g) in w.iter_mut().zip(state).zip(g) {
            let g = g.to_f32();
            let vv = b2 * v.to_f32() + (1.0 - b2) * g * g;
            let u = g / ((vv / bc2).sqrt() + eps);
            let (y, zv) = (w.to_f32(), z.to_f32());
            *w = W::from_f32(y + c * (zv - y) + y_step * u);
            *z = T::from_f32(zv - lr_t * u);
            *v = T::from_f32(vv);
        }
    }
}

pub struct ScheduleFreeSgdKernel(pub ScheduleFreeSgd);

/// Schedule-Free SGD is timed at step 10.
impl Kernel<1> for ScheduleFreeSgdKernel {
    const NAME: &'static str = "schedulefree_sgd";
    fn step<W: Element, T: Element, G: Element>(
        &self,
        exec: &Executor,
        w: &mut [W],
        [z]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        exec.schedulefree_sgd_step(w, z, g, &self.0, 10).unwrap();
    }
    fn plain<W: Element, T: Element, G: Element>(
        &self,
        w: &mut [W],
        [z]: &mut [Vec<T>; 1],
        g: &[G],
    ) {
        let b = self.0.momentum() as f32;
        let (lr_t, c) = self.0.schedule_at(10);
        let (lr_t, c) = (lr_t as f32, c as f32);
        let y_step = lr_t * (b * (1.0 - c) - 1.0);
        for ((w, z), g) in w.iter_mut().zip(z.iter_mut()).zip(g) {
            let g = g.to_f32();
            let (y, zv) = (w.to_f32(), z.to_f32());
            *w = W::from_f32(y + c * (zv - y) + y_step * g);
            *z = T::from_f32(zv - lr_t * g);
        }
    }
}
