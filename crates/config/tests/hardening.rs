//! What the config crate must survive: `.mcp.json` files as real hosts write them,
//! paths that are not regular files or are too large, and type errors that must not
//! echo the (possibly secret) value they are about.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::{assert_invalid, json, native};
use switchboard_config::{ConfigError, TransportSpec, load, load_with_limit};

// ---- .mcp.json files written by other hosts ----

/// Claude Desktop's `claude_desktop_config.json`: other top-level keys beside `mcpServers`.
const CLAUDE_DESKTOP: &str = r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"],
      "env": { "DEBUG": "1" }
    }
  }
}"#;

/// Cursor's `.cursor/mcp.json`: stdio and remote entries, `type` optional.
const CURSOR: &str = r#"{
  "mcpServers": {
    "local": { "type": "stdio", "command": "node", "args": ["server.js"], "env": {}, "envFile": ".env" },
    "remote": { "url": "https://mcp.example.com/mcp", "headers": { "Authorization": "Bearer x" } }
  }
}"#;

/// Cline's `cline_mcp_settings.json`: approval lists, `disabled`, `timeout` in seconds,
/// the older `transportType`.
const CLINE: &str = r#"{
  "mcpServers": {
    "github": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-github"],
      "env": { "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x" },
      "autoApprove": ["list_issues", "get_issue"],
      "disabled": false,
      "timeout": 60,
      "transportType": "stdio"
    },
    "weather": {
      "url": "http://localhost:3000/sse",
      "transportType": "sse",
      "disabled": true,
      "autoApprove": []
    },
    "streamed": { "type": "streamableHttp", "url": "http://localhost:3001/mcp", "timeout": 300 }
  }
}"#;

/// Roo Code's `mcp_settings.json`: `alwaysAllow`, `disabledTools`, `cwd`, `watchPaths`.
const ROO: &str = r#"{
  "mcpServers": {
    "files": {
      "command": "python",
      "args": ["server.py"],
      "cwd": "/srv/files",
      "alwaysAllow": ["read_file"],
      "disabledTools": ["delete_file"],
      "watchPaths": ["/srv/files/server.py"],
      "timeout": 120,
      "disabled": false
    },
    "remote": { "type": "streamable-http", "url": "https://api.example.com/mcp", "alwaysAllow": [] }
  }
}"#;

/// VS Code-style entries: `type` on every entry, `http` for Streamable HTTP.
const VSCODE_STYLE: &str = r#"{
  "mcpServers": {
    "playwright": { "type": "stdio", "command": "npx", "args": ["@playwright/mcp@latest"] },
    "docs": { "type": "http", "url": "https://docs.example.com/mcp" },
    "legacy": { "type": "sse", "url": "https://legacy.example.com/sse" }
  }
}"#;

/// Gemini CLI-style entries: `timeout` in milliseconds, `trust`.
const GEMINI_STYLE: &str = r#"{
  "mcpServers": {
    "tools": { "command": "node", "args": ["tools.js"], "timeout": 600000, "trust": false }
  }
}"#;

#[test]
fn host_files_are_accepted() {
    for (host, text, servers) in [
        ("Claude Desktop", CLAUDE_DESKTOP, 1),
        ("Cursor", CURSOR, 2),
        ("Cline", CLINE, 3),
        ("Roo Code", ROO, 2),
        ("VS Code style", VSCODE_STYLE, 3),
        ("Gemini style", GEMINI_STYLE, 1),
    ] {
        let config = json(text).unwrap_or_else(|error| panic!("{host}: {error}"));
        assert_eq!(config.servers.len(), servers, "{host}");
    }
}

#[test]
fn keys_with_a_meaning_are_honoured() {
    let cline = json(CLINE).unwrap();
    let github = &cline.servers["github"];
    assert!(github.enabled);
    assert_eq!(github.auto_approve, ["list_issues", "get_issue"]);
    // Cline and Roo write seconds.
    assert_eq!(github.request_timeout, Some(Duration::from_secs(60)));
    assert_eq!(github.transport.kind(), "stdio");
    let weather = &cline.servers["weather"];
    assert!(!weather.enabled, "disabled: true skips the server");
    assert_eq!(weather.transport.kind(), "sse", "transportType honoured");
    assert_eq!(cline.enabled_servers().count(), 2);
    assert_eq!(
        cline.servers["streamed"].request_timeout,
        Some(Duration::from_secs(300))
    );

    let roo = json(ROO).unwrap();
    let files = &roo.servers["files"];
    assert_eq!(files.auto_approve, ["read_file"]);
    let TransportSpec::Stdio { cwd, .. } = &files.transport else {
        panic!("files is stdio");
    };
    assert_eq!(cwd.as_deref(), Some(Path::new("/srv/files")));
    assert_eq!(files.request_timeout, Some(Duration::from_secs(120)));

    // Above an hour, a timeout is read as milliseconds (Gemini CLI style).
    let gemini = json(GEMINI_STYLE).unwrap();
    assert_eq!(
        gemini.servers["tools"].request_timeout,
        Some(Duration::from_secs(600))
    );
}

#[test]
fn other_unknown_keys_in_mcp_json_are_warnings() {
    let roo = json(ROO).unwrap();
    let warnings: Vec<String> = roo.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("mcpServers.files.disabledTools")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("mcpServers.files.watchPaths")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().all(|w| w.starts_with(".mcp.json: ")),
        "{warnings:?}"
    );
    let desktop = json(CLAUDE_DESKTOP).unwrap();
    assert_eq!(desktop.warnings.len(), 1, "{:?}", desktop.warnings);
    assert_eq!(desktop.warnings[0].key(), "globalShortcut");
    // Keys with a meaning produce no warning.
    let cline = json(CLINE).unwrap();
    assert!(cline.warnings.is_empty(), "{:?}", cline.warnings);
}

#[test]
fn conflicting_transport_keys_are_errors() {
    assert_invalid(
        json(
            r#"{"mcpServers": {"x": {"type": "sse", "transportType": "stdio", "url": "http://x"}}}"#,
        ),
        "mcpServers.x.transportType",
        "conflicts with `type`",
    );
    assert_invalid(
        json(r#"{"mcpServers": {"x": {"command": "x", "autoApprove": "all"}}}"#),
        "mcpServers.x.autoApprove",
        "expected a sequence",
    );
}

#[test]
fn native_format_stays_strict() {
    assert_invalid(
        native("[servers.x]\ncommand = \"x\"\nautoApprove = [\"a\"]\n"),
        "servers.x.autoApprove",
        "unknown field `autoApprove`",
    );
}

// ---- type errors never echo the value ----

#[test]
fn type_errors_name_the_key_and_type_but_not_the_value() {
    let cases = [
        (
            native("[servers.x]\ncommand = \"x\"\nenv = \"SECRET_TOKEN=hunter2-value\"\n"),
            "servers.x.env",
        ),
        (
            native(
                "[servers.x]\nurl = \"http://x\"\nheaders = \"Authorization: Bearer hunter2-value\"\n",
            ),
            "servers.x.headers",
        ),
        (
            native("[servers.x]\nurl = \"http://x\"\noauth = \"hunter2-value\"\n"),
            "servers.x.oauth",
        ),
        (
            native(
                "[servers.x]\nurl = \"http://x\"\n[servers.x.oauth]\nclient_secret = [\"hunter2-value\"]\n",
            ),
            "servers.x.oauth.client_secret",
        ),
        (
            json(r#"{"mcpServers": {"x": {"command": "x", "env": "SECRET_TOKEN=hunter2-value"}}}"#),
            "mcpServers.x.env",
        ),
        (
            json(r#"{"mcpServers": {"x": {"command": "x", "env": {"A": 31337}}}}"#),
            "mcpServers.x.env.A",
        ),
        (
            json(r#"{"mcpServers": {"x": {"url": "http://x", "headers": {"A": true}}}}"#),
            "mcpServers.x.headers.A",
        ),
        (
            native("[gateway]\nadmin_token = 31337\n"),
            "gateway.admin_token",
        ),
        (
            native("[servers.x]\ncommand = \"x\"\nenv = { A = \"${hunter2 value}\" }\n"),
            "servers.x.env.A",
        ),
        (
            native("[servers.x]\nurl = \"https://user:hunter2-value@\"\n"),
            "servers.x.url",
        ),
    ];
    for (result, key) in cases {
        let error = result.expect_err(key);
        let display = error.to_string();
        assert_eq!(error.key_path(), Some(key), "{display}");
        for secret in ["hunter2", "31337", "true"] {
            assert!(!display.contains(secret), "{display:?} echoes the value");
        }
        assert!(
            display.contains("expected") || display.contains("invalid"),
            "{display}"
        );
    }
}

// ---- reading: regular files only, bounded ----

#[test]
fn a_fifo_is_a_config_error_and_does_not_block() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    // Without a non-blocking open this would wait for a writer forever.
    let (done, result) = std::sync::mpsc::channel();
    let probe = path.clone();
    std::thread::spawn(move || done.send(load(&probe).map(drop)).unwrap());
    let error = result
        .recv_timeout(Duration::from_secs(10))
        .expect("load returned")
        .unwrap_err();
    assert!(matches!(error, ConfigError::NotAFile { .. }), "{error:?}");
    assert!(error.to_string().contains("FIFO"), "{error}");
}

#[test]
fn devices_directories_and_symlink_loops_are_config_errors() {
    let directory = tempfile::tempdir().unwrap();
    let looped = directory.path().join("loop.toml");
    symlink("loop.toml", &looped).unwrap();
    let zero = directory.path().join("zero.toml");
    symlink("/dev/zero", &zero).unwrap();
    for (path, expected) in [
        (zero.as_path(), "character device"),
        (directory.path(), "directory"),
        (looped.as_path(), "cannot read config"),
    ] {
        let error = load(path).unwrap_err();
        assert_eq!(error.file(), Some(path));
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[test]
fn oversized_files_are_config_errors() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    // Sparse: 17 MiB of zeros without writing them.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(17 * 1024 * 1024)
        .unwrap();
    let error = load(&path).unwrap_err();
    assert!(matches!(error, ConfigError::TooLarge { .. }), "{error:?}");
    assert!(error.to_string().contains("16777216"), "{error}");

    let small = directory.path().join(".mcp.json");
    std::fs::write(
        &small,
        format!(r#"{{"mcpServers": {{}}, "x": "{}"}}"#, "a".repeat(200)),
    )
    .unwrap();
    assert!(load(&small).is_ok());
    let error = load_with_limit(&small, 100).unwrap_err();
    assert!(
        matches!(error, ConfigError::TooLarge { limit: 100, .. }),
        "{error:?}"
    );
}
