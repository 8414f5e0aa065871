//! The build script records what only the build knows, for `optkern::build_info()` and the
//! comparison report: the target triple, the target features enabled for all code at compile
//! time (the scalar backend and a user's plain loops are compiled with just these, so a report
//! must say what they were), and the compiler's version. It generates no code and detects no
//! CPU: backends are chosen at run time.

use std::process::Command;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=OPTKERN_BUILD_TARGET={target}");
    println!("cargo::rustc-env=OPTKERN_BUILD_TARGET_FEATURES={features}");
    println!("cargo::rustc-env=OPTKERN_BUILD_RUSTC={version}");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTFLAGS");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
