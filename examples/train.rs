//! Trains a small neural network on real data with each optimizer of the crate, through
//! [`optkern::StatefulOptimizer`], and compares them.
//!
//! `cargo run --release --example train [-- --quick] [--plot PATH] [--json PATH]`
//!
//! The data is the handwritten-digit set that ships inside the `smartcore` crate (1797 images
//! of 8x8 pixels, 10 classes), split 60/20/20 into training, validation and test sets by a
//! fixed shuffle, each pixel standardised with the training set's mean and deviation. The
//! model is an MLP, 64 inputs -> 128 ReLU units -> 10 logits with softmax cross-entropy, whose
//! forward and backward passes are plain `f32` loops written below: only the update goes
//! through optkern. One `StatefulOptimizer::step` per mini-batch of 64 steps all four tensors
//! (two weight matrices, two biases); the learning rate follows a linear warm-up and a cosine
//! decay (`optkern::schedule::WarmupCosine`), set with `set_lr` before every step.
//!
//! Plain SGD, heavy-ball momentum (PyTorch's `SGD(momentum=0.9)`), Nesterov momentum, the
//! moving-average momentum form (`beta = 0.9`), RMSprop, Adam, AdamW (weight decay 0.01),
//! NAdam, RAdam, ADOPT, AdEMAMix and Schedule-Free AdamW (each at its library's defaults but
//! the learning rate; Schedule-Free AdamW without the schedule, warmed up over the same steps
//! by its own `warmup_steps`, its losses after the last step those of its evaluation weights
//! `x`, its mini-batch losses those of the weights it trains, `y`) start from the same initial weights and see the same mini-batches in the same order. Each
//! gets a learning-rate sweep on a 1-2-5 grid suited to it; its pick is the rate with the
//! lowest validation loss after the last step (the test set plays no part in the choice). The
//! sweep prints every run's final training and validation loss; the table gives each pick's
//! final training, validation and test loss, its test accuracy, the steps it took to bring the
//! training loss (the mean of the last 20 mini-batches) under a target, and the median time of
//! the optimizer step alone and of the whole training step. (The moving-average form at ten
//! times the rate takes the same steps as the heavy-ball form up to rounding, so their rows
//! agree closely; the chart draws one solid, the other dashed.)
//!
//! - `--plot PATH`: the SVG chart of the picks' training loss by step (default
//!   `target/train.svg`).
//! - `--json PATH`: the table's rows as JSON.
//! - `--quick`: 400 steps instead of 2000 and four rates per optimizer instead of six, for CI
//!   (a few seconds in release).

use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use optkern::schedule::WarmupCosine;
use optkern::{
    Adam, Ademamix, Adopt, Executor, Momentum, Nadam, Optimizer, Radam, Rmsprop, ScheduleFreeAdamw,
    Sgd, StatefulOptimizer,
};

const INPUTS: usize = 64;
const HIDDEN: usize = 128;
const CLASSES: usize = 10;
const BATCH: usize = 64;
/// Mini-batch losses averaged for the target and the chart.
const SMOOTH: usize = 20;
/// The seed of the split, the initial weights and the batch order.
const SEED: u64 = 0x0070_746b_6572_6e21;

const USAGE: &str =
    "usage: cargo run --release --example train -- [--quick] [--plot PATH] [--json PATH]
  --quick       a short run for CI: fewer steps and learning rates
  --plot PATH   where to write the SVG chart of training loss (default target/train.svg)
  --json PATH   also write the table's rows as JSON";

struct Options {
    quick: bool,
    plot: String,
    json: Option<String>,
}

fn usage_error(message: &str) -> ! {
    eprintln!("train: {message}\n{USAGE}");
    std::process::exit(2);
}

fn options() -> Options {
    let mut opts = Options {
        quick: false,
        plot: "target/train.svg".to_string(),
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--plot" => {
                opts.plot = args
                    .next()
                    .unwrap_or_else(|| usage_error("--plot needs a path"))
            }
            "--json" => {
                opts.json = Some(
                    args.next()
                        .unwrap_or_else(|| usage_error("--json needs a path")),
                )
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => usage_error(&format!("unknown argument {other:?}")),
        }
    }
    opts
}

/// splitmix64: a small, fixed pseudo-random sequence for the split, the initial weights and
/// the batch order (the same on every machine).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[-1, 1)`.
    fn symmetric(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u32 << 23) as f32 - 1.0
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Samples: `INPUTS` features each, row after row, and their classes.
struct Data {
    x: Vec<f32>,
    y: Vec<usize>,
}

impl Data {
    fn len(&self) -> usize {
        self.y.len()
    }
}

/// The digits, split 60/20/20 into training, validation and test sets by a fixed shuffle, and
/// standardised with the training set's statistics.
fn load_digits(rng: &mut SplitMix64) -> Result<(Data, Data, Data), Box<dyn Error>> {
    let set = smartcore::dataset::digits::load_dataset();
    if set.num_features != INPUTS || set.data.len() != set.num_samples * INPUTS {
        return Err(format!("digits: expected {INPUTS} features per sample").into());
    }
    let mut order: Vec<usize> = (0..set.num_samples).collect();
    rng.shuffle(&mut order);
    let pick = |samples: &[usize]| -> Result<Data, Box<dyn Error>> {
        let mut data = Data {
            x: Vec::with_capacity(samples.len() * INPUTS),
            y: Vec::with_capacity(samples.len()),
        };
        for &i in samples {
            data.x
                .extend_from_slice(&set.data[i * INPUTS..(i + 1) * INPUTS]);
            let class = set.target[i];
            if !(0.0..CLASSES as f32).contains(&class) || class.fract() != 0.0 {
                return Err(format!("digits: unexpected class {class}").into());
            }
            data.y.push(class as usize);
        }
        Ok(data)
    };
    let n_train = set.num_samples * 3 / 5;
    let n_validation = (set.num_samples - n_train) / 2;
    let (train_part, rest) = order.split_at(n_train);
    let (validation_part, test_part) = rest.split_at(n_validation);
    let mut train = pick(train_part)?;
    let mut validation = pick(validation_part)?;
    let mut test = pick(test_part)?;

    let mut sum = [0.0f64; INPUTS];
    let mut sum_sq = [0.0f64; INPUTS];
    for row in train.x.chunks_exact(INPUTS) {
        for ((s, q), &v) in sum.iter_mut().zip(&mut sum_sq).zip(row) {
            *s += f64::from(v);
            *q += f64::from(v) * f64::from(v);
        }
    }
    let n = train.len() as f64;
    let (mut mean, mut scale) = ([0.0f32; INPUTS], [0.0f32; INPUTS]);
    for i in 0..INPUTS {
        let m = sum[i] / n;
        let sd = (sum_sq[i] / n - m * m).max(0.0).sqrt();
        mean[i] = m as f32;
        // A pixel that is blank in every training image carries nothing: it becomes 0.
        scale[i] = if sd > 1e-6 { (1.0 / sd) as f32 } else { 0.0 };
    }
    for data in [&mut train, &mut validation, &mut test] {
        for row in data.x.chunks_exact_mut(INPUTS) {
            for ((v, m), s) in row.iter_mut().zip(&mean).zip(&scale) {
                *v = (*v - m) * s;
            }
        }
    }
    Ok((train, validation, test))
}

/// The MLP's parameters; weight matrices are stored one output unit per row.
#[derive(Clone)]
struct Mlp {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl Mlp {
    /// He-uniform weights for the ReLU layer, `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for the
    /// output layer (PyTorch's default), zero biases.
    fn init(rng: &mut SplitMix64) -> Mlp {
        let a1 = (6.0 / INPUTS as f32).sqrt();
        let a2 = 1.0 / (HIDDEN as f32).sqrt();
        Mlp {
            w1: (0..HIDDEN * INPUTS).map(|_| a1 * rng.symmetric()).collect(),
            b1: vec![0.0; HIDDEN],
            w2: (0..CLASSES * HIDDEN)
                .map(|_| a2 * rng.symmetric())
                .collect(),
            b2: vec![0.0; CLASSES],
        }
    }

    fn zeros() -> Mlp {
        Mlp {
            w1: vec![0.0; HIDDEN * INPUTS],
            b1: vec![0.0; HIDDEN],
            w2: vec![0.0; CLASSES * HIDDEN],
            b2: vec![0.0; CLASSES],
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so that the compiler can keep them in one vector register.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// Activations of one batch.
struct Workspace {
    x: Vec<f32>,
    y: Vec<usize>,
    hidden: Vec<f32>,
    /// Logits, then softmax probabilities, then the gradient of the loss by the logits.
    logits: Vec<f32>,
    d_hidden: Vec<f32>,
}

impl Workspace {
    fn new(batch: usize) -> Workspace {
        Workspace {
            x: vec![0.0; batch * INPUTS],
            y: vec![0; batch],
            hidden: vec![0.0; batch * HIDDEN],
            logits: vec![0.0; batch * CLASSES],
            d_hidden: vec![0.0; batch * HIDDEN],
        }
    }

    fn load(&mut self, data: &Data, samples: &[usize]) {
        self.x.clear();
        self.y.clear();
        for &i in samples {
            self.x
                .extend_from_slice(&data.x[i * INPUTS..(i + 1) * INPUTS]);
            self.y.push(data.y[i]);
        }
    }

    /// Forward pass; leaves the softmax probabilities in `logits` and returns the mean
    /// cross-entropy and the number of correct predictions.
    fn forward(&mut self, m: &Mlp) -> (f32, usize) {
        let n = self.y.len();
        let mut loss = 0.0f32;
        let mut correct = 0;
        for b in 0..n {
            let x = &self.x[b * INPUTS..(b + 1) * INPUTS];
            let h = &mut self.hidden[b * HIDDEN..(b + 1) * HIDDEN];
            for (j, h) in h.iter_mut().enumerate() {
                *h = (dot(&m.w1[j * INPUTS..(j + 1) * INPUTS], x) + m.b1[j]).max(0.0);
            }
            let z = &mut self.logits[b * CLASSES..(b + 1) * CLASSES];
            for (o, z) in z.iter_mut().enumerate() {
                *z = dot(&m.w2[o * HIDDEN..(o + 1) * HIDDEN], h) + m.b2[o];
            }
            // Softmax and cross-entropy through the log-sum-exp.
            let (mut best, mut max) = (0, f32::NEG_INFINITY);
            for (o, &v) in z.iter().enumerate() {
                if v > max {
                    (best, max) = (o, v);
                }
            }
            correct += usize::from(best == self.y[b]);
            // -log softmax(z)[y] = log(sum exp(z - max)) - (z[y] - max)
            let shifted_target = z[self.y[b]] - max;
            let mut total = 0.0f32;
            for v in z.iter_mut() {
                *v = (*v - max).exp();
                total += *v;
            }
            loss += total.ln() - shifted_target;
            for v in z.iter_mut() {
                *v /= total;
            }
        }
        (loss / n as f32, correct)
    }

    /// Backward pass after [`forward`](Self::forward): the gradients of the mean loss by every
    /// parameter, into `g`.
    fn backward(&mut self, m: &Mlp, g: &mut Mlp) {
        let n = self.y.len();
        let inv_n = 1.0 / n as f32;
        for t in [&mut g.w1, &mut g.b1, &mut g.w2, &mut g.b2] {
            t.fill(0.0);
        }
        for b in 0..n {
            let x = &self.x[b * INPUTS..(b + 1) * INPUTS];
            let h = &self.hidden[b * HIDDEN..(b + 1) * HIDDEN];
            let dz = &mut self.logits[b * CLASSES..(b + 1) * CLASSES];
            dz[self.y[b]] -= 1.0;
            let dh = &mut self.d_hidden[b * HIDDEN..(b + 1) * HIDDEN];
            dh.fill(0.0);
            for (o, dz) in dz.iter_mut().enumerate() {
                *dz *= inv_n;
                axpy(&mut g.w2[o * HIDDEN..(o + 1) * HIDDEN], *dz, h);
                g.b2[o] += *dz;
                axpy(dh, *dz, &m.w2[o * HIDDEN..(o + 1) * HIDDEN]);
            }
            for (j, (dh, &h)) in dh.iter_mut().zip(h).enumerate() {
                if h > 0.0 {
                    axpy(&mut g.w1[j * INPUTS..(j + 1) * INPUTS], *dh, x);
                    g.b1[j] += *dh;
                } else {
                    *dh = 0.0;
                }
            }
        }
    }
}

/// Mean loss and accuracy of `m` on all of `data`.
fn evaluate(m: &Mlp, data: &Data) -> (f64, f64) {
    const CHUNK: usize = 256;
    let mut ws = Workspace::new(CHUNK);
    let (mut loss, mut correct) = (0.0f64, 0);
    let all: Vec<usize> = (0..data.len()).collect();
    for samples in all.chunks(CHUNK) {
        ws.load(data, samples);
        let (l, c) = ws.forward(m);
        loss += f64::from(l) * samples.len() as f64;
        correct += c;
    }
    (loss / data.len() as f64, correct as f64 / data.len() as f64)
}

/// An optimizer of the comparison: its name, its learning-rate grid and its config.
struct Candidate {
    name: &'static str,
    /// Drawn dashed in the chart: a variant that can overlap the optimizer before it.
    dashed: bool,
    grid: [f64; 6],
    /// The config at a learning rate, given the run's warm-up steps (for the optimizers that
    /// warm up themselves).
    config: fn(f64, u64) -> Result<Optimizer, optkern::Error>,
    /// Schedule-free: no learning-rate schedule (its own warm-up instead), and the losses
    /// after the last step are those of the evaluation weights `x`.
    schedule_free: bool,
}

fn candidates() -> [Candidate; 12] {
    // Grids of 1-2-5 steps, wide enough that each pick has a worse rate on either side.
    const SGD_GRID: [f64; 6] = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
    // PyTorch's momentum 0.9 accumulates the gradient: steps about ten times as long.
    const HEAVY_GRID: [f64; 6] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5];
    const RMSPROP_GRID: [f64; 6] = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3];
    const ADAM_GRID: [f64; 6] = [1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2];
    [
        Candidate {
            name: "SGD",
            dashed: false,
            grid: SGD_GRID,
            config: |lr, _| Ok(Sgd::new(lr)?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "momentum (heavy ball)",
            dashed: false,
            grid: HEAVY_GRID,
            config: |lr, _| Ok(Momentum::heavy_ball(lr, 0.9).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "Nesterov",
            dashed: false,
            grid: HEAVY_GRID,
            config: |lr, _| Ok(Momentum::heavy_ball(lr, 0.9).nesterov(true).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "momentum (moving avg)",
            dashed: true,
            grid: SGD_GRID,
            config: |lr, _| Ok(Momentum::moving_average(lr, 0.9).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "RMSprop",
            dashed: false,
            grid: RMSPROP_GRID,
            config: |lr, _| Ok(Rmsprop::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "Adam",
            dashed: false,
            grid: ADAM_GRID,
            config: |lr, _| Ok(Adam::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "AdamW (wd 0.01)",
            dashed: true,
            grid: ADAM_GRID,
            config: |lr, _| Ok(Adam::adamw(lr, 0.01).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "NAdam",
            dashed: false,
            grid: ADAM_GRID,
            config: |lr, _| Ok(Nadam::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "RAdam",
            dashed: false,
            grid: ADAM_GRID,
            config: |lr, _| Ok(Radam::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "ADOPT",
            dashed: false,
            grid: ADAM_GRID,
            config: |lr, _| Ok(Adopt::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "AdEMAMix",
            dashed: false,
            // Its slow average, weighted by alpha = 5, makes the steps several times Adam's.
            grid: RMSPROP_GRID,
            config: |lr, _| Ok(Ademamix::builder(lr).build()?.into()),
            schedule_free: false,
        },
        Candidate {
            name: "Schedule-Free AdamW",
            dashed: false,
            grid: ADAM_GRID,
            config: |lr, warmup| {
                Ok(ScheduleFreeAdamw::builder(lr)
                    .warmup_steps(warmup)
                    .build()?
                    .into())
            },
            schedule_free: true,
        },
    ]
}

/// What every run shares.
struct Setup {
    train: Data,
    validation: Data,
    test: Data,
    init: Mlp,
    /// The training samples of every step, `BATCH` per step.
    batches: Vec<usize>,
    steps: usize,
    warmup: usize,
    target: f64,
}

/// One training run of one optimizer at one learning rate.
struct Run {
    name: &'static str,
    dashed: bool,
    lr: f64,
    /// The loss of every mini-batch, before its step.
    curve: Vec<f32>,
    diverged: bool,
    train_loss: f64,
    validation_loss: f64,
    test_loss: f64,
    test_accuracy: f64,
    optimizer_step: Duration,
    training_step: Duration,
}

impl Run {
    /// The first step at which the mean of the last `SMOOTH` mini-batch losses is at most
    /// `target`.
    fn steps_to(&self, target: f64) -> Option<usize> {
        smoothed(&self.curve)
            .iter()
            .enumerate()
            .skip(SMOOTH - 1)
            .find(|(_, l)| f64::from(**l) <= target)
            .map(|(i, _)| i + 1)
    }
}

/// The trailing mean over `SMOOTH` steps (over the steps so far, at the start).
fn smoothed(curve: &[f32]) -> Vec<f32> {
    let mut sum = 0.0f64;
    let mut out = Vec::with_capacity(curve.len());
    for (i, &l) in curve.iter().enumerate() {
        sum += f64::from(l);
        if i >= SMOOTH {
            sum -= f64::from(curve[i - SMOOTH]);
        }
        out.push((sum / (i + 1).min(SMOOTH) as f64) as f32);
    }
    out
}

fn median(mut times: Vec<Duration>) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.sort_unstable();
    times[times.len() / 2]
}

fn train(setup: &Setup, candidate: &Candidate, lr: f64) -> Result<Run, Box<dyn Error>> {
    let config = (candidate.config)(lr, setup.warmup as u64)?;
    let schedule = WarmupCosine::new(lr, setup.warmup as u64, setup.steps as u64, lr / 100.0);
    let mut opt = StatefulOptimizer::<f32>::new(config)?;
    let mut model = setup.init.clone();
    let mut grads = Mlp::zeros();
    let mut ws = Workspace::new(BATCH);
    let mut curve = Vec::with_capacity(setup.steps);
    let (mut optimizer_times, mut step_times) = (
        Vec::with_capacity(setup.steps),
        Vec::with_capacity(setup.steps),
    );
    let mut diverged = false;
    for samples in setup.batches.chunks_exact(BATCH) {
        let start = Instant::now();
        ws.load(&setup.train, samples);
        let (loss, _) = ws.forward(&model);
        if !loss.is_finite() {
            diverged = true;
            break;
        }
        ws.backward(&model, &mut grads);
        if !candidate.schedule_free {
            opt.set_lr(schedule.lr(opt.steps() + 1))?;
        }
        let before_step = Instant::now();
        opt.step(
            &mut [
                &mut model.w1[..],
                &mut model.b1[..],
                &mut model.w2[..],
                &mut model.b2[..],
            ],
            &[&grads.w1[..], &grads.b1[..], &grads.w2[..], &grads.b2[..]],
        )?;
        let end = Instant::now();
        optimizer_times.push(end - before_step);
        step_times.push(end - start);
        curve.push(loss);
    }
    if candidate.schedule_free {
        opt.schedulefree_eval(&mut [
            &mut model.w1[..],
            &mut model.b1[..],
            &mut model.w2[..],
            &mut model.b2[..],
        ])?;
    }
    // A NaN loss (weights gone non-finite) counts as an infinite one.
    let loss_on = |data: &Data| {
        let (loss, accuracy) = evaluate(&model, data);
        (if loss.is_nan() { f64::INFINITY } else { loss }, accuracy)
    };
    let (train_loss, _) = loss_on(&setup.train);
    let (validation_loss, _) = loss_on(&setup.validation);
    let (test_loss, test_accuracy) = loss_on(&setup.test);
    // A run can end on finite mini-batch losses and still overflow on other samples.
    diverged |= !train_loss.is_finite();
    Ok(Run {
        name: candidate.name,
        dashed: candidate.dashed,
        lr,
        curve,
        diverged,
        train_loss,
        validation_loss,
        test_loss,
        test_accuracy,
        optimizer_step: median(optimizer_times),
        training_step: median(step_times),
    })
}

fn fmt_lr(lr: f64) -> String {
    format!("{lr}")
}

fn fmt_loss(loss: f64) -> String {
    if !loss.is_finite() {
        "diverged".to_string()
    } else if !(1e-3..1e3).contains(&loss) {
        format!("{loss:.2e}")
    } else {
        format!("{loss:.4}")
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> Result<(), Box<dyn Error>> {
    let opts = options();
    let started = Instant::now();
    // --quick: a fifth of the steps, and the middle four rates of each grid.
    let (steps, grid_range, target) = if opts.quick {
        (400, 1..5, 0.1)
    } else {
        (2000, 0..6, 0.01)
    };

    let mut rng = SplitMix64(SEED);
    let (train_set, validation, test) = load_digits(&mut rng)?;
    let init = Mlp::init(&mut rng);
    let per_epoch = train_set.len() / BATCH;
    let mut batches = Vec::with_capacity(steps * BATCH);
    let mut order: Vec<usize> = (0..train_set.len()).collect();
    while batches.len() < steps * BATCH {
        // Every epoch a new shuffle; the samples past the last whole batch wait for the next.
        rng.shuffle(&mut order);
        let take = (steps * BATCH - batches.len()).min(per_epoch * BATCH);
        batches.extend_from_slice(&order[..take]);
    }
    let setup = Setup {
        train: train_set,
        validation,
        test,
        init,
        batches,
        steps,
        warmup: steps / 20,
        target,
    };

    let executor = Executor::new()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let parameters = HIDDEN * INPUTS + HIDDEN + CLASSES * HIDDEN + CLASSES;
    println!(
        "optkern training example: MLP {INPUTS}-{HIDDEN}-{CLASSES} (ReLU, softmax cross-entropy), {parameters} parameters in 4 tensors"
    );
    println!(
        "data: smartcore's handwritten digits, {} training / {} validation / {} test samples; batch {BATCH}, {steps} steps (~{} epochs)",
        setup.train.len(),
        setup.validation.len(),
        setup.test.len(),
        steps / per_epoch.max(1),
    );
    println!(
        "schedule: linear warm-up over {} steps, cosine decay to lr/100 (Schedule-Free AdamW: its own warm-up over as many steps, no decay, losses of its evaluation weights); same initial weights and batch order for every run",
        setup.warmup
    );
    println!(
        "machine: optkern backend {}, thread policy {:?}, {threads} hardware threads ({}); the state is f32",
        executor.backend(),
        executor.threads(),
        optkern::build_info().target,
    );
    println!(
        "learning rate: {} values per optimizer, chosen by the lowest validation loss after the last step{}",
        grid_range.len(),
        if opts.quick { " (--quick)" } else { "" }
    );
    println!();

    let mut best: Vec<Run> = Vec::new();
    let mut sweep_lines = String::new();
    for candidate in candidates() {
        let grid = &candidate.grid[grid_range.clone()];
        let mut runs = Vec::new();
        for &lr in grid {
            runs.push(train(&setup, &candidate, lr)?);
        }
        let pick = runs
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| a.validation_loss.total_cmp(&b.validation_loss))
            .map(|(i, _)| i)
            .ok_or("an empty learning-rate grid")?;
        let mut line = format!("  {:<22}", candidate.name);
        for (i, run) in runs.iter().enumerate() {
            let mark = if i == pick { "*" } else { " " };
            write!(
                line,
                " {:>6}: {:>8} {:>8}{mark}",
                fmt_lr(run.lr),
                fmt_loss(run.train_loss),
                fmt_loss(run.validation_loss)
            )?;
        }
        if pick == 0 || pick == runs.len() - 1 {
            line.push_str("  (pick at the edge of the grid)");
        }
        sweep_lines.push_str(&line);
        sweep_lines.push('\n');
        best.push(runs.swap_remove(pick));
    }
    println!("sweep (lr: final training loss, validation loss; * the pick):");
    print!("{sweep_lines}");
    println!();

    println!(
        "{:<22} {:>7} {:>10} {:>9} {:>9} {:>8} {:>10} {:>8} {:>8}",
        "optimizer",
        "lr",
        "train loss",
        "val loss",
        "test loss",
        "test acc",
        format!("steps<={target}"),
        "opt µs",
        "step µs"
    );
    for run in &best {
        println!(
            "{:<22} {:>7} {:>10} {:>9} {:>9} {:>7.2}% {:>10} {:>8.2} {:>8.1}",
            run.name,
            fmt_lr(run.lr),
            fmt_loss(run.train_loss),
            fmt_loss(run.validation_loss),
            fmt_loss(run.test_loss),
            100.0 * run.test_accuracy,
            run.steps_to(setup.target)
                .map_or("-".to_string(), |s| s.to_string()),
            micros(run.optimizer_step),
            micros(run.training_step),
        );
    }
    println!(
        "(losses after the last step, over the whole set; steps<={target}: first step where the mean of the last {SMOOTH} mini-batch losses is at most {target}; opt µs: median of StatefulOptimizer::step; step µs: median of the whole step, forward and backward included)"
    );

    write_plot(&opts.plot, &setup, &best)?;
    println!("\nchart: {}", opts.plot);
    if let Some(path) = &opts.json {
        write_json(path, &setup, &best, executor.backend().name(), threads)?;
        println!("json: {path}");
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn write_json(
    path: &str,
    setup: &Setup,
    runs: &[Run],
    backend: &str,
    threads: usize,
) -> Result<(), Box<dyn Error>> {
    let finite = |x: f64| if x.is_finite() { Some(x) } else { None };
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            serde_json::json!({
                "optimizer": run.name,
                "lr": run.lr,
                "diverged": run.diverged,
                "train_loss": finite(run.train_loss),
                "validation_loss": finite(run.validation_loss),
                "test_loss": finite(run.test_loss),
                "test_accuracy": run.test_accuracy,
                "steps_to_target": run.steps_to(setup.target),
                "optimizer_step_us": micros(run.optimizer_step),
                "training_step_us": micros(run.training_step),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "data": "smartcore digits",
        "train_samples": setup.train.len(),
        "validation_samples": setup.validation.len(),
        "test_samples": setup.test.len(),
        "batch": BATCH,
        "steps": setup.steps,
        "target_loss": setup.target,
        "lr_chosen_by": "validation loss after the last step",
        "backend": backend,
        "hardware_threads": threads,
        "rows": rows,
    });
    create_parent(path)?;
    std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

fn create_parent(path: &str) -> std::io::Result<()> {
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// A round step for about `count` ticks over `0..=max`.
fn tick_step(max: f64, count: f64) -> f64 {
    let raw = max / count;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn fmt_decade(exponent: i32) -> String {
    if (-3..=3).contains(&exponent) {
        format!("{}", 10f64.powi(exponent))
    } else {
        format!("1e{exponent}")
    }
}

/// The SVG chart: smoothed training loss by step, log-scale y, one line per optimizer.
fn write_plot(path: &str, setup: &Setup, runs: &[Run]) -> Result<(), Box<dyn Error>> {
    const COLORS: [&str; 12] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
        "#bcbd22", "#7f7f7f", "#000000", "#aec7e8",
    ];
    let (width, height) = (980.0, 600.0);
    let (left, right, top, bottom) = (80.0, 250.0, 64.0, 64.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);

    let curves: Vec<Vec<f32>> = runs.iter().map(|r| smoothed(&r.curve)).collect();
    let values = curves
        .iter()
        .flatten()
        .map(|&v| f64::from(v))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (lo, hi) = if lo <= hi {
        (lo.min(setup.target), hi.max(setup.target))
    } else {
        (setup.target / 10.0, setup.target * 10.0)
    };
    let y_lo = lo.max(1e-8).log10().floor() as i32;
    let y_hi = (hi.log10().ceil() as i32).max(y_lo + 1);
    let x_max = setup.steps as f64;
    let x = |step: f64| left + plot_w * step / x_max;
    let y = |loss: f64| {
        let t = (loss.max(10f64.powi(y_lo)).log10() - f64::from(y_lo)) / f64::from(y_hi - y_lo);
        top + plot_h * (1.0 - t)
    };

    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    )?;
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="17">Training loss on handwritten digits: optimizers of optkern at their best learning rate</text>"#,
        width / 2.0
    )?;
    writeln!(
        svg,
        r##"<text x="{}" y="48" text-anchor="middle" font-size="13" fill="#555">MLP {INPUTS}-{HIDDEN}-{CLASSES}, batch {BATCH}, same initial weights and batches; warm-up + cosine schedule; lr picked by validation loss</text>"##,
        width / 2.0
    )?;

    // Grid and y ticks: decades labelled, 2..9 as light lines.
    for e in y_lo..=y_hi {
        let v = 10f64.powi(e);
        writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{1:.1}" y2="{1:.1}" stroke="#ccc"/>"##,
            left + plot_w,
            y(v)
        )?;
        writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"#,
            left - 8.0,
            y(v) + 4.0,
            fmt_decade(e)
        )?;
        if e < y_hi {
            for m in 2..10 {
                let yy = y(f64::from(m) * v);
                writeln!(
                    svg,
                    r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/>"##,
                    left + plot_w
                )?;
                writeln!(
                    svg,
                    r##"<line x1="{}" x2="{left}" y1="{yy:.1}" y2="{yy:.1}" stroke="#333"/>"##,
                    left - 3.0
                )?;
            }
        }
    }
    let step = tick_step(x_max, 8.0);
    let mut t = 0.0;
    while t <= x_max + 0.5 {
        let xx = x(t);
        writeln!(
            svg,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{}" stroke="#eee"/>"##,
            top + plot_h
        )?;
        writeln!(
            svg,
            r#"<text x="{xx:.1}" y="{}" text-anchor="middle" font-size="12">{t}</text>"#,
            top + plot_h + 18.0
        )?;
        t += step;
    }
    writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    )?;
    writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">step</text>"#,
        left + plot_w / 2.0,
        height - 18.0
    )?;
    writeln!(
        svg,
        r#"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle" font-size="13">training loss (mean of the last {SMOOTH} mini-batches, log scale)</text>"#,
        top + plot_h / 2.0
    )?;

    // The target, dashed.
    let ty = y(setup.target);
    writeln!(
        svg,
        r##"<line x1="{left}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#888" stroke-dasharray="6 4"/>"##,
        left + plot_w
    )?;
    writeln!(
        svg,
        r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#666">target {}</text>"##,
        left + plot_w - 4.0,
        ty - 4.0,
        setup.target
    )?;

    // The curves, at most about 800 points each.
    let stride = setup.steps.div_ceil(800).max(1);
    let dash = |run: &Run| {
        if run.dashed {
            r#" stroke-dasharray="7 4""#
        } else {
            ""
        }
    };
    for (i, (curve, run)) in curves.iter().zip(runs).enumerate() {
        let mut d = String::new();
        let last = curve.len().saturating_sub(1);
        for (s, &v) in curve.iter().enumerate() {
            if s % stride != 0 && s != last {
                continue;
            }
            let cmd = if d.is_empty() { 'M' } else { 'L' };
            write!(d, "{cmd}{:.1} {:.1} ", x((s + 1) as f64), y(f64::from(v)))?;
        }
        writeln!(
            svg,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6"{}/>"#,
            d.trim_end(),
            COLORS[i % COLORS.len()],
            dash(run)
        )?;
    }

    // The legend, right of the plot.
    let lx = left + plot_w + 18.0;
    writeln!(
        svg,
        r#"<text x="{lx}" y="{}" font-size="13" font-weight="bold">optimizer (lr)</text>"#,
        top + 12.0
    )?;
    for (i, run) in runs.iter().enumerate() {
        let ly = top + 36.0 + 22.0 * i as f64;
        writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{}" stroke-width="3"{}/>"#,
            lx + 24.0,
            COLORS[i % COLORS.len()],
            dash(run)
        )?;
        let note = if run.diverged { ", diverged" } else { "" };
        writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="12">{} ({}{note})</text>"#,
            lx + 32.0,
            ly + 4.0,
            run.name,
            fmt_lr(run.lr)
        )?;
    }
    writeln!(svg, "</svg>")?;
    create_parent(path)?;
    std::fs::write(path, svg)?;
    Ok(())
}
