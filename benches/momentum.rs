//! Momentum step: one group per dtype setup, one id per backend (sequential, and the best
//! backend across all threads) and size, with throughput in bytes under the traffic model
//! (read w, v, g; write w, v), and the plain per-element loop a user would write as the
//! baseline.
//!
//! `cargo bench --bench momentum`; `OPTKERN_BENCH_SIZES=1024,65536` picks sizes.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use optkern::{Backend, Element, Executor, Momentum, Threads, bf16, f16};
use std::hint::black_box;
use std::time::Duration;

const LR: f32 = 1e-3;
const MU: f32 = 0.9;

fn sizes() -> Vec<usize> {
    match std::env::var("OPTKERN_BENCH_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("a size"))
            .collect(),
        Err(_) => vec![1 << 10, 1 << 16, 1 << 20, 1 << 24],
    }
}

/// Bytes one step moves: w, v, g read; w, v written.
fn traffic<W: Element, T: Element, G: Element>(n: usize) -> u64 {
    let (w, t, g) = (W::DTYPE.size(), T::DTYPE.size(), G::DTYPE.size());
    (n * (2 * w + 2 * t + g)) as u64
}

fn buffers<W: Element, T: Element, G: Element>(n: usize) -> (Vec<W>, Vec<T>, Vec<G>) {
    let w = (0..n)
        .map(|i| W::from_f32(((i % 1000) as f32 - 500.0) * 1e-3))
        .collect();
    let v = (0..n)
        .map(|i| T::from_f32(((i % 77) as f32) * 1e-4))
        .collect();
    let g = (0..n)
        .map(|i| G::from_f32(((i % 313) as f32 - 156.0) * 1e-4))
        .collect();
    (w, v, g)
}

/// The loop a user would write without this crate: widen, update, narrow, per element.
fn plain_loop<W: Element, T: Element, G: Element>(w: &mut [W], v: &mut [T], g: &[G]) {
    for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
        let vn = MU * v.to_f32() + g.to_f32();
        *v = T::from_f32(vn);
        *w = W::from_f32(w.to_f32() - LR * vn);
    }
}

fn group<W: Element, T: Element, G: Element>(c: &mut Criterion, name: &str) {
    let config = Momentum::heavy_ball(LR, MU).build().unwrap();
    let mut group = c.benchmark_group(format!("momentum/{name}"));
    for n in sizes() {
        group.throughput(Throughput::Bytes(traffic::<W, T, G>(n)));
        if n >= 1 << 22 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(3));
        } else {
            group
                .sample_size(30)
                .measurement_time(Duration::from_secs(2));
        }
        let (mut w, mut v, g) = buffers::<W, T, G>(n);
        for backend in Backend::available() {
            let exec = Executor::with_backend(backend)
                .unwrap()
                .threads(Threads::Sequential);
            group.bench_with_input(BenchmarkId::new(backend.name(), n), &n, |b, _| {
                b.iter(|| {
                    exec.momentum_step(&config, &mut w, &mut v, black_box(&g), 2)
                        .unwrap()
                })
            });
        }
        let exec = Executor::new().unwrap();
        let id = format!("{}-all-threads", exec.backend().name());
        group.bench_with_input(BenchmarkId::new(id, n), &n, |b, _| {
            b.iter(|| {
                exec.momentum_step(&config, &mut w, &mut v, black_box(&g), 2)
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("plain-loop", n), &n, |b, _| {
            b.iter(|| plain_loop(&mut w, &mut v, black_box(&g)))
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    group::<f32, f32, f32>(c, "f32");
    group::<bf16, f32, bf16>(c, "bf16-w-g_f32-v");
    group::<bf16, bf16, bf16>(c, "bf16");
    group::<f16, f16, f16>(c, "f16");
}

criterion_group!(momentum, benches);
criterion_main!(momentum);
