//! Compares the CPU targets of this machine on the optimizer steps.
//!
//! `cargo run --release --example compare [-- --quick] [--all] [--sizes 4096,65536]`
//!
//! For every backend the CPU can run, every optimizer (momentum and Adam; all of them with
//! `--all`), every dtype setup and size, on one thread and on all of them: the median time of
//! one step (after warm-up) and the effective bandwidth under the traffic model (bytes that
//! must cross memory: every buffer read once, weights and state written once), next to the
//! plain per-element loop a user would write, measured in the same run.

#[path = "../benches/support/kernels.rs"]
mod kernels;

use std::time::{Duration, Instant};

use kernels::{AdagradKernel, AdamKernel, Kernel, LR64, LionKernel, MomentumKernel, RmspropKernel};
use optkern::{
    Adagrad, Adam, Backend, Element, Executor, Lion, Momentum, Rmsprop, Threads, bf16, f16,
};

struct Options {
    sizes: Vec<usize>,
    budget: Duration,
    all: bool,
}

fn options() -> Options {
    let mut sizes = vec![1 << 12, 1 << 16, 1 << 20, 1 << 24];
    let mut budget = Duration::from_millis(200);
    let mut all = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                sizes = vec![1 << 12, 1 << 16, 1 << 20];
                budget = Duration::from_millis(50);
            }
            "--all" => all = true,
            "--sizes" => {
                let list = args.next().expect("--sizes needs a comma-separated list");
                sizes = list
                    .split(',')
                    .map(|s| s.trim().parse().expect("a size"))
                    .collect();
            }
            "--help" | "-h" => {
                println!("usage: compare [--quick] [--all] [--sizes N,N,...]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    Options { sizes, budget, all }
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

fn setup<K: Kernel<N>, W: Element, T: Element, G: Element, const N: usize>(
    kernel: &K,
    name: &str,
    opts: &Options,
) {
    let per_element = 2 * W::DTYPE.size() + 2 * N * T::DTYPE.size() + G::DTYPE.size();
    println!();
    println!(
        "{} {name}: w {}, state {} (x{N}), g {} ({per_element} B/element moved)",
        K::NAME,
        W::DTYPE,
        T::DTYPE,
        G::DTYPE
    );
    println!(
        "{:<12} {:>8} {:>10} {:>12} {:>9} {:>14}",
        "backend", "threads", "n", "time/step", "GB/s", "vs plain loop"
    );
    let all = rayon::current_num_threads();
    for &n in &opts.sizes {
        let mut w: Vec<W> = (0..n)
            .map(|i| W::from_f32((i % 1000) as f32 * 1e-3 - 0.5))
            .collect();
        let mut s: [Vec<T>; N] = core::array::from_fn(|k| {
            (0..n)
                .map(|i| T::from_f32(((i + k) % 77) as f32 * 1e-4))
                .collect()
        });
        let g: Vec<G> = (0..n)
            .map(|i| G::from_f32((i % 313) as f32 * 1e-4 - 0.0156))
            .collect();
        let gbps = |t: Duration| (n * per_element) as f64 / t.as_secs_f64() * 1e-9;

        let plain = median_time(opts.budget, || kernel.plain(&mut w, &mut s, &g));
        let row = |label: &str, threads: usize, t: Duration| {
            println!(
                "{label:<12} {threads:>8} {n:>10} {:>12} {:>9.1} {:>13.2}x",
                fmt_time(t),
                gbps(t),
                plain.as_secs_f64() / t.as_secs_f64()
            );
        };
        row("plain loop", 1, plain);
        let mut policies = vec![(1, Threads::Sequential)];
        if all > 1 {
            policies.push((all, Threads::parallel()));
        }
        for backend in Backend::available() {
            for &(threads, policy) in &policies {
                let exec = Executor::with_backend(backend).unwrap().threads(policy);
                let t = median_time(opts.budget, || kernel.step(&exec, &mut w, &mut s, &g));
                row(backend.name(), threads, t);
            }
        }
    }
}

fn setups<K: Kernel<N>, const N: usize>(kernel: &K, opts: &Options) {
    setup::<K, f32, f32, f32, N>(kernel, "f32", opts);
    setup::<K, bf16, f32, bf16, N>(kernel, "bf16 weights and gradients, f32 state", opts);
    setup::<K, bf16, bf16, bf16, N>(kernel, "bf16", opts);
    setup::<K, f16, f16, f16, N>(kernel, "f16", opts);
}

fn main() {
    let opts = options();
    let info = optkern::build_info();
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
    if let Some(why) = emulation_hint() {
        println!(
            "WARNING: this seems to run under an emulator ({why}): the figures below measure \
             the emulator, not the CPU, and mean nothing for speed"
        );
    }
    setups(
        &MomentumKernel(Momentum::heavy_ball(LR64, 0.9).build().unwrap()),
        &opts,
    );
    setups(&AdamKernel(Adam::builder(LR64).build().unwrap()), &opts);
    if opts.all {
        setups(
            &RmspropKernel(Rmsprop::builder(LR64).build().unwrap()),
            &opts,
        );
        setups(
            &AdagradKernel(Adagrad::builder(LR64).build().unwrap()),
            &opts,
        );
        setups(&LionKernel(Lion::builder(LR64).build().unwrap()), &opts);
    }
}
