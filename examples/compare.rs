//! Compares the CPU targets of this machine on the optimizer steps.
//!
//! `cargo run --release --example compare [-- --quick] [--all] [--optimizers adam,nadam]
//! [--sizes 4096,65536]
//! [--data normal|zero-grads|both] [--subnormals keep|flush|both] [--json PATH] [--plot PATH]`
//!
//! For every backend the CPU can run, every optimizer (momentum and Adam; all of them with
//! `--all`; those named with `--optimizers`), every dtype setup (f32; bf16 weights and gradients with f32 state; all bf16; f16)
//! and size (4K, 64K, 1M and 16M elements by default), on one thread and on all of them: the
//! median time of one step (after warm-up) and the effective bandwidth under the traffic model
//! (bytes that must cross memory: every buffer read once, weights and state written once), with
//! two ratios measured in the same run:
//!
//! - the fraction of the bandwidth reference: the fastest simple in-place streaming loop
//!   (`y[i] += a * x[i]`, 12 bytes per element, vectorized for the best instruction set, same
//!   number of threads) over the same total bytes;
//! - the speed-up over the plain per-element loop a user would write (compiled for the
//!   default target, as a user's crate would be).
//!
//! The data (`--data`, both by default): `normal` draws weights, state and gradients from
//! normal distributions (seeded; weights `0.5*N(0,1)`, state `1e-3*|N(0,1)|`, gradients
//! `1e-2*N(0,1)`), so that no value is or becomes subnormal while it is timed. `zero-grads` is
//! the same with a fixed 2% of the gradient entries exactly zero on every step, as dead ReLU
//! units, absent embedding rows and masked slices give: there the state decays towards zero
//! and stops in the subnormal range (`0.9 * 2^-149` rounds back to `2^-149`), where some CPUs
//! (Intel's) take a slow microcode path for every operation on such a value. The states of the
//! zero entries are set to the steady state the kernel itself reaches (stepping a sample with
//! zero gradients until no bit changes) before anything is timed. Every table and JSON row
//! names its data and the count of subnormal `f32` values in the buffers after its timing.
//!
//! `--subnormals` picks the crate's subnormal policy (`keep`, the default, IEEE 754; `flush`;
//! or `both`): see `optkern::Subnormals`. The plain loop always keeps them.
//!
//! `--dump DIR` writes the starting buffers of every setup (raw little-endian, with a JSON
//! description beside each) for `scripts/compare-peers.sh`, which times other libraries'
//! optimizers on the same arrays. `--json PATH` writes every row; `--plot PATH` writes an SVG chart of GB/s by size for each
//! backend, with the bandwidth reference as a dashed line. `--quick`: 4K, 64K and 1M elements,
//! shorter timing, well under a minute.

#[path = "../benches/support/kernels.rs"]
mod kernels;

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use kernels::{
    AdadeltaKernel, AdagradKernel, AdamKernel, AdamaxKernel, AdemamixKernel, AdoptKernel,
    AsgdKernel, Kernel, LR64, LionKernel, MomentumKernel, NadamKernel, RadamKernel, RmspropKernel,
    RpropKernel, ScheduleFreeAdamwKernel, ScheduleFreeSgdKernel,
};
use optkern::{
    Adadelta, Adagrad, Adam, Adamax, Ademamix, Adopt, Asgd, Backend, Element, Executor, Lion,
    Momentum, Nadam, Radam, Rmsprop, Rprop, ScheduleFreeAdamw, ScheduleFreeSgd, Subnormals,
    Threads, bf16, f16,
};

/// The data a setup is timed on (see the module docs).
#[derive(Clone, Copy, PartialEq)]
enum Data {
    Normal,
    ZeroGrads,
}

impl Data {
    fn name(self) -> &'static str {
        match self {
            Data::Normal => "normal",
            Data::ZeroGrads => "zero-grads",
        }
    }
}

struct Options {
    sizes: Vec<usize>,
    data: Vec<Data>,
    subnormals: Vec<Subnormals>,
    budget: Duration,
    all: bool,
    /// `--optimizers a,b`: only these (by name), from all of them.
    only: Option<Vec<String>>,
    json: Option<String>,
    plot: Option<String>,
    /// `--dump DIR`: where the starting buffers of every setup are written.
    dump: Option<String>,
}

fn options() -> Options {
    let mut sizes = vec![1 << 12, 1 << 16, 1 << 20, 1 << 24];
    let mut budget = Duration::from_millis(200);
    let mut all = false;
    let mut only = None;
    let mut data = vec![Data::Normal, Data::ZeroGrads];
    let mut subnormals = vec![Subnormals::Keep];
    let (mut json, mut plot, mut dump) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                sizes = vec![1 << 12, 1 << 16, 1 << 20];
                budget = Duration::from_millis(15);
            }
            "--all" => all = true,
            "--optimizers" => {
                let list = args
                    .next()
                    .expect("--optimizers needs a comma-separated list");
                only = Some(list.split(',').map(|s| s.trim().to_owned()).collect());
                all = true;
            }
            "--data" => {
                data = match args.next().expect("--data needs a name").as_str() {
                    "normal" => vec![Data::Normal],
                    "zero-grads" => vec![Data::ZeroGrads],
                    "both" => vec![Data::Normal, Data::ZeroGrads],
                    other => panic!("--data {other:?}: normal, zero-grads or both"),
                }
            }
            "--subnormals" => {
                subnormals = match args.next().expect("--subnormals needs a name").as_str() {
                    "keep" => vec![Subnormals::Keep],
                    "flush" => vec![Subnormals::Flush],
                    "both" => vec![Subnormals::Keep, Subnormals::Flush],
                    other => panic!("--subnormals {other:?}: keep, flush or both"),
                }
            }
            "--json" => json = Some(args.next().expect("--json needs a path")),
            "--plot" => plot = Some(args.next().expect("--plot needs a path")),
            "--dump" => dump = Some(args.next().expect("--dump needs a folder")),
            "--sizes" => {
                let list = args.next().expect("--sizes needs a comma-separated list");
                sizes = list
                    .split(',')
                    .map(|s| s.trim().parse().expect("a size"))
                    .collect();
            }
            "--help" | "-h" => {
                println!(
                    "usage: compare [--quick] [--all] [--optimizers NAME,NAME,...] [--sizes N,N,...] [--data normal|zero-grads|both] [--subnormals keep|flush|both] [--json PATH] [--plot PATH] [--dump DIR]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    Options {
        sizes,
        data,
        subnormals,
        budget,
        all,
        only,
        json,
        plot,
        dump,
    }
}

/// The median duration of `f` over repeated runs, after warm-up, within about `budget`.
fn median_time(budget: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    f();
    f();
    let once = start.elapsed() / 2;
    let reps = (budget.as_secs_f64() / once.as_secs_f64().max(1e-9)).clamp(5.0, 2000.0) as usize;
    let mut times: Vec<Duration> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Whether this process seems to run under an emulator (qemu-user): the kernel's `/proc/cpuinfo`
/// describes the host, which then differs from the CPU the program sees.
fn emulation_hint() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let host_is_x86 = cpuinfo.contains("vendor_id");
    let host_is_arm = cpuinfo.contains("CPU implementer");
    if cfg!(target_arch = "aarch64") && host_is_x86 {
        return Some("an aarch64 program on an x86 host".into());
    }
    if cfg!(target_arch = "x86_64") && host_is_arm {
        return Some("an x86-64 program on an Arm host".into());
    }
    #[cfg(target_arch = "x86_64")]
    {
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))?
            .split_whitespace()
            .collect();
        macro_rules! differs {
            ($($cpuinfo:literal => $feature:tt),*) => {
                [$(($cpuinfo, flags.contains(&$cpuinfo) != std::arch::is_x86_feature_detected!($feature))),*]
                    .into_iter()
                    .find(|(_, differs)| *differs)
                    .map(|(name, _)| name)
            };
        }
        let differing = differs!(
            "sse4_2" => "sse4.2", "avx" => "avx", "avx2" => "avx2", "fma" => "fma",
            "f16c" => "f16c", "bmi2" => "bmi2", "adx" => "adx", "sha_ni" => "sha",
            "rdseed" => "rdseed", "avx512f" => "avx512f", "avx512bw" => "avx512bw"
        );
        if let Some(flag) = differing {
            return Some(format!(
                "the kernel reports the host's flags, and `{flag}` differs from what this program detects"
            ));
        }
    }
    None
}

fn fmt_time(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.3} ms", s * 1e3)
    }
}

/// One measured row.
struct Row {
    backend: String,
    optimizer: &'static str,
    dtype: &'static str,
    data: Data,
    /// The policy of this row (the plain loop: always `Keep`).
    subnormals: Subnormals,
    n: usize,
    threads: usize,
    seconds: f64,
    gbps: f64,
    fraction_of_bandwidth: f64,
    speedup_vs_plain_loop: f64,
    /// Subnormal `f32` values (after widening) in the weights, state and gradient after the
    /// row's timing.
    subnormal_values: usize,
}

/// Everything measured, and the bandwidth reference per (bytes, threads).
struct Results {
    rows: Vec<Row>,
    /// (setup label, n, threads, reference GB/s)
    references: Vec<(String, usize, usize, f64)>,
    done: usize,
    total: usize,
}

impl Results {
    fn progress(&mut self, what: &str) {
        self.done += 1;
        eprint!("\r\x1b[2K[{}/{}] {what}", self.done, self.total);
        let _ = std::io::stderr().flush();
    }
}

/// `y[i] += a * x[i]` over `y` and `x`: the bandwidth reference's loop, compiled for the best
/// instruction set of the machine (the compiler vectorizes it).
fn axpy(y: &mut [f32], x: &[f32], a: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512(y: &mut [f32], x: &[f32], a: f32) {
            for (y, x) in y.iter_mut().zip(x) {
                *y += a * x;
            }
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(y: &mut [f32], x: &[f32], a: f32) {
            for (y, x) in y.iter_mut().zip(x) {
                *y += a * x;
            }
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { avx512(y, x, a) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { avx2(y, x, a) };
        }
    }
    // aarch64 has NEON in its baseline; elsewhere, the default target's vectors.
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// The bandwidth reference: the median GB/s of `axpy` over `bytes` bytes (12 per element), on
/// one thread or split across the pool in chunks of at least 16K elements.
fn bandwidth_reference(bytes: usize, threads: usize, budget: Duration) -> f64 {
    let m = (bytes / 12).max(16);
    let mut y = vec![1.0f32; m];
    let x = vec![0.5f32; m];
    let a = 1e-7f32;
    let t = if threads == 1 {
        median_time(budget, || axpy(&mut y, &x, a))
    } else {
        let chunk = m.div_ceil(threads * 4).max(1 << 14);
        median_time(budget, || {
            y.par_chunks_mut(chunk)
                .zip(x.par_chunks(chunk))
                .for_each(|(y, x)| axpy(y, x, a))
        })
    };
    std::hint::black_box(&y);
    (m * 12) as f64 / t.as_secs_f64() * 1e-9
}

/// A seeded generator (SplitMix64) with normal deviates (Box-Muller).
struct Gauss(u64);

impl Gauss {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// Whether gradient entry `i` is one of the fixed 2% that are zero on every step of
/// `--data zero-grads`.
fn zero_entry(i: usize) -> bool {
    Gauss(i as u64).next_u64().is_multiple_of(50)
}

fn count_subnormal<E: Element>(values: &[E]) -> usize {
    values.iter().filter(|x| x.to_f32().is_subnormal()).count()
}

/// The buffers of one size: see the module docs for the data sets.
fn make_data<K: Kernel<N>, W: Element, T: Element, G: Element, const N: usize>(
    kernel: &K,
    data: Data,
    n: usize,
) -> (Vec<W>, [Vec<T>; N], Vec<G>) {
    let mut rng = Gauss(0x5EED + n as u64);
    let w: Vec<W> = (0..n).map(|_| W::from_f32(0.5 * rng.normal())).collect();
    let mut s: [Vec<T>; N] = core::array::from_fn(|_| {
        (0..n)
            .map(|_| T::from_f32(1e-3 * rng.normal().abs()))
            .collect()
    });
    let mut g: Vec<G> = (0..n).map(|_| G::from_f32(1e-2 * rng.normal())).collect();
    if data == Data::ZeroGrads {
        // The steady state of a zero-gradient entry: a sample stepped with zero gradients,
        // from the same kind of start, until a step changes no bit of its state.
        const SAMPLE: usize = 64;
        let mut sample_w: Vec<W> = (0..SAMPLE)
            .map(|_| W::from_f32(0.5 * rng.normal()))
            .collect();
        let mut sample_s: [Vec<T>; N] = core::array::from_fn(|_| {
            (0..SAMPLE)
                .map(|_| T::from_f32(1e-3 * rng.normal().abs()))
                .collect()
        });
        let zeros = vec![G::from_f32(0.0); SAMPLE];
        let exec = Executor::new().unwrap().with_threads(Threads::Sequential);
        let bits =
            |s: &[Vec<T>; N]| -> Vec<u32> { s.iter().flatten().map(|x| x.to_bits32()).collect() };
        let mut steps = 0;
        loop {
            let before = bits(&sample_s);
            kernel.step(&exec, &mut sample_w, &mut sample_s, &zeros);
            steps += 1;
            if bits(&sample_s) == before {
                break;
            }
            assert!(steps < 10_000_000, "{}: no steady state", K::NAME);
        }
        for (j, i) in (0..n).filter(|&i| zero_entry(i)).enumerate() {
            g[i] = G::from_f32(0.0);
            for k in 0..N {
                s[k][i] = sample_s[k][j % SAMPLE];
            }
        }
    }
    (w, s, g)
}

/// Appends `values` to `out` as little-endian bytes of their own type.
fn put<E: Element>(out: &mut Vec<u8>, values: &[E]) {
    for x in values {
        let bits = x.to_bits32();
        match E::DTYPE.size() {
            4 => out.extend_from_slice(&bits.to_le_bytes()),
            _ => out.extend_from_slice(&(bits as u16).to_le_bytes()),
        }
    }
}

/// `--dump`: writes a setup's starting buffers (weights, each state buffer, gradient, one after
/// the other, little-endian) to `DIR/{optimizer}-{dtype}-{data}-{n}.bin` and describes the file
/// in `DIR/{same}.json`, so that another program (scripts/compare-peers.sh) can time its own
/// optimizers on the same arrays.
fn dump<K: Kernel<N>, W: Element, T: Element, G: Element, const N: usize>(
    dir: &str,
    dtype: &str,
    data: Data,
    w: &[W],
    s: &[Vec<T>; N],
    g: &[G],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let n = w.len();
    let stem = format!("{dir}/{}-{dtype}-{}-{n}", K::NAME, data.name());
    let mut bytes = Vec::with_capacity(n * (2 * W::DTYPE.size() + N * T::DTYPE.size()));
    put(&mut bytes, w);
    for b in s {
        put(&mut bytes, b);
    }
    put(&mut bytes, g);
    std::fs::write(format!("{stem}.bin"), bytes)?;
    let meta = serde_json::json!({
        "optimizer": K::NAME,
        "dtype": dtype,
        "data": data.name(),
        "n": n,
        "weights": W::DTYPE.to_string(),
        "states": N,
        "state": T::DTYPE.to_string(),
        "gradient": G::DTYPE.to_string(),
        "zero_gradients": g.iter().filter(|x| x.to_f32() == 0.0).count(),
    });
    std::fs::write(format!("{stem}.json"), meta.to_string())
}

#[allow(clippy::too_many_arguments)]
fn setup<K: Kernel<N>, W: Element, T: Element, G: Element, const N: usize>(
    kernel: &K,
    dtype: &'static str,
    name: &str,
    data: Data,
    opts: &Options,
    results: &mut Results,
) {
    let per_element = 2 * W::DTYPE.size() + 2 * N * T::DTYPE.size() + G::DTYPE.size();
    let mut table = String::new();
    writeln!(table).unwrap();
    writeln!(
        table,
        "{} {name}: w {}, state {} (x{N}), g {} ({per_element} B/element moved); data {}",
        K::NAME,
        W::DTYPE,
        T::DTYPE,
        G::DTYPE,
        data.name()
    )
    .unwrap();
    writeln!(
        table,
        "{:<18} {:>8} {:>10} {:>12} {:>9} {:>14} {:>14} {:>11}",
        "backend",
        "threads",
        "n",
        "time/step",
        "GB/s",
        "of bandwidth",
        "vs plain loop",
        "subnormals"
    )
    .unwrap();
    let all = rayon::current_num_threads();
    for &n in &opts.sizes {
        results.progress(&format!("{} {dtype} n={n}: {} data", K::NAME, data.name()));
        let (mut w, mut s, g) = make_data::<K, W, T, G, N>(kernel, data, n);
        if let Some(dir) = &opts.dump {
            dump::<K, W, T, G, N>(dir, dtype, data, &w, &s, &g).expect("writing the data");
        }
        let bytes = n * per_element;
        let gbps = |t: Duration| bytes as f64 / t.as_secs_f64() * 1e-9;

        let mut thread_counts = vec![1];
        if all > 1 {
            thread_counts.push(all);
        }
        let mut reference = [0.0f64; 2];
        for (k, &threads) in thread_counts.iter().enumerate() {
            results.progress(&format!(
                "{} {dtype} n={n}: bandwidth reference, {threads} threads",
                K::NAME
            ));
            reference[k] = bandwidth_reference(bytes, threads, opts.budget);
            results.references.push((
                format!("{} {dtype} {}", K::NAME, data.name()),
                n,
                threads,
                reference[k],
            ));
        }
        results.progress(&format!("{} {dtype} n={n}: plain loop", K::NAME));
        let plain = median_time(opts.budget, || kernel.plain(&mut w, &mut s, &g));
        let make_row = |label: String,
                        threads: usize,
                        subnormals: Subnormals,
                        t: Duration,
                        subnormal_values: usize| {
            let reference = reference[usize::from(threads > 1)];
            let r = Row {
                backend: label.clone(),
                optimizer: K::NAME,
                dtype,
                data,
                subnormals,
                n,
                threads,
                seconds: t.as_secs_f64(),
                gbps: gbps(t),
                fraction_of_bandwidth: gbps(t) / reference,
                speedup_vs_plain_loop: plain.as_secs_f64() / t.as_secs_f64(),
                subnormal_values,
            };
            let line = format!(
                "{label:<18} {threads:>8} {n:>10} {:>12} {:>9.1} {:>14.2} {:>13.2}x {:>11}",
                fmt_time(t),
                r.gbps,
                r.fraction_of_bandwidth,
                r.speedup_vs_plain_loop,
                subnormal_values
            );
            (r, line)
        };
        let subnormals = |w: &[W], s: &[Vec<T>; N], g: &[G]| {
            count_subnormal(w)
                + s.iter().map(|b| count_subnormal(b)).sum::<usize>()
                + count_subnormal(g)
        };
        let (r, line) = make_row(
            "plain-loop".into(),
            1,
            Subnormals::Keep,
            plain,
            subnormals(&w, &s, &g),
        );
        writeln!(table, "{line}").unwrap();
        results.rows.push(r);
        for (p, &policy) in opts.subnormals.iter().enumerate() {
            if p > 0 {
                // Each policy starts from the data as made: a flushing run leaves zeros where
                // the state was subnormal.
                (w, s, _) = make_data::<K, W, T, G, N>(kernel, data, n);
            }
            for (backend, &threads) in Backend::available()
                .into_iter()
                .flat_map(|b| thread_counts.iter().map(move |t| (b, t)))
            {
                let threads_policy = if threads == 1 {
                    Threads::Sequential
                } else {
                    Threads::parallel()
                };
                let exec = Executor::with_backend(backend)
                    .unwrap()
                    .with_threads(threads_policy)
                    .with_subnormals(policy);
                results.progress(&format!(
                    "{} {dtype} n={n}: {backend}, {threads} threads",
                    K::NAME
                ));
                let t = median_time(opts.budget, || kernel.step(&exec, &mut w, &mut s, &g));
                // The policy is in the label when more than one is measured.
                let label = if opts.subnormals.len() > 1 {
                    format!("{} {}", backend.name(), policy.name())
                } else {
                    backend.name().to_owned()
                };
                let (r, line) = make_row(label, threads, policy, t, subnormals(&w, &s, &g));
                writeln!(table, "{line}").unwrap();
                results.rows.push(r);
            }
        }
    }
    eprint!("\r\x1b[2K");
    print!("{table}");
}

fn setups<K: Kernel<N>, const N: usize>(kernel: &K, opts: &Options, results: &mut Results) {
    if let Some(only) = &opts.only
        && !only.iter().any(|name| name == K::NAME)
    {
        return;
    }
    for &data in &opts.data {
        setup::<K, f32, f32, f32, N>(kernel, "f32", "f32", data, opts, results);
        setup::<K, bf16, f32, bf16, N>(
            kernel,
            "bf16-f32state",
            "bf16 weights and gradients, f32 state",
            data,
            opts,
            results,
        );
        setup::<K, bf16, bf16, bf16, N>(kernel, "bf16", "bf16", data, opts, results);
        setup::<K, f16, f16, f16, N>(kernel, "f16", "f16", data, opts, results);
    }
}

fn write_json(path: &str, machine: &str, results: &Results) -> std::io::Result<()> {
    let rows: Vec<serde_json::Value> = results
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "backend": r.backend,
                "optimizer": r.optimizer,
                "dtype": r.dtype,
                "data": r.data.name(),
                "subnormals": r.subnormals.name(),
                "subnormal_values_after": r.subnormal_values,
                "n": r.n,
                "threads": r.threads,
                "seconds": r.seconds,
                "gbps": r.gbps,
                "fraction_of_bandwidth": r.fraction_of_bandwidth,
                "speedup_vs_plain_loop": r.speedup_vs_plain_loop,
            })
        })
        .collect();
    let default = Backend::detect().map_or_else(|e| e.to_string(), |b| b.name().to_owned());
    let doc = serde_json::json!({ "machine": machine, "default_backend": default, "rows": rows });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
}

/// An SVG chart: one panel per optimizer and dtype setup, GB/s against size (log scale), one
/// line per backend and thread count, the bandwidth reference dashed.
fn write_plot(path: &str, machine: &str, results: &Results) -> std::io::Result<()> {
    let mut panels: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
    for r in &results.rows {
        let panel = (r.optimizer, r.dtype, r.data.name());
        if !panels.contains(&panel) {
            panels.push(panel);
        }
    }
    let (pw, ph, cols) = (420.0, 300.0, 2usize);
    let rows_n = panels.len().div_ceil(cols);
    let (width, height) = (pw * cols as f64 + 20.0, ph * rows_n as f64 + 80.0);
    let max_gbps = results
        .rows
        .iter()
        .map(|r| r.gbps)
        .chain(results.references.iter().map(|r| r.3))
        .fold(1.0f64, f64::max);
    let (min_n, max_n) = results
        .rows
        .iter()
        .fold((usize::MAX, 1usize), |(lo, hi), r| {
            (lo.min(r.n), hi.max(r.n))
        });
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let mut series: Vec<(String, usize)> = Vec::new();
    for r in &results.rows {
        let key = (r.backend.clone(), r.threads);
        if !series.contains(&key) {
            series.push(key);
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for (backend, _) in &series {
        if !names.contains(&backend.as_str()) {
            names.push(backend);
        }
    }
    let color_of = |backend: &str| {
        colors[names.iter().position(|b| *b == backend).unwrap_or(0) % colors.len()]
    };
    let mut svg = String::new();
    writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#).unwrap();
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(svg, r#"<text x="10" y="18" font-size="13">optkern compare: GB/s by size under the traffic model ({machine}); dashed black: bandwidth reference (y += a*x; thick: all threads, thin: 1 thread); dotted: 1 thread</text>"#).unwrap();
    // Legend.
    for (k, (backend, threads)) in series.iter().enumerate() {
        let (x, y) = (10.0 + 150.0 * (k % 6) as f64, 36.0 + 14.0 * (k / 6) as f64);
        let color = color_of(backend);
        let dash = if *threads > 1 {
            ""
        } else {
            r#" stroke-dasharray="1,2""#
        };
        writeln!(svg, r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{backend}, {threads} thr</text>"#, x + 20.0, x + 24.0, y + 4.0).unwrap();
    }
    let top = 60.0 + 14.0 * (series.len().div_ceil(6) as f64 - 1.0).max(0.0);
    let span = ((max_n as f64) / (min_n as f64)).log2().max(1.0);
    for (p, (optimizer, dtype, data)) in panels.iter().enumerate() {
        let (ox, oy) = (10.0 + pw * (p % cols) as f64, top + ph * (p / cols) as f64);
        let (x0, y0, x1, y1) = (ox + 45.0, oy + 25.0, ox + pw - 15.0, oy + ph - 35.0);
        let px = |n: usize| x0 + (x1 - x0) * ((n as f64) / (min_n as f64)).log2() / span;
        let py = |g: f64| y1 - (y1 - y0) * g / (max_gbps * 1.05);
        writeln!(
            svg,
            r#"<text x="{x0}" y="{}" font-size="12">{optimizer}, {dtype}, {data} data</text>"#,
            oy + 16.0
        )
        .unwrap();
        writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            x1 - x0,
            y1 - y0
        )
        .unwrap();
        for k in 0..=4 {
            let g = max_gbps * 1.05 * k as f64 / 4.0;
            writeln!(svg, r##"<text x="{}" y="{}" text-anchor="end">{g:.0}</text><line x1="{x0}" y1="{}" x2="{x1}" y2="{}" stroke="#eee"/>"##, x0 - 4.0, py(g) + 4.0, py(g), py(g)).unwrap();
        }
        let mut sizes: Vec<usize> = results.rows.iter().map(|r| r.n).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for &n in &sizes {
            let label = if n >= 1 << 20 {
                format!("{}M", n >> 20)
            } else {
                format!("{}K", n >> 10)
            };
            writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
                px(n),
                y1 + 14.0
            )
            .unwrap();
        }
        writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">elements</text><text x="{}" y="{}" transform="rotate(-90 {} {})" text-anchor="middle">GB/s</text>"#, (x0 + x1) / 2.0, y1 + 28.0, ox + 12.0, (y0 + y1) / 2.0, ox + 12.0, (y0 + y1) / 2.0).unwrap();
        let label = format!("{optimizer} {dtype} {data}");
        for threads in [1usize, rayon::current_num_threads()] {
            let points: Vec<String> = results
                .references
                .iter()
                .filter(|r| r.0 == label && r.2 == threads)
                .map(|r| format!("{:.1},{:.1}", px(r.1), py(r.3)))
                .collect();
            if !points.is_empty() {
                let width = if threads > 1 { 2 } else { 1 };
                writeln!(svg, r#"<polyline points="{}" fill="none" stroke="black" stroke-width="{width}" stroke-dasharray="6,4"/>"#, points.join(" ")).unwrap();
            }
        }
        for (backend, threads) in &series {
            let points: Vec<String> = results
                .rows
                .iter()
                .filter(|r| {
                    r.optimizer == *optimizer
                        && r.dtype == *dtype
                        && r.data.name() == *data
                        && &r.backend == backend
                        && r.threads == *threads
                })
                .map(|r| format!("{:.1},{:.1}", px(r.n), py(r.gbps)))
                .collect();
            let color = color_of(backend);
            let dash = if *threads > 1 {
                ""
            } else {
                r#" stroke-dasharray="1,2""#
            };
            writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                points.join(" ")
            )
            .unwrap();
        }
    }
    writeln!(svg, "</svg>").unwrap();
    std::fs::write(path, svg)
}

fn main() {
    let opts = options();
    let info = optkern::build_info();
    let machine = format!("{}, {} threads", cpu_model(), rayon::current_num_threads());
    println!("optkern compare: optimizer steps, median time per step");
    println!(
        "machine: {}, {} threads in the rayon pool; backends: {}; default: {}",
        cpu_model(),
        rayon::current_num_threads(),
        Backend::available()
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", "),
        Backend::detect()
            .map(|b| b.name().to_owned())
            .unwrap_or_else(|e| e.to_string()),
    );
    println!(
        "built for {} with target features [{}] by {}; the plain loop is compiled for that target",
        info.target, info.target_features, info.rustc
    );
    println!(
        "GB/s: bytes moved under the traffic model per second; of bandwidth: that over the GB/s \
         of y[i] += a*x[i] over the same bytes with the same threads; vs plain loop: the plain \
         per-element loop's time over this row's"
    );
    if let Some(why) = emulation_hint() {
        println!(
            "WARNING: this seems to run under an emulator ({why}): the figures below measure \
             the emulator, not the CPU, and mean nothing for speed"
        );
    }
    let optimizers = match (&opts.only, opts.all) {
        (Some(only), _) => only.len(),
        (None, true) => 13,
        (None, false) => 2,
    };
    let threads = if rayon::current_num_threads() > 1 {
        2
    } else {
        1
    };
    let per_size = threads + 1 + Backend::available().len() * opts.subnormals.len() * threads;
    let mut results = Results {
        rows: Vec::new(),
        references: Vec::new(),
        done: 0,
        total: optimizers * 4 * opts.data.len() * opts.sizes.len() * (per_size + 1),
    };
    setups(
        &MomentumKernel(Momentum::heavy_ball(LR64, 0.9).build().unwrap()),
        &opts,
        &mut results,
    );
    setups(
        &AdamKernel(Adam::builder(LR64).build().unwrap()),
        &opts,
        &mut results,
    );
    if opts.all {
        setups(
            &RmspropKernel(Rmsprop::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AdagradKernel(Adagrad::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &LionKernel(Lion::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AdamaxKernel(Adamax::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AdadeltaKernel(Adadelta::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &NadamKernel(Nadam::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &RadamKernel(Radam::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &RpropKernel(Rprop::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AsgdKernel(Asgd::builder(LR64).t0(2.0).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AdoptKernel(Adopt::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &AdemamixKernel(Ademamix::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &ScheduleFreeAdamwKernel(ScheduleFreeAdamw::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
        setups(
            &ScheduleFreeSgdKernel(ScheduleFreeSgd::builder(LR64).build().unwrap()),
            &opts,
            &mut results,
        );
    }
    if let Some(path) = &opts.json {
        write_json(path, &machine, &results).expect("writing the JSON file");
        println!("\nwrote {} rows to {path}", results.rows.len());
    }
    if let Some(path) = &opts.plot {
        write_plot(path, &machine, &results).expect("writing the chart");
        println!("wrote the chart to {path}");
    }
}
