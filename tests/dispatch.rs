//! Backend detection and the `OPTKERN_BACKEND` override, end to end.
//!
//! `detected_backend_is_expected` compares `Backend::detect()` with `OPTKERN_EXPECT_BACKEND`
//! when that is set (a backend name, or `error` when detection must fail), so that a script
//! can run this binary on an emulated CPU and check what was detected. The other tests run
//! this same binary again as a child process with `OPTKERN_BACKEND` set, because the variable
//! is read once per process (through `OPTKERN_TEST_RUNNER` when set, see `child`).

use std::process::Command;

use optkern::{Backend, Error, Executor, Momentum};

#[test]
fn detected_backend_is_expected() {
    let detected = Backend::detect();
    eprintln!(
        "detected: {detected:?}; available: {:?}; OPTKERN_BACKEND={:?}",
        Backend::available(),
        std::env::var("OPTKERN_BACKEND").ok()
    );
    match std::env::var("OPTKERN_EXPECT_BACKEND").ok().as_deref() {
        Some("error") => assert!(detected.is_err(), "expected an error, got {detected:?}"),
        Some(name) => {
            let expected: Backend = name
                .parse()
                .expect("OPTKERN_EXPECT_BACKEND names a backend");
            assert_eq!(detected, Ok(expected));
        }
        None if std::env::var_os("OPTKERN_BACKEND").is_none() => {
            assert_eq!(detected, Ok(Backend::best()));
        }
        None => {}
    }
    // Whatever was detected runs: the default executor steps a buffer that spans full vectors
    // and a tail, with the same bits as the scalar oracle.
    if let Ok(backend) = detected {
        let config = Momentum::heavy_ball(0.1, 0.9).build().unwrap();
        let mut w: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
        let mut v: Vec<f32> = (0..37).map(|i| (i % 5) as f32 * 0.1).collect();
        let g: Vec<f32> = (0..37).map(|i| 1.0 / (i as f32 + 1.0)).collect();
        let (mut w_ref, mut v_ref) = (w.clone(), v.clone());
        Executor::with_backend(Backend::Scalar)
            .unwrap()
            .momentum_step(&mut w_ref, &mut v_ref, &g, &config, 2)
            .unwrap();
        let exec = Executor::new().unwrap();
        assert_eq!(exec.backend(), backend);
        exec.momentum_step(&mut w, &mut v, &g, &config, 2).unwrap();
        // Bits, not IEEE equality (which takes -0 for +0 and never matches a NaN).
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&w), bits(&w_ref));
        assert_eq!(bits(&v), bits(&v_ref));
    }
}

/// Runs `detected_backend_is_expected` in a child process with the given environment, and
/// checks that the child did run that one test (a filter matching nothing would also exit 0).
///
/// Under an emulator, `OPTKERN_TEST_RUNNER` (say `qemu-x86_64 -cpu Nehalem`) is the command
/// that runs this binary, so that the child runs on the same emulated CPU.
fn child(backend_var: &str, expect: &str) -> std::process::Output {
    let runner = std::env::var("OPTKERN_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    let exe = std::env::current_exe().unwrap();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let out = command
        .args(["--exact", TEST_IN_CHILD, "--nocapture", "--test-threads=1"])
        .env("OPTKERN_BACKEND", backend_var)
        .env("OPTKERN_EXPECT_BACKEND", expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("running 1 test"),
        "the child ran no test: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const TEST_IN_CHILD: &str = "detected_backend_is_expected";

#[test]
fn override_selects_each_available_backend() {
    for backend in Backend::available() {
        for spelling in [backend.name().to_owned(), backend.name().to_uppercase()] {
            let out = child(&spelling, backend.name());
            assert!(
                out.status.success(),
                "OPTKERN_BACKEND={spelling}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let out = child("auto", Backend::best().name());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn override_naming_a_missing_or_unknown_backend_is_an_error() {
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_available()) {
        let out = child(backend.name(), "error");
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = child("sse42", "error");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn backend_names_round_trip() {
    for backend in Backend::ALL {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        assert_eq!(backend.to_string(), backend.name());
    }
    assert_eq!("AVX2".parse::<Backend>(), Ok(Backend::Avx2));
    assert_eq!(
        "mmx".parse::<Backend>(),
        Err(Error::UnknownBackend { name: "mmx".into() })
    );
}
