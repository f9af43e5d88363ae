//! Both file formats: full parses, defaults, equivalence, detection, loading, reload diffs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{json, native};
use switchboard_config::{
    Config, ConfigFormat, EraPreference, GatewaySettings, ListenSettings, Secret, ServerName,
    ServerSpec, TransportSpec, detect_format, load,
};

fn name(name: &str) -> ServerName {
    ServerName::new(name).unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret<String>> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Secret::new((*value).to_owned())))
        .collect()
}

const FULL_NATIVE: &str = r#"
[gateway]
name = "my-gateway"
passthrough = false
max_message_bytes = 1048576
request_timeout_ms = 45000
probe_timeout_ms = 1500
connect_timeout_ms = 10000
state_secret = "${SECRET}"

[listen]
http = "0.0.0.0:9000"
allowed_origins = ["https://app.example.com", "http://localhost:5173"]
allowed_hosts = ["gateway.internal", "gateway.internal:9000"]
header_read_timeout_ms = 5000
body_read_timeout_ms = 20000
max_connections_per_client = 64
max_sessions_per_client = 100
metrics_allowed_hosts = ["prometheus.internal", "*"]
max_body_bytes = 2097152

[servers.time]
command = "uvx"
args = ["mcp-server-time", "--local-timezone=${TZ_NAME}", "$$HOME"]
env = { TZ = "${TZ_NAME}", PLAIN = "x" }
cwd = "/tmp"
era = "legacy"
request_timeout_ms = 30000
enabled = true

[servers.remote]
url = "http://127.0.0.1:3001/mcp"
headers = { Authorization = "Bearer ${TOKEN}" }
era = "modern"

[servers.old]
transport = "sse"
url = "https://example.com/sse"
enabled = false
"#;

const FULL_JSON: &str = r#"{
  "switchboard": {
    "gateway": {
      "name": "my-gateway",
      "passthrough": false,
      "max_message_bytes": 1048576,
      "request_timeout_ms": 45000,
      "probe_timeout_ms": 1500,
      "connect_timeout_ms": 10000,
      "state_secret": "${SECRET}"
    },
    "listen": {
      "http": "0.0.0.0:9000",
      "allowed_origins": ["https://app.example.com", "http://localhost:5173"],
      "allowed_hosts": ["gateway.internal", "gateway.internal:9000"],
      "max_body_bytes": 2097152,
      "header_read_timeout_ms": 5000,
      "body_read_timeout_ms": 20000,
      "max_connections_per_client": 64,
      "max_sessions_per_client": 100,
      "metrics_allowed_hosts": ["prometheus.internal", "*"]
    }
  },
  "mcpServers": {
    "time": {
      "command": "uvx",
      "args": ["mcp-server-time", "--local-timezone=${TZ_NAME}", "$$HOME"],
      "env": { "TZ": "${TZ_NAME}", "PLAIN": "x" },
      "cwd": "/tmp",
      "timeout": 30000,
      "description": "clock"
    },
    "remote": {
      "type": "http",
      "url": "http://127.0.0.1:3001/mcp",
      "headers": { "Authorization": "Bearer ${TOKEN}" }
    },
    "old": { "type": "sse", "url": "https://example.com/sse", "disabled": true }
  }
}"#;

#[test]
fn full_native_file_parses_to_expected_values() {
    let config = native(FULL_NATIVE).unwrap();
    assert_eq!(
        config.gateway,
        GatewaySettings {
            name: "my-gateway".to_owned(),
            passthrough: false,
            max_message_bytes: 1_048_576,
            request_timeout: Duration::from_secs(45),
            probe_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(10),
            state_secret: Some(Secret::new("0123456789abcdef0123".to_owned())),
            ..GatewaySettings::default()
        }
    );
    assert_eq!(
        config.listen,
        ListenSettings {
            http: Some("0.0.0.0:9000".parse().unwrap()),
            allowed_origins: vec![
                "https://app.example.com".to_owned(),
                "http://localhost:5173".to_owned()
            ],
            allowed_hosts: vec![
                "gateway.internal".to_owned(),
                "gateway.internal:9000".to_owned()
            ],
            max_body_bytes: 2_097_152,
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(20),
            max_connections_per_client: 64,
            max_sessions_per_client: 100,
            metrics_allowed_hosts: vec!["prometheus.internal".to_owned(), "*".to_owned()],
        }
    );
    let names: Vec<&str> = config.servers.keys().map(ServerName::as_str).collect();
    assert_eq!(names, ["old", "remote", "time"], "name order");
    assert_eq!(
        config.servers[&name("time")],
        ServerSpec {
            transport: TransportSpec::Stdio {
                command: "uvx".to_owned(),
                args: vec![
                    "mcp-server-time".to_owned(),
                    "--local-timezone=UTC".to_owned(),
                    "$HOME".to_owned()
                ],
                env: map(&[("PLAIN", "x"), ("TZ", "UTC")]),
                cwd: Some(PathBuf::from("/tmp")),
                sandbox: None,
            },
            era: EraPreference::Legacy,
            request_timeout: Some(Duration::from_secs(30)),
            enabled: true,
            lazy: false,
            required: false,
            idle_timeout: None,
            policy: Default::default(),
            auto_approve: Vec::new(),
            tenants: BTreeMap::new(),
            group: None,
            cluster: Default::default(),
        }
    );
    assert_eq!(
        config.servers["remote"],
        ServerSpec {
            transport: TransportSpec::Http {
                url: "http://127.0.0.1:3001/mcp".to_owned(),
                headers: map(&[("Authorization", "Bearer s3cret")]),
                oauth: None,
            },
            era: EraPreference::Modern,
            request_timeout: None,
            enabled: true,
            lazy: false,
            required: false,
            idle_timeout: None,
            policy: Default::default(),
            auto_approve: Vec::new(),
            tenants: BTreeMap::new(),
            group: None,
            cluster: Default::default(),
        }
    );
    assert_eq!(
        config.servers["old"].transport,
        TransportSpec::Sse {
            url: "https://example.com/sse".to_owned(),
            headers: BTreeMap::new(),
        }
    );
    assert!(!config.servers["old"].enabled);
    assert_eq!(config.enabled_servers().count(), 2);
    assert_eq!(
        config.source.path.as_deref(),
        Some(Path::new("switchboard.toml"))
    );
    assert_eq!(config.source.format, ConfigFormat::Native);
}

#[test]
fn both_formats_give_the_same_config_for_equivalent_content() {
    let from_toml = native(FULL_NATIVE).unwrap();
    let from_json = json(FULL_JSON).unwrap();
    assert_eq!(from_json.gateway, from_toml.gateway);
    assert_eq!(from_json.listen, from_toml.listen);
    // `era` has no .mcp.json spelling, so only the eras differ.
    let mut toml_servers = from_toml.servers.clone();
    for spec in toml_servers.values_mut() {
        spec.era = EraPreference::Auto;
    }
    assert_eq!(from_json.servers, toml_servers);
    assert_eq!(from_json.source.format, ConfigFormat::McpJson);
}

#[test]
fn equivalent_minimal_files_are_identical() {
    let from_toml = native(
        "[servers.fs]\ncommand = \"npx\"\nargs = [\"-y\", \"srv\", \"/tmp\"]\nenv = { A = \"b\" }\n\
         [servers.remote]\nurl = \"http://127.0.0.1:3001/mcp\"\nheaders = { X = \"y\" }\n\
         [servers.old]\ntransport = \"sse\"\nurl = \"http://127.0.0.1:3002/sse\"\n",
    )
    .unwrap();
    let from_json = json(
        r#"{ "mcpServers": {
            "fs": { "command": "npx", "args": ["-y", "srv", "/tmp"], "env": {"A": "b"} },
            "remote": { "type": "http", "url": "http://127.0.0.1:3001/mcp", "headers": {"X": "y"} },
            "old": { "type": "sse", "url": "http://127.0.0.1:3002/sse" } } }"#,
    )
    .unwrap();
    assert_eq!(from_json.gateway, from_toml.gateway);
    assert_eq!(from_json.listen, from_toml.listen);
    assert_eq!(from_json.servers, from_toml.servers);
}

#[test]
fn empty_documents_are_valid_with_defaults() {
    for config in [
        native("").unwrap(),
        native("# only a comment\n").unwrap(),
        json("{}").unwrap(),
        json(r#"{"mcpServers": {}}"#).unwrap(),
    ] {
        assert!(config.servers.is_empty());
        assert_eq!(config.gateway, GatewaySettings::default());
        assert_eq!(config.listen, ListenSettings::default());
        assert_eq!(config.listen.http, Some(Config::default_listen()));
    }
}

#[test]
fn byte_order_mark_is_ignored() {
    let config = native("\u{feff}[servers.t]\ncommand = \"x\"\n").unwrap();
    assert_eq!(config.servers.len(), 1);
}

#[test]
fn transports_are_inferred_or_explicit() {
    let config = native(
        "[servers.a]\ncommand = \"a\"\n\
         [servers.b]\ntransport = \"stdio\"\ncommand = \"b\"\n\
         [servers.c]\nurl = \"http://c\"\n\
         [servers.d]\ntransport = \"http\"\nurl = \"https://d:8443/mcp?x=1\"\n\
         [servers.e]\ntransport = \"sse\"\nurl = \"http://e/sse\"\n",
    )
    .unwrap();
    let kinds: Vec<&str> = config
        .servers
        .values()
        .map(|spec| spec.transport.kind())
        .collect();
    assert_eq!(kinds, ["stdio", "stdio", "http", "http", "sse"]);
}

#[test]
fn json_type_spellings_and_harmless_keys() {
    let config = json(
        r#"{"mcpServers": {
            "a": {"type": "stdio", "command": "a", "cwd": "/srv", "description": "x", "disabled": false},
            "b": {"type": "http", "url": "http://b"},
            "c": {"type": "streamable-http", "url": "http://c"},
            "d": {"type": "streamableHttp", "url": "http://d", "timeout": 25},
            "e": {"type": "sse", "url": "http://e"},
            "f": {"url": "http://f", "disabled": true}
        }}"#,
    )
    .unwrap();
    let kinds: Vec<&str> = config
        .servers
        .values()
        .map(|spec| spec.transport.kind())
        .collect();
    assert_eq!(kinds, ["stdio", "http", "http", "http", "sse", "http"]);
    let TransportSpec::Stdio { cwd, .. } = &config.servers["a"].transport else {
        panic!("a is stdio");
    };
    assert_eq!(cwd.as_deref(), Some(Path::new("/srv")));
    assert!(config.servers["a"].enabled);
    assert_eq!(
        config.servers["d"].request_timeout,
        Some(Duration::from_secs(25))
    );
    assert!(!config.servers["f"].enabled);
}

#[test]
fn http_listener_can_be_disabled() {
    assert_eq!(
        native("[listen]\nhttp = false\n").unwrap().listen.http,
        None
    );
    assert_eq!(
        native("[listen]\nhttp = true\n").unwrap().listen.http,
        Some(Config::default_listen())
    );
    assert_eq!(
        native("[listen]\nhttp = \"[::1]:8080\"\n")
            .unwrap()
            .listen
            .http,
        Some("[::1]:8080".parse().unwrap())
    );
    assert_eq!(
        json(r#"{"switchboard": {"listen": {"http": null}}}"#)
            .unwrap()
            .listen
            .http,
        None
    );
    assert_eq!(
        json(r#"{"switchboard": {"listen": {"http": false}}}"#)
            .unwrap()
            .listen
            .http,
        None
    );
}

#[test]
fn variable_defaults_and_escapes() {
    let config = native(
        "[servers.t]\ncommand = \"x\"\nargs = [\"${NOPE:-fallback}\", \"$${TOKEN}\", \"${TOKEN}\"]\n",
    )
    .unwrap();
    let TransportSpec::Stdio { args, .. } = &config.servers["t"].transport else {
        panic!("stdio");
    };
    assert_eq!(args, &["fallback", "${TOKEN}", "s3cret"]);
}

#[test]
fn format_detection() {
    let cases = [
        ("switchboard.toml", "{", ConfigFormat::Native),
        (".mcp.json", "[gateway]", ConfigFormat::McpJson),
        ("claude_desktop_config.JSON", "", ConfigFormat::McpJson),
        (
            "config",
            "  \n{ \"mcpServers\": {} }",
            ConfigFormat::McpJson,
        ),
        ("config", "\u{feff}{}", ConfigFormat::McpJson),
        ("config.conf", "[gateway]\n", ConfigFormat::Native),
        ("config", "", ConfigFormat::Native),
        ("config.yaml", "# {", ConfigFormat::Native),
    ];
    for (path, text, expected) in cases {
        assert_eq!(
            detect_format(Path::new(path), text),
            expected,
            "{path} {text:?}"
        );
    }
}

#[test]
fn load_reads_detects_and_records_the_source() {
    let directory = tempfile::tempdir().unwrap();
    let toml_path = directory.path().join("switchboard.toml");
    std::fs::write(&toml_path, "[servers.t]\ncommand = \"x\"\n").unwrap();
    let from_toml = load(&toml_path).unwrap();
    assert_eq!(from_toml.source.path.as_deref(), Some(toml_path.as_path()));
    assert_eq!(from_toml.source.format, ConfigFormat::Native);

    let sniffed_path = directory.path().join("gateway-config");
    std::fs::write(&sniffed_path, r#"{"mcpServers": {"t": {"command": "x"}}}"#).unwrap();
    let sniffed = load(&sniffed_path).unwrap();
    assert_eq!(sniffed.source.format, ConfigFormat::McpJson);
    assert_eq!(sniffed.servers, from_toml.servers);

    let bad_path = directory.path().join("bad.toml");
    std::fs::write(&bad_path, "[servers.time]\ncomand = \"uvx\"\n").unwrap();
    let error = load(&bad_path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:2:1: servers.time.comand: unknown field `comand`, expected one of `transport`, \
             `command`, `args`, `env`, `cwd`, `url`, `headers`, `oauth`, `era`, `request_timeout_ms`, `enabled`, `lazy`, `required`, `idle_timeout_ms`, `sharing`, `pool`, `health`, `breaker`, `limits`, `restart_backoff_ms`, `restart_backoff_max_ms`, `retry_backoff_ms`, `retry_backoff_max_ms`, `timeout_reset_on_progress`, `max_total_timeout_ms`, `read_only_retries`, `trust_annotations`, `cache_read_only_ms`, `validate`, `pin`, `tools`, `tenants`, `sandbox`, `group`, `cluster`",
            bad_path.display()
        )
    );
}

#[test]
fn oauth_client_information_is_read_and_its_secret_redacted() {
    let config = native(
        "[servers.r]\nurl = \"https://mcp.example.com/mcp\"\n[servers.r.oauth]\n\
         client_id = \"gateway\"\nclient_secret = \"${SECRET}\"\n\
         client_metadata_url = \"https://gateway.example.com/client.json\"\n",
    )
    .expect("valid");
    let TransportSpec::Http { oauth, .. } = &config.servers["r"].transport else {
        panic!("http");
    };
    let oauth = oauth.as_ref().expect("oauth read");
    assert_eq!(oauth.client_id.as_deref(), Some("gateway"));
    assert_eq!(
        oauth.client_secret.as_ref().map(Secret::expose_str),
        Some("0123456789abcdef0123")
    );
    assert_eq!(
        oauth.client_metadata_url.as_deref(),
        Some("https://gateway.example.com/client.json")
    );
    let shown = format!("{config:?}");
    assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
}
