//! Every shipped example config under `examples/` at the repository root must load and validate.

use std::path::{Path, PathBuf};

use switchboard_config::{ConfigFormat, TransportSpec, load};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists at the repository root")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_validates() {
    let files = example_files();
    assert!(
        files.len() >= 3,
        "expected at least 3 examples, found {files:?}"
    );
    for file in files {
        let config = load(&file).unwrap_or_else(|error| panic!("{error}"));
        assert!(
            !config.servers.is_empty(),
            "{} has no servers",
            file.display()
        );
    }
}

#[test]
fn the_readme_example_runs_the_fixture_in_both_formats() {
    let native = load(&examples_dir().join("switchboard.toml")).unwrap();
    let json = load(&examples_dir().join("mcp.json")).unwrap();
    assert_eq!(native.source.format, ConfigFormat::Native);
    assert_eq!(json.source.format, ConfigFormat::McpJson);
    assert_eq!(native.gateway, json.gateway);
    assert_eq!(native.listen, json.listen);
    assert_eq!(native.servers, json.servers);
    let TransportSpec::Stdio { command, args, .. } = &native.servers["fixture"].transport else {
        panic!("fixture is a stdio server");
    };
    assert_eq!(
        (command.as_str(), args.as_slice()),
        ("switchboard-fixture", &["stdio".to_owned()][..])
    );
}

#[test]
fn the_cluster_example_names_a_redis() {
    let config = load(&examples_dir().join("cluster.toml")).unwrap_or_else(|e| panic!("{e}"));
    let cluster = config.cluster.expect("[cluster]");
    assert!(cluster.redis.expose().starts_with("redis://"));
    assert_eq!(cluster.key_prefix, "switchboard");
    assert_eq!(cluster.command_timeout.as_millis(), 500);
    // Without the section: none.
    let plain = load(&examples_dir().join("telemetry.toml")).unwrap();
    assert!(plain.cluster.is_none());
}
