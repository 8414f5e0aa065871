//! Every optimizer step (momentum, Adam, RMSprop, Adagrad, Lion): one group per optimizer and
//! dtype setup (f32; bf16
//! weights and gradients with f32 state; all bf16; f16), one id per backend (sequential, and
//! the best backend across all threads) and size, throughput in bytes under the traffic model
//! (every buffer read once, weights and state written once), and the plain per-element loop a
//! user would write as the baseline.
//!
//! `cargo bench --bench kernels`; `OPTKERN_BENCH_SIZES=65536,1048576` picks sizes and
//! `OPTKERN_BENCH_ONLY=adam` one optimizer.

#[path = "support/kernels.rs"]
mod kernels;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kernels::{AdagradKernel, AdamKernel, Kernel, LR64, LionKernel, MomentumKernel, RmspropKernel};
use optkern::{
    Adagrad, Adam, Backend, Element, Executor, Lion, Momentum, Rmsprop, Threads, bf16, f16,
};
use std::hint::black_box;
use std::time::Duration;

fn sizes() -> Vec<usize> {
    match std::env::var("OPTKERN_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("a size"))
            .collect(),
        Err(_) => vec![1 << 10, 1 << 16, 1 << 20, 1 << 24],
    }
}

fn wanted(optimizer: &str) -> bool {
    std::env::var("OPTKERN_BENCH_ONLY").map_or(true, |only| only.split(',').any(|o| o == optimizer))
}

fn group<K: Kernel<N>, W: Element, T: Element, G: Element, const N: usize>(
    c: &mut Criterion,
    kernel: &K,
    setup: &str,
) {
    if !wanted(K::NAME) {
        return;
    }
    let bytes_per_element = 2 * W::DTYPE.size() + 2 * N * T::DTYPE.size() + G::DTYPE.size();
    let mut group = c.benchmark_group(format!("{}/{setup}", K::NAME));
    for n in sizes() {
        group.throughput(Throughput::Bytes((n * bytes_per_element) as u64));
        if n >= 1 << 22 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(3));
        } else {
            group
                .sample_size(30)
                .measurement_time(Duration::from_secs(2));
        }
        let mut w: Vec<W> = (0..n)
            .map(|i| W::from_f32(((i % 1000) as f32 - 500.0) * 1e-3))
            .collect();
        let mut s: [Vec<T>; N] = core::array::from_fn(|k| {
            (0..n)
                .map(|i| T::from_f32(((i + k) % 77) as f32 * 1e-4))
                .collect()
        });
        let g: Vec<G> = (0..n)
            .map(|i| G::from_f32(((i % 313) as f32 - 156.0) * 1e-4))
            .collect();
        for backend in Backend::available() {
            let exec = Executor::with_backend(backend)
                .unwrap()
                .with_threads(Threads::Sequential);
            group.bench_with_input(BenchmarkId::new(backend.name(), n), &n, |b, _| {
                b.iter(|| kernel.step(&exec, &mut w, &mut s, black_box(&g)))
            });
        }
        let exec = Executor::new().unwrap();
        let id = format!("{}-all-threads", exec.backend().name());
        group.bench_with_input(BenchmarkId::new(id, n), &n, |b, _| {
            b.iter(|| kernel.step(&exec, &mut w, &mut s, black_box(&g)))
        });
        group.bench_with_input(BenchmarkId::new("plain-loop", n), &n, |b, _| {
            b.iter(|| kernel.plain(&mut w, &mut s, black_box(&g)))
        });
    }
    group.finish();
}

fn setups<K: Kernel<N>, const N: usize>(c: &mut Criterion, kernel: &K) {
    group::<K, f32, f32, f32, N>(c, kernel, "f32");
    group::<K, bf16, f32, bf16, N>(c, kernel, "bf16-w-g_f32-state");
    group::<K, bf16, bf16, bf16, N>(c, kernel, "bf16");
    group::<K, f16, f16, f16, N>(c, kernel, "f16");
}

fn benches(c: &mut Criterion) {
    setups(
        c,
        &MomentumKernel(Momentum::heavy_ball(LR64, 0.9).build().unwrap()),
    );
    setups(c, &AdamKernel(Adam::builder(LR64).build().unwrap()));
    setups(c, &RmspropKernel(Rmsprop::builder(LR64).build().unwrap()));
    setups(c, &AdagradKernel(Adagrad::builder(LR64).build().unwrap()));
    setups(c, &LionKernel(Lion::builder(LR64).build().unwrap()));
}

criterion_group!(kernels_bench, benches);
criterion_main!(kernels_bench);
