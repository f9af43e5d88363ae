//! The 2024-11-05 HTTP+SSE face with real SDK clients: the Python SDK's `sse_client`
//! (`interop/sse_session.py`) and the TypeScript SDK's `SSEClientTransport`
//! (`interop/sse_session.mjs`, the SDK `server-everything` ships with) connect to the
//! gateway's `/sse`, list and call tools of a stdio and an HTTP upstream (the fixture, whose
//! `stats` tool counts the cancellations it received), get progress, cancel a call (the
//! upstream sees it) and end the session by closing the stream.

use super::*;

/// The fixture as a stdio (`st`) and a Streamable HTTP (`ht`) upstream.
struct Upstreams {
    _http: Proc,
    config: PathBuf,
}

fn fixture() -> PathBuf {
    switchboard_testkit::binary_beside(SWITCHBOARD, "switchboard-fixture")
}

impl Upstreams {
    fn start(scratch: &Scratch) -> Upstreams {
        let port = free_port();
        let (log, log_path) = scratch.log("fixture-http.log");
        let mut command = Command::new(fixture());
        command
            .args(["http", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let mut http = Proc::spawn("fixture (http)", &mut command, Some(log_path));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = http.child.try_wait().expect("try_wait works") {
                panic!("the fixture exited with {status} before listening");
            }
            assert!(Instant::now() < deadline, "the fixture did not listen");
            thread::sleep(Duration::from_millis(100));
        }
        let config = scratch.write(
            "switchboard.toml",
            &format!(
                "[gateway]\nconnect_timeout_ms = 60000\n\n\
                 [servers.st]\ncommand = {}\nargs = [\"stdio\"]\n\n\
                 [servers.ht]\nurl = \"http://127.0.0.1:{port}/mcp\"\n",
                toml_string(&fixture()),
            ),
        );
        Upstreams {
            _http: http,
            config,
        }
    }
}

/// What both scripts report, checked the same way.
fn check(name: &str, document: &Value) {
    let tools: Vec<&str> = document["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no tools in {document}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for server in ["st", "ht"] {
        assert!(
            tools.contains(&format!("{server}__echo").as_str()),
            "{name}: {tools:?}"
        );
        let report = &document["servers"][server];
        assert_eq!(
            report["echo"]["content"][0]["text"], "over sse",
            "{name} {server}: {report}"
        );
        assert_eq!(
            report["progressResult"]["content"][0]["text"], "completed 3 steps",
            "{name} {server}: {report}"
        );
        let progress = report["progress"].as_array().expect("progress list");
        assert!(
            !progress.is_empty(),
            "{name} {server}: no progress notification reached the client"
        );
        let before = report["cancelledBefore"].as_u64().expect("a count");
        let after = report["cancelledAfter"].as_u64().expect("a count");
        assert!(
            after > before,
            "{name} {server}: the upstream never saw the cancellation ({before} → {after})"
        );
    }
    assert_eq!(
        document["afterClose"], 404,
        "{name}: the session outlived its stream"
    );
}

fn sse_session(run: impl FnOnce(&Tools, &str) -> Command, name: &str) {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let upstreams = Upstreams::start(&scratch);
    let gateway = Gateway::serve(&scratch, &upstreams.config);
    let sse_url = format!("{}/sse", gateway.url.trim_end_matches("/mcp"));
    let mut command = run(&tools, &sse_url);
    let finished = run_client(name, &mut command);
    assert!(
        finished.status.success(),
        "{name} failed ({})\nstdout: {}\nstderr: {}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    let document: Value = serde_json::from_str(finished.stdout.trim())
        .unwrap_or_else(|error| panic!("{name}: not JSON ({error}): {}", finished.stdout));
    check(name, &document);
    gateway.stop();
}

#[test]
fn interop_sse_face_python_sse_client() {
    sse_session(
        |tools, url| {
            let mut command = Command::new(&tools.python);
            command
                .arg(interop_dir().join("sse_session.py"))
                .args([url, "st", "ht"])
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        },
        "python sse_client",
    );
}

#[test]
fn interop_sse_face_typescript_sse_client_transport() {
    sse_session(
        |tools, url| {
            let mut command = Command::new(&tools.node);
            command
                .arg(interop_dir().join("sse_session.mjs"))
                .arg("--from")
                .arg(&tools.everything_js)
                .args([url, "st", "ht"]);
            command
        },
        "typescript SSEClientTransport",
    );
}
