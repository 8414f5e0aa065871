//! A sequential call never touches rayon: after sequential calls of every kind (and parallel
//! calls on buffers below the threshold), rayon's global pool has not been started, so a
//! program can still configure it with `build_global` (which fails once the pool exists), and
//! a program where threads cannot be spawned can still use the crate.
//!
//! Its own test binary: the global pool is per process, and no other test may start it first.

use optkern::{Adam, Executor, Momentum, StatefulOptimizer, TensorStep, Threads, bf16};

#[test]
fn sequential_calls_do_not_start_the_global_pool() {
    let n = 1000;
    let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let gb: Vec<bf16> = g.iter().map(|&x| bf16::from_f32(x)).collect();
    for threads in [
        Threads::Sequential,
        // Below its threshold, a parallel policy stays on the calling thread.
        Threads::parallel(),
    ] {
        let exec = Executor::new().unwrap().with_threads(threads);
        let norm = exec.grad_norm(&[&g[..], &g[..10]]);
        assert!(norm.norm() > 0.0);
        exec.grad_norm(&[&gb[..]]);
        let (mut w, mut v) = (vec![0.5f32; n], vec![0.0f32; n]);
        let momentum = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
        exec.momentum_step(&mut w, &mut v, &g, &momentum, 1)
            .unwrap();
        let adam = Adam::builder(1e-3).build().unwrap();
        let (mut m, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut tensors = [TensorStep::new(&mut w, vec![&mut m[..], &mut s[..]], &g)];
        exec.step_many(&mut tensors, &adam.into(), 1).unwrap();
        let mut opt = StatefulOptimizer::<f32>::with_executor(adam, exec);
        let mut w2 = vec![0.5f32; n];
        opt.step(&mut [&mut w2[..]], &[&g[..]]).unwrap();
    }
    optkern::momentum_step_f32(&mut vec![0.5; 64], &mut vec![0.0; 64], &g[..64], 0.1, 0.9);
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("no sequential call may start rayon's global pool");
}
