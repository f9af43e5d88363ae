//! Every way a config can be rejected, and that the error names file, key and expectation.

mod common;

use std::path::Path;

use common::{assert_invalid, json, native};
use switchboard_config::{ConfigError, ConfigFormat, load, parse};

// ---- unknown keys, at every level ----

#[test]
fn unknown_key_at_native_root() {
    let display = assert_invalid(native("foo = 1\n"), "foo", "unknown field `foo`");
    assert!(
        display.contains("expected one of `gateway`, `listen`, `servers`"),
        "{display}"
    );
}

#[test]
fn unknown_key_in_gateway() {
    assert_invalid(
        native("[gateway]\nnme = \"x\"\n"),
        "gateway.nme",
        "unknown field `nme`, expected one of `name`",
    );
}

#[test]
fn unknown_key_in_listen() {
    assert_invalid(
        native("[listen]\nhttp_addr = \"127.0.0.1:1\"\n"),
        "listen.http_addr",
        "unknown field `http_addr`",
    );
}

#[test]
fn unknown_key_in_server_shows_file_position_key_and_choices() {
    let text = "[servers.time]\ncommand = \"uvx\"\ncomand = \"uvx\"\n";
    let display = assert_invalid(
        native(text),
        "servers.time.comand",
        "unknown field `comand`, expected one of `transport`, `command`",
    );
    assert!(
        display.starts_with("switchboard.toml:3:1: servers.time.comand: "),
        "{display}"
    );
    assert_eq!(native(text).unwrap_err().line_column(), Some((3, 1)));
}

#[test]
fn unknown_key_at_json_root_is_a_warning() {
    let config = json(r#"{"mcpServers": {}, "servers": {}}"#).unwrap();
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [".mcp.json: servers: ignored: switchboard reads only `mcpServers` and `switchboard`"]
    );
}

#[test]
fn unknown_key_in_json_switchboard_section() {
    assert_invalid(
        json(r#"{"switchboard": {"servers": {}}}"#),
        "switchboard.servers",
        "unknown field `servers`, expected `gateway` or `listen`",
    );
    assert_invalid(
        json(r#"{"switchboard": {"gateway": {"timeout": 5}}}"#),
        "switchboard.gateway.timeout",
        "unknown field `timeout`",
    );
    assert_invalid(
        json(r#"{"switchboard": {"listen": {"port": 5}}}"#),
        "switchboard.listen.port",
        "unknown field `port`",
    );
}

#[test]
fn unknown_key_in_json_server_is_a_warning() {
    let config =
        json(r#"{"mcpServers": {"fs": {"command": "npx", "comand": "npx", "era": "modern"}}}"#)
            .unwrap();
    let keys: Vec<&str> = config.warnings.iter().map(|w| w.key()).collect();
    assert_eq!(keys, ["mcpServers.fs.comand", "mcpServers.fs.era"]);
    assert_eq!(
        config.warnings[0].to_string(),
        ".mcp.json: mcpServers.fs.comand: ignored: switchboard does not use this key"
    );
}

// ---- wrong types ----

#[test]
fn wrong_type_in_args_element() {
    assert_invalid(
        native("[servers.time]\ncommand = \"uvx\"\nargs = [\"a\", 3]\n"),
        "servers.time.args[1]",
        "invalid type: integer, expected a string",
    );
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {"command": "x", "args": ["a", true]}}}"#),
        "mcpServers.fs.args[1]",
        "expected a string",
    );
}

#[test]
fn wrong_type_for_whole_values() {
    let cases = [
        (
            "[servers.t]\ncommand = \"x\"\nargs = \"a\"\n",
            "servers.t.args",
            "expected a sequence",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nenv = { A = 1 }\n",
            "servers.t.env.A",
            "expected a string",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nenv = [\"A=1\"]\n",
            "servers.t.env",
            "expected a table",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nenabled = \"yes\"\n",
            "servers.t.enabled",
            "expected a boolean",
        ),
        ("[servers]\nt = 5\n", "servers.t", "expected a table"),
        ("servers = []\n", "servers", "expected a table"),
        ("gateway = []\n", "gateway", "expected a table"),
        (
            "[gateway]\npassthrough = \"yes\"\n",
            "gateway.passthrough",
            "expected a boolean",
        ),
        (
            "[gateway]\nrequest_timeout_ms = -1\n",
            "gateway.request_timeout_ms",
            "expected u64",
        ),
        (
            "[gateway]\nrequest_timeout_ms = 1.5\n",
            "gateway.request_timeout_ms",
            "expected u64",
        ),
        (
            "[listen]\nhttp = \"nope\"\n",
            "listen.http",
            "expected a socket address",
        ),
        (
            "[listen]\nhttp = 8931\n",
            "listen.http",
            "expected a socket address",
        ),
        (
            "[listen]\nallowed_hosts = \"a\"\n",
            "listen.allowed_hosts",
            "expected a sequence",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nera = \"new\"\n",
            "servers.t.era",
            "expected one of `auto`, `legacy`, `modern`",
        ),
        (
            "[servers.t]\ntransport = \"grpc\"\n",
            "servers.t.transport",
            "expected one of `stdio`, `http`, `sse`",
        ),
    ];
    for (text, key, expected) in cases {
        assert_invalid(native(text), key, expected);
    }
}

#[test]
fn wrong_types_in_json() {
    let cases = [
        (r#"[]"#, "", "expected a table"),
        (r#"{"mcpServers": []}"#, "mcpServers", "expected a table"),
        (
            r#"{"mcpServers": {"fs": "npx"}}"#,
            "mcpServers.fs",
            "expected a table",
        ),
        (
            r#"{"mcpServers": {"fs": {"command": "x", "disabled": 1}}}"#,
            "mcpServers.fs.disabled",
            "expected a boolean",
        ),
        (
            r#"{"mcpServers": {"fs": {"command": "x", "timeout": "5s"}}}"#,
            "mcpServers.fs.timeout",
            "expected u64",
        ),
        (
            r#"{"mcpServers": {"fs": {"command": "x", "type": "websocket"}}}"#,
            "mcpServers.fs.type",
            "unknown variant `websocket`",
        ),
        (
            r#"{"switchboard": {"listen": {"http": 1}}}"#,
            "switchboard.listen.http",
            "expected a socket address",
        ),
    ];
    for (text, key, expected) in cases {
        assert_invalid(json(text), key, expected);
    }
}

// ---- names ----

#[test]
fn bad_server_names() {
    let cases = [
        (
            "[servers.\"a b\"]\ncommand = \"x\"\n",
            r#"servers."a b""#,
            "only ASCII letters",
        ),
        (
            "[servers.a__b]\ncommand = \"x\"\n",
            "servers.a__b",
            "must not contain `__`",
        ),
        (
            "[servers.\"\"]\ncommand = \"x\"\n",
            r#"servers."""#,
            "must not be empty",
        ),
        (
            "[servers.abcdefghijklmnopqrstuvwxyz0123456]\ncommand = \"x\"\n",
            "servers.abcdefghijklmnopqrstuvwxyz0123456",
            "at most 32",
        ),
    ];
    for (text, key, expected) in cases {
        assert_invalid(native(text), key, expected);
    }
    assert_invalid(
        json(r#"{"mcpServers": {"my.server": {"command": "x"}}}"#),
        r#"mcpServers."my.server""#,
        "invalid server name",
    );
}

// ---- transport shape ----

#[test]
fn missing_command_or_url() {
    assert_invalid(
        native("[servers.t]\nargs = [\"a\"]\n"),
        "servers.t",
        "missing field `command` (for a stdio server) or `url`",
    );
    assert_invalid(
        native("[servers.t]\ntransport = \"stdio\"\nargs = [\"a\"]\n"),
        "servers.t",
        "missing field `command`, required for a stdio server (`transport` is \"stdio\")",
    );
    assert_invalid(
        native("[servers.t]\ntransport = \"sse\"\n"),
        "servers.t",
        "missing field `url`, required for an sse server",
    );
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {"type": "stdio"}}}"#),
        "mcpServers.fs",
        "missing field `command`, required for a stdio server (`type` is \"stdio\")",
    );
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {}}}"#),
        "mcpServers.fs",
        "missing field",
    );
}

#[test]
fn empty_command() {
    assert_invalid(
        native("[servers.t]\ncommand = \"  \"\n"),
        "servers.t.command",
        "must not be empty",
    );
}

#[test]
fn conflicting_transport_and_fields() {
    let cases = [
        (
            "[servers.t]\ntransport = \"http\"\ncommand = \"x\"\nurl = \"http://a\"\n",
            "servers.t.command",
            "not allowed for an http server (`transport` is \"http\")",
        ),
        (
            "[servers.t]\ntransport = \"stdio\"\ncommand = \"x\"\nurl = \"http://a\"\n",
            "servers.t.url",
            "not allowed for a stdio server (`transport` is \"stdio\")",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nheaders = { A = \"b\" }\n",
            "servers.t.headers",
            "not allowed for a stdio server (inferred from `command`)",
        ),
        (
            "[servers.t]\nurl = \"http://a\"\nargs = [\"x\"]\n",
            "servers.t.args",
            "not allowed for an http server (inferred from `url`)",
        ),
        (
            "[servers.t]\ntransport = \"sse\"\nurl = \"http://a\"\nenv = { A = \"b\" }\n",
            "servers.t.env",
            "not allowed for an sse server",
        ),
        (
            "[servers.t]\nurl = \"http://a\"\ncwd = \"/tmp\"\n",
            "servers.t.cwd",
            "not allowed for an http server",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nurl = \"http://a\"\n",
            "servers.t",
            "both `command` and `url` are set",
        ),
    ];
    for (text, key, expected) in cases {
        assert_invalid(native(text), key, expected);
    }
    assert_invalid(
        json(r#"{"mcpServers": {"r": {"type": "sse", "command": "x", "url": "http://a"}}}"#),
        "mcpServers.r.command",
        "not allowed for an sse server (`type` is \"sse\")",
    );
}

// ---- values ----

#[test]
fn bad_urls() {
    let cases = [
        ("localhost:3000/mcp", "missing scheme"),
        ("ftp://example.com/mcp", "unsupported scheme `ftp`"),
        ("http:///mcp", "invalid"),
        ("http://exa mple.com/", "invalid"),
        ("", "empty"),
    ];
    for (url, expected) in cases {
        let display = assert_invalid(
            native(&format!("[servers.r]\nurl = \"{url}\"\n")),
            "servers.r.url",
            expected,
        );
        assert!(
            display.contains("expected an absolute http:// or https:// URL"),
            "{display}"
        );
    }
    assert_invalid(
        json(r#"{"mcpServers": {"r": {"type": "http", "url": "mailto:a@b"}}}"#),
        "mcpServers.r.url",
        "expected an absolute http:// or https:// URL",
    );
}

#[test]
fn bad_headers() {
    assert_invalid(
        native("[servers.r]\nurl = \"http://a\"\nheaders = { \"Bad Name\" = \"x\" }\n"),
        r#"servers.r.headers."Bad Name""#,
        "invalid HTTP header name",
    );
    let display = assert_invalid(
        native("[servers.r]\nurl = \"http://a\"\nheaders = { X-Key = \"line\\nbreak-secret\" }\n"),
        "servers.r.headers.X-Key",
        "invalid HTTP header value",
    );
    assert!(
        !display.contains("break-secret"),
        "header values are not echoed: {display}"
    );
    assert_invalid(
        native("[servers.r]\nurl = \"http://a\"\nheaders = { X-Key = \"a\", x-key = \"b\" }\n"),
        "servers.r.headers.x-key",
        "duplicate header",
    );
}

#[test]
fn bad_env_names_and_nul() {
    assert_invalid(
        native("[servers.t]\ncommand = \"x\"\nenv = { \"A=B\" = \"c\" }\n"),
        r#"servers.t.env."A=B""#,
        "invalid environment variable name",
    );
    assert_invalid(
        native("[servers.t]\ncommand = \"x\"\nargs = [\"a\\u0000b\"]\n"),
        "servers.t.args[0]",
        "NUL",
    );
}

#[test]
fn unset_environment_variables_name_the_key() {
    let cases = [
        (
            "[servers.t]\ncommand = \"x\"\nargs = [\"a\", \"${NOPE}\"]\n",
            "servers.t.args[1]",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nenv = { A = \"${NOPE}\" }\n",
            "servers.t.env.A",
        ),
        ("[servers.t]\ncommand = \"${NOPE}\"\n", "servers.t.command"),
        (
            "[servers.t]\ncommand = \"x\"\ncwd = \"${NOPE}/dir\"\n",
            "servers.t.cwd",
        ),
        (
            "[servers.r]\nurl = \"http://a\"\nheaders = { Authorization = \"Bearer ${NOPE}\" }\n",
            "servers.r.headers.Authorization",
        ),
        (
            "[servers.r]\nurl = \"http://${NOPE}/mcp\"\n",
            "servers.r.url",
        ),
        (
            "[gateway]\nstate_secret = \"${NOPE}\"\n",
            "gateway.state_secret",
        ),
    ];
    for (text, key) in cases {
        assert_invalid(native(text), key, "environment variable `NOPE` is not set");
    }
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {"command": "x", "env": {"K": "${NOPE}"}}}}"#),
        "mcpServers.fs.env.K",
        "environment variable `NOPE` is not set",
    );
    assert_invalid(
        native("[servers.t]\ncommand = \"x\"\nargs = [\"${unterminated\"]\n"),
        "servers.t.args[0]",
        "unterminated",
    );
}

#[test]
fn passthrough_needs_exactly_one_server() {
    let two = "[gateway]\npassthrough = true\n[servers.a]\ncommand = \"a\"\n[servers.b]\ncommand = \"b\"\n";
    assert_invalid(
        native(two),
        "gateway.passthrough",
        "passthrough mode needs exactly one server, found 2",
    );
    assert_invalid(
        native("[gateway]\npassthrough = true\n"),
        "gateway.passthrough",
        "found 0",
    );
    assert_invalid(
        json(
            r#"{"switchboard": {"gateway": {"passthrough": true}},
                "mcpServers": {"a": {"command": "a"}, "b": {"command": "b"}}}"#,
        ),
        "switchboard.gateway.passthrough",
        "found 2",
    );
    let one = native("[gateway]\npassthrough = true\n[servers.a]\ncommand = \"a\"\n").unwrap();
    assert!(one.gateway.passthrough);
}

#[test]
fn zero_limits_and_timeouts() {
    let cases = [
        (
            "[gateway]\nrequest_timeout_ms = 0\n",
            "gateway.request_timeout_ms",
            "positive number of milliseconds",
        ),
        (
            "[gateway]\nprobe_timeout_ms = 0\n",
            "gateway.probe_timeout_ms",
            "positive",
        ),
        (
            "[gateway]\nconnect_timeout_ms = 0\n",
            "gateway.connect_timeout_ms",
            "positive",
        ),
        (
            "[gateway]\nmax_message_bytes = 0\n",
            "gateway.max_message_bytes",
            "positive number of bytes",
        ),
        (
            "[listen]\nmax_body_bytes = 0\n",
            "listen.max_body_bytes",
            "positive number of bytes",
        ),
        (
            "[listen]\nheader_read_timeout_ms = 0\n",
            "listen.header_read_timeout_ms",
            "positive",
        ),
        (
            "[listen]\nbody_read_timeout_ms = 0\n",
            "listen.body_read_timeout_ms",
            "positive",
        ),
        (
            "[listen]\nmax_connections_per_client = 0\n",
            "listen.max_connections_per_client",
            "at least 1",
        ),
        (
            "[listen]\nmax_sessions_per_client = 0\n",
            "listen.max_sessions_per_client",
            "at least 1",
        ),
        (
            "[listen]\nmetrics_allowed_hosts = [\"a/b\"]\n",
            "listen.metrics_allowed_hosts[0]",
            "host name",
        ),
        (
            "[servers.t]\ncommand = \"x\"\nrequest_timeout_ms = 0\n",
            "servers.t.request_timeout_ms",
            "positive",
        ),
        (
            "[gateway]\nname = \"\"\n",
            "gateway.name",
            "must not be empty",
        ),
        (
            "[gateway]\nstate_secret = \"short\"\n",
            "gateway.state_secret",
            "at least 16 bytes",
        ),
    ];
    for (text, key, expected) in cases {
        assert_invalid(native(text), key, expected);
    }
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {"command": "x", "timeout": 0}}}"#),
        "mcpServers.fs.timeout",
        "positive",
    );
}

#[test]
fn bad_origins_and_hosts() {
    for origin in [
        "https://app.example.com/",
        "app.example.com",
        "https://a.com/path",
        "https://",
    ] {
        assert_invalid(
            native(&format!(
                "[listen]\nallowed_origins = [\"https://ok.example\", \"{origin}\"]\n"
            )),
            "listen.allowed_origins[1]",
            "expected an origin like",
        );
    }
    for host in ["", "a/b", "user@host", "bad host"] {
        assert_invalid(
            native(&format!("[listen]\nallowed_hosts = [\"{host}\"]\n")),
            "listen.allowed_hosts[0]",
            "expected a host name",
        );
    }
}

#[test]
fn duplicate_server_in_json() {
    assert_invalid(
        json(r#"{"mcpServers": {"fs": {"command": "x"}, "fs": {"command": "y"}}}"#),
        "mcpServers",
        "duplicate key `fs`",
    );
}

// ---- syntax ----

#[test]
fn toml_syntax_error_reports_line_and_column() {
    let text = "[gateway]\nname = \"x\"\nrequest_timeout_ms = \n";
    let error = native(text).unwrap_err();
    let ConfigError::Syntax {
        line,
        column,
        format,
        ..
    } = &error
    else {
        panic!("not a syntax error: {error:?}");
    };
    assert_eq!((*line, *column, *format), (3, 22, ConfigFormat::Native));
    let display = error.to_string();
    assert!(
        display.starts_with("switchboard.toml:3:22: invalid TOML: "),
        "{display}"
    );
}

#[test]
fn toml_duplicate_table_is_a_syntax_error() {
    let error = native("[servers.t]\ncommand = \"a\"\n[servers.t]\ncommand = \"b\"\n").unwrap_err();
    assert!(
        matches!(error, ConfigError::Syntax { line: 3, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("duplicate key"), "{error}");
}

#[test]
fn json_syntax_errors_report_line_and_column() {
    let error =
        json("{\n  \"mcpServers\": {\n    \"fs\": {\"command\": \"x\",}\n  }\n}").unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Syntax {
                line: 3,
                format: ConfigFormat::McpJson,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().starts_with(".mcp.json:3:"), "{error}");
    let trailing = json("{} {}").unwrap_err();
    assert!(
        trailing.to_string().contains("trailing characters"),
        "{trailing}"
    );
    let eof = json("{\"mcpServers\": {").unwrap_err();
    assert!(matches!(eof, ConfigError::Syntax { .. }), "{eof:?}");
}

#[test]
fn errors_without_a_file_leave_the_file_out() {
    let error = parse("foo = 1", ConfigFormat::Native, None).unwrap_err();
    assert_eq!(error.file(), None);
    assert!(
        error
            .to_string()
            .starts_with("line 1, column 1: foo: unknown field"),
        "{error}"
    );
}

#[test]
fn unreadable_file_is_an_io_error() {
    let missing = Path::new("/nonexistent/switchboard/config.toml");
    let error = load(missing).unwrap_err();
    assert!(matches!(error, ConfigError::Io { .. }), "{error:?}");
    assert_eq!(error.file(), Some(missing));
    let display = error.to_string();
    assert!(
        display.starts_with("/nonexistent/switchboard/config.toml: cannot read config: "),
        "{display}"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn bad_oauth_sections() {
    assert_invalid(
        native("[servers.s]\ncommand = \"x\"\n[servers.s.oauth]\nclient_id = \"a\"\n"),
        "servers.s.oauth",
        "not allowed for a stdio server",
    );
    assert_invalid(
        native(
            "[servers.s]\nurl = \"http://a\"\ntransport = \"sse\"\n[servers.s.oauth]\nclient_id = \"a\"\n",
        ),
        "servers.s.oauth",
        "not allowed for an sse server",
    );
    assert_invalid(
        native(
            "[servers.r]\nurl = \"http://a\"\nheaders = { authorization = \"Bearer x\" }\n[servers.r.oauth]\nclient_id = \"a\"\n",
        ),
        "servers.r.oauth",
        "own `Authorization` header",
    );
    assert_invalid(
        native(
            "[servers.r]\nurl = \"http://a\"\n[servers.r.oauth]\nclient_secret = \"${SECRET}\"\n",
        ),
        "servers.r.oauth.client_secret",
        "needs its `client_id`",
    );
    assert_invalid(
        native(
            "[servers.r]\nurl = \"http://a\"\n[servers.r.oauth]\nclient_metadata_url = \"http://plain\"\n",
        ),
        "servers.r.oauth.client_metadata_url",
        "https:// URL",
    );
    assert_invalid(
        native("[servers.r]\nurl = \"http://a\"\n[servers.r.oauth]\nscopes = \"x\"\n"),
        "servers.r.oauth.scopes",
        "unknown field",
    );
}

#[test]
fn bad_oauth_grants() {
    let oauth = |body: &str| {
        native(&format!(
            "[servers.r]\nurl = \"http://a\"\n[servers.r.oauth]\n{body}"
        ))
    };
    assert_invalid(
        oauth("grant = \"password\"\n"),
        "servers.r.oauth.grant",
        "unknown grant `password`",
    );
    assert_invalid(
        oauth("grant = \"client_credentials\"\nclient_id = \"c\"\n"),
        "servers.r.oauth.grant",
        "needs `client_secret` or `private_key`",
    );
    assert_invalid(
        oauth("grant = \"client_credentials\"\nclient_secret = \"s\"\n"),
        "servers.r.oauth.client_id",
        "pre-registered `client_id`",
    );
    assert_invalid(
        oauth("client_id = \"c\"\nclient_secret = \"s\"\nprivate_key = \"k\"\n"),
        "servers.r.oauth.private_key",
        "not both",
    );
    assert_invalid(
        oauth("client_id = \"c\"\nprivate_key = \"k\"\nsigning_algorithm = \"HS256\"\n"),
        "servers.r.oauth.signing_algorithm",
        "unknown algorithm `HS256`",
    );
    assert_invalid(
        oauth("grant = \"jwt_bearer\"\n"),
        "servers.r.oauth.assertion",
        "needs `assertion`",
    );
    assert_invalid(
        oauth("grant = \"jwt_bearer\"\nassertion = \"a\"\nassertion_file = \"/f\"\n"),
        "servers.r.oauth.assertion",
        "not both",
    );
    assert_invalid(
        oauth("client_id = \"c\"\nassertion = \"a\"\n"),
        "servers.r.oauth.assertion",
        "only used with grant = \"jwt_bearer\"",
    );
    assert_invalid(
        oauth("grant = \"enterprise\"\nclient_id = \"c\"\nid_token = \"t\"\n"),
        "servers.r.oauth.idp_token_endpoint",
        "needs the identity provider's token endpoint",
    );
    assert_invalid(
        oauth(
            "grant = \"enterprise\"\nclient_id = \"c\"\nidp_token_endpoint = \"ftp://x\"\nid_token = \"t\"\n",
        ),
        "servers.r.oauth.idp_token_endpoint",
        "http(s)://",
    );
    assert_invalid(
        oauth(
            "grant = \"enterprise\"\nidp_token_endpoint = \"https://idp/token\"\nid_token = \"t\"\n",
        ),
        "servers.r.oauth.client_id",
        "pre-registered `client_id`",
    );
    // No secret value appears in any of these errors.
    let error = oauth("grant = \"client_credentials\"\nclient_secret = \"do-not-show-1\"\n")
        .unwrap_err()
        .to_string();
    assert!(!error.contains("do-not-show-1"), "{error}");
}

#[test]
fn allow_commands_must_name_programs() {
    assert_invalid(
        native("[gateway]\nallow_commands = [\"/usr/bin/x\", \" \"]\n"),
        "gateway.allow_commands[1]",
        "must name a program",
    );
    let config = native("[gateway]\nallow_commands = [\"/usr/bin/x\"]\n").unwrap();
    assert_eq!(config.gateway.allow_commands, ["/usr/bin/x"]);
}

// ---- required servers (`/readyz`) ----

#[test]
fn required_is_read_and_refused_with_lazy_or_disabled() {
    let config = native("[servers.a]\ncommand = \"x\"\nrequired = true\n").unwrap();
    assert!(config.servers["a"].required);
    let config = native("[servers.a]\ncommand = \"x\"\n").unwrap();
    assert!(!config.servers["a"].required);
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\nrequired = true\nlazy = true\n"),
        "servers.a.required",
        "a `lazy` server cannot be `required`",
    );
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\nrequired = true\nenabled = false\n"),
        "servers.a.required",
        "a disabled server (`enabled = false`) cannot be `required`",
    );
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\nrequired = \"yes\"\n"),
        "servers.a.required",
        "invalid type",
    );
}
