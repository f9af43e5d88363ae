//! Runs `switchboard-load smoke` against the workspace's own `switchboard` and
//! `switchboard-fixture`, found next to the load driver in the target directory. They are
//! there whenever the workspace was built (`cargo build --workspace`, `cargo test
//! --workspace`); when they are not, the test says so and passes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[test]
fn smoke_through_the_real_gateway() {
    let load = PathBuf::from(env!("CARGO_BIN_EXE_switchboard-load"));
    let directory = load.parent().expect("the binary has a directory");
    let gateway = directory.join("switchboard");
    let fixture = directory.join("switchboard-fixture");
    for binary in [&gateway, &fixture] {
        if !binary.is_file() {
            eprintln!(
                "skipped: {} is missing; build the workspace first (cargo build --workspace)",
                binary.display()
            );
            return;
        }
    }
    let started = Instant::now();
    // The smoke run bounds itself (25 s including start-up and shutdown).
    let output = Command::new(&load)
        .arg("smoke")
        .arg("--gateway")
        .arg(&gateway)
        .arg("--fixture")
        .arg(&fixture)
        .output()
        .expect("switchboard-load runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "smoke failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("smoke passed"), "{stdout}");
    assert!(
        started.elapsed().as_secs() < 30,
        "smoke took {:?}",
        started.elapsed()
    );
}
