//! A model-shaped training step: 200 tensors from 1K to 4M elements (50.05M parameters, sizes
//! like a transformer's matrices, embeddings, biases and norms), one Adam step with the
//! gradient check, the global-norm clipping and the loss-scale multiplier:
//!
//! - **fused**: [`Executor::check_and_step`]: one read pass over every gradient (non-finite
//!   check and global norm), then one Adam pass over all tensors together with the multiplier
//!   folded in (and, with master weights, the bf16 model copy written in the same pass);
//! - **separate**: what a training loop does without it, tensor by tensor: a norm pass per
//!   tensor, a pass multiplying each gradient in place by the multiplier (unscaling and
//!   clipping), the Adam step per tensor, and (with master weights) a conversion pass per
//!   tensor writing the model copy.
//!
//! Setups: `f32` (weights, moments, gradients) and `bf16-master` (f32 master weights and
//! moments, bf16 gradients, bf16 model copy). Throughput is the fused traffic model's bytes
//! (gradient read twice, weights and moments read and written once, model copy written once)
//! for both variants, so the GB/s ratio is the speed ratio. The multiplier is exactly 1 (loss
//! scale 1, clipping threshold above the norm), so repeated iterations keep the same values;
//! every pass still runs.
//!
//! `cargo bench --bench model`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use optkern::{Adam, Element, Executor, Optimizer, TensorStep, bf16};
use std::hint::black_box;
use std::time::Duration;

/// 200 tensor sizes, 50,053,120 elements in all, in a fixed interleaved order.
fn sizes() -> Vec<usize> {
    let mut sizes = Vec::with_capacity(200);
    sizes.extend([4_194_304usize; 8]);
    sizes.extend([589_824usize; 24]);
    sizes.extend([262_144usize; 8]);
    sizes.extend([3072usize; 40]);
    sizes.extend([1024usize; 120]);
    // Interleave deterministically (a model alternates big and small tensors).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..sizes.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        sizes.swap(i, (state % (i as u64 + 1)) as usize);
    }
    sizes
}

struct Tensor<W, G, C> {
    w: Vec<W>,
    m: Vec<f32>,
    v: Vec<f32>,
    g: Vec<G>,
    copy: Vec<C>,
}

fn model<W: Element, G: Element, C: Element>(with_copy: bool) -> Vec<Tensor<W, G, C>> {
    sizes()
        .into_iter()
        .map(|n| Tensor {
            w: (0..n)
                .map(|i| W::from_f32(((i % 1000) as f32 - 500.0) * 1e-4))
                .collect(),
            m: vec![0.0; n],
            v: vec![0.0; n],
            g: (0..n)
                .map(|i| G::from_f32(((i % 777) as f32 - 388.0) * 1e-5))
                .collect(),
            copy: vec![C::ZERO; if with_copy { n } else { 0 }],
        })
        .collect()
}

const MAX_NORM: f64 = 1e30;

fn fused<W: Element, G: Element, C: Element>(
    exec: &Executor,
    tensors: &mut [Tensor<W, G, C>],
    adam: &Optimizer,
    with_copy: bool,
) {
    let mut steps: Vec<TensorStep<'_, W, f32, G, C>> = tensors
        .iter_mut()
        .map(|t| TensorStep {
            weights: &mut t.w[..],
            state: vec![&mut t.m[..], &mut t.v[..]],
            grad: &t.g[..],
            model_copy: with_copy.then_some(&mut t.copy[..]),
        })
        .collect();
    let report = exec
        .check_and_step(&mut steps, adam, 10, Some(MAX_NORM))
        .unwrap();
    assert!(report.applied);
    black_box(report);
}

fn separate<W: Element, G: Element, C: Element>(
    exec: &Executor,
    tensors: &mut [Tensor<W, G, C>],
    adam: &Adam,
    with_copy: bool,
) {
    // Norm (and non-finite check) per tensor, combined.
    let mut sum_of_squares = 0.0f64;
    for t in tensors.iter() {
        sum_of_squares += exec.grad_norm(&[&t.g[..]]).sum_of_squares();
    }
    assert!(sum_of_squares.is_finite());
    let multiplier = (MAX_NORM / (sum_of_squares.sqrt() + 1e-6)).min(1.0) as f32;
    for t in tensors.iter_mut() {
        // Unscale and clip the gradient in place, as a training loop does.
        for x in t.g.iter_mut() {
            *x = G::from_f32(x.to_f32() * multiplier);
        }
        exec.adam_step(&mut t.w, &mut t.m, &mut t.v, &t.g, adam, 10)
            .unwrap();
        if with_copy {
            exec.convert(&t.w, &mut t.copy).unwrap();
        }
    }
}

fn setup<W: Element, G: Element, C: Element>(c: &mut Criterion, name: &str, with_copy: bool) {
    let adam = Adam::builder(1e-3).build().unwrap();
    let optimizer: Optimizer = adam.into();
    let exec = Executor::new().unwrap();
    let mut tensors = model::<W, G, C>(with_copy);
    let n: usize = tensors.iter().map(|t| t.w.len()).sum();
    let per_element = G::DTYPE.size() * 2
        + 2 * (W::DTYPE.size() + 2 * 4)
        + if with_copy { C::DTYPE.size() } else { 0 };
    let mut group = c.benchmark_group(format!("model/{name}"));
    group
        .throughput(Throughput::Bytes((n * per_element) as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("fused", |b| {
        b.iter(|| fused(&exec, &mut tensors, &optimizer, with_copy))
    });
    group.bench_function("separate", |b| {
        b.iter(|| separate(&exec, &mut tensors, &adam, with_copy))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    assert_eq!(sizes().iter().sum::<usize>(), 50_053_120);
    setup::<f32, f32, f32>(c, "f32", false);
    setup::<f32, bf16, bf16>(c, "bf16-master", true);
}

criterion_group!(model_step, benches);
criterion_main!(model_step);
