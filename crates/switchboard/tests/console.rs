//! The web console (`/ui/`) in a real headless Chromium (Debian package `chromium`),
//! driven over the DevTools protocol (`--remote-debugging-pipe`: NUL-terminated JSON on
//! file descriptors 3 and 4, given to the browser as two FIFOs): every page loads with no
//! console error, the fixture's servers and tools show, a register/reload/remove round
//! trip, a registry version approval and an approval of a waiting call are performed by
//! clicking in the page and take effect in the gateway, a hostile tool description shows
//! as text (no element, no script run), and without an admin credential the console is
//! refused. The live page shows a client's call and a failure as they happen (event
//! stream), the tools page shows a tool's schema and approves a quarantined tool, the
//! audit page shows the chain verified, a server is stopped and started from the servers
//! page, and the chat page answers with the scripted model and its tool-call trace. Screenshots go to `target/debug/console-screenshots/`.
//!
//! Without the browser the test is skipped, except in CI (`CI=true`, which `.ci/run` sets
//! after installing the package), where that is a failure.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use switchboard_testkit::llm::{ScriptedLlm, calls, text};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, kill_group, spawn_gateway_http_at};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(20);
const APPROVAL_KEY: &str = "dev.switchboard/approval";
const SECRET_VALUE: &str = "sk-live-console-never-shows-this";
/// A description that would run script or draw an element if it were parsed as markup.
const HOSTILE: &str = "Echoes.<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script><b id=\"hostile\">bold</b>";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[gateway]
state_dir = {state:?}
admin_token = "{ADMIN}"

[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "{ALICE}"

[audit]
signing_key = "{seed}"

[secrets]
key = "{vault_key}"

[approvals]
wait_ms = 200
expiry_ms = 60000

[[approvals.rules]]
tools = "fx__echo"
approver = "admin"

[servers.fx]
command = {fixture:?}
args = ["stdio"]
pin = "trust_first"
"#,
        state = dir.join("state").display().to_string(),
        seed = "22".repeat(32),
        vault_key = "b2".repeat(32),
        fixture = fixture(),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn base(gateway: &Proc) -> String {
    gateway.url.trim_end_matches("/mcp").to_owned()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn admin_get(gateway: &Proc, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", base(gateway)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// --- the browser --------------------------------------------------------------------

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Headless Chromium and one DevTools connection to it, over two FIFOs.
struct Browser {
    child: Child,
    commands: std::fs::File,
    incoming: mpsc::Receiver<Value>,
    /// Events (and answers to nobody) received while waiting for an answer.
    events: Vec<Value>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let to_browser = profile.path().join("to-browser");
        let from_browser = profile.path().join("from-browser");
        let made = Command::new("mkfifo")
            .arg(&to_browser)
            .arg(&from_browser)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        // The shell opens the FIFOs as descriptors 3 and 4, then becomes the browser.
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<\"$CDP_IN\" 4>\"$CDP_OUT\"")
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1400,1000",
                "about:blank",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .env("CDP_IN", &to_browser)
            .env("CDP_OUT", &from_browser)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        // Same order as the shell's redirections, so neither open waits for the other.
        let commands = std::fs::OpenOptions::new()
            .write(true)
            .open(&to_browser)
            .unwrap();
        let answers = std::fs::File::open(&from_browser).unwrap();
        let (sender, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&message)
                    && sender.send(value).is_err()
                {
                    break;
                }
                message.clear();
            }
        });
        Browser {
            child,
            commands,
            incoming,
            events: Vec::new(),
            next_id: 0,
            _profile: profile,
        }
    }

    /// Sends one command and waits for its answer; events meanwhile are kept.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method}"));
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    fn drain(&mut self) {
        while let Ok(message) = self.incoming.try_recv() {
            self.events.push(message);
        }
    }

    /// A new tab, attached, with the domains the test reads enabled and, when given, an
    /// `Authorization` header on every request it makes.
    fn tab(&mut self, authorization: Option<&str>) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in [
            "Runtime.enable",
            "Log.enable",
            "Page.enable",
            "Network.enable",
        ] {
            self.call(Some(&session), domain, json!({}));
        }
        if let Some(authorization) = authorization {
            self.call(
                Some(&session),
                "Network.setExtraHTTPHeaders",
                json!({ "headers": { "Authorization": authorization } }),
            );
        }
        session
    }

    /// Navigates; the error Chromium reports, if any (`net::ERR_…`).
    fn navigate(&mut self, session: &str, url: &str) -> Option<String> {
        let answer = self.call(Some(session), "Page.navigate", json!({ "url": url }));
        answer["errorText"].as_str().map(str::to_owned)
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let answer = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            answer.get("exceptionDetails").is_none(),
            "{expression}: {answer}"
        );
        answer["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page.
    fn wait_for(&mut self, session: &str, expression: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(session, &format!("!!({expression})"));
            if value == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let page = self.eval(
                    session,
                    "document.body ? document.body.innerText : document.documentElement.outerHTML",
                );
                panic!("waited for {expression}; the page shows: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an event of `method` on `session`.
    fn wait_event(&mut self, session: &str, method: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(index) = self
                .events
                .iter()
                .position(|e| e["method"] == method && e["sessionId"] == session)
            {
                return self.events.remove(index);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {method}"));
            self.events.push(message);
        }
    }

    /// The page's console errors, uncaught exceptions and error log entries so far.
    fn errors(&mut self, session: &str) -> Vec<Value> {
        self.drain();
        self.events
            .iter()
            .filter(|e| e["sessionId"] == session)
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => e["params"]["type"] == "error",
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .cloned()
            .collect()
    }

    fn screenshot(&mut self, session: &str, name: &str) {
        let shot = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let dir = Path::new(GATEWAY)
            .parent()
            .unwrap()
            .join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Clicks the element `selector` finds, as a user would (its handlers run).
    fn click(&mut self, session: &str, selector: &str) {
        self.wait_for(session, &format!("document.querySelector({selector:?})"));
        self.eval(
            session,
            &format!("document.querySelector({selector:?}).click()"),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch_or_skip() -> Option<Browser> {
    let Some(binary) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing in CI (.ci/run installs the Debian package `chromium`)"
        );
        eprintln!("skipping the browser tier: `chromium` is not installed (Debian package)");
        return None;
    };
    Some(Browser::launch(&binary))
}

/// The `nth` button in the row `row` of the table `table`.
fn button_in(table: &str, row: &str, nth: usize) -> String {
    format!("#{table} tr[data-row=\"{row}\"] button:nth-of-type({nth})")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(mut browser) = launch_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path()), &[])
        .await
        .unwrap();
    let console = format!("{}/ui/", base(&gateway));
    let stored = reqwest::Client::new()
        .put(format!("{}/admin/secrets/github_token", base(&gateway)))
        .bearer_auth(ADMIN)
        .json(&json!({ "value": SECRET_VALUE }))
        .send()
        .await
        .unwrap();
    assert!(stored.status().is_success());
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);

    // Without a credential, or with a wrong one, the browser is refused (a Basic
    // challenge nobody answers), not shown the console.
    for authorization in [None, Some(basic("operator", "wrong-token"))] {
        let stranger = browser.tab(authorization.as_deref());
        let refused = browser.navigate(&stranger, &console);
        assert_eq!(
            refused.as_deref(),
            Some("net::ERR_INVALID_AUTH_CREDENTIALS")
        );
        browser.wait_for(&stranger, "document.readyState === 'complete'");
        assert_eq!(
            browser.eval(&stranger, "document.getElementById('main') === null"),
            json!(true)
        );
    }

    // With the admin token as the Basic password: every page loads without an error.
    let tab = browser.tab(Some(&basic("operator", ADMIN)));
    assert_eq!(browser.navigate(&tab, &console), None);
    browser.wait_for(
        &tab,
        "document.querySelector('#servers tr[data-row=\"fx\"]') && document.querySelector('#servers tr[data-row=\"fx\"]').innerText.includes('ready')",
    );
    browser.screenshot(&tab, "servers");
    for page in [
        "tools",
        "live",
        "chat",
        "registry",
        "approvals",
        "audit",
        "secrets",
        "config",
        "metrics",
        "servers",
    ] {
        browser.eval(&tab, &format!("location.hash = '#{page}'"));
        browser.wait_for(&tab, &format!("document.body.dataset.page === '{page}'"));
        browser.screenshot(&tab, page);
    }
    browser.eval(&tab, "location.hash = '#tools'");
    browser.wait_for(
        &tab,
        "document.querySelector('#tools') && document.querySelector('#tools').innerText.includes('fx__echo')",
    );
    browser.eval(&tab, "location.hash = '#metrics'");
    browser.wait_for(
        &tab,
        "document.querySelector('#metrics') && document.querySelector('#metrics').innerText.includes('switchboard_')",
    );
    browser.eval(&tab, "location.hash = '#secrets'");
    browser.wait_for(
        &tab,
        "document.querySelector('#secrets') && document.querySelector('#secrets').innerText.includes('github_token')",
    );
    let everything = browser.eval(&tab, "document.documentElement.outerHTML");
    assert!(!everything.as_str().unwrap().contains(SECRET_VALUE));
    browser.eval(&tab, "location.hash = '#config'");
    browser.wait_for(
        &tab,
        "document.querySelector('#config') && document.querySelector('#config').innerText.includes('\"valid\": true')",
    );

    // Without [agent], the chat page says which section to add.
    browser.eval(&tab, "location.hash = '#chat'");
    browser.wait_for(
        &tab,
        "document.querySelector('#chat-error') && document.querySelector('#chat-error').innerText.includes('[agent]')",
    );

    // The live page: a client's call and a failure show as they happen.
    browser.eval(&tab, "location.hash = '#live'");
    browser.wait_for(
        &tab,
        "document.getElementById('stream-state') && document.getElementById('stream-state').innerText.includes('connected')",
    );
    let added = alice
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 2, "b": 3 } }),
        )
        .await;
    assert!(added.outcome.is_ok(), "{:?}", added.outcome);
    browser.wait_for(
        &tab,
        "document.querySelector('#live') && [...document.querySelectorAll('#live tbody tr')].some(r => r.innerText.includes('add') && r.innerText.includes('alice') && r.innerText.includes('ok'))",
    );
    let missing = alice
        .request(
            "tools/call",
            json!({ "name": "fx__missing", "arguments": {} }),
        )
        .await;
    assert!(missing.outcome.is_err());
    browser.wait_for(
        &tab,
        "document.querySelector('#errors') && document.querySelector('#errors').innerText.includes('fx__missing')",
    );
    browser.screenshot(&tab, "live");
    // Leaving the page closes the stream: nobody subscribes any more.
    browser.eval(&tab, "location.hash = '#audit'");
    let deadline = Instant::now() + PATIENCE;
    while admin_get(&gateway, "/admin/events/errors").await["subscribers"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the console kept its event stream open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The audit page shows the chain verified.
    browser.wait_for(
        &tab,
        "document.getElementById('audit-verify') && document.getElementById('audit-verify').innerText.includes('verified: ok')",
    );
    browser.screenshot(&tab, "audit-verified");

    // The tools page shows a tool's schema.
    browser.eval(&tab, "location.hash = '#tools'");
    browser.click(
        &tab,
        "#tools tr[data-row=\"fx__add\"] button[data-action=schema]",
    );
    browser.wait_for(
        &tab,
        "document.getElementById('schema-input') && document.getElementById('schema-input').innerText.includes('Second addend')",
    );

    // A rug pull writes a hostile description; pinning quarantines it, the registry page
    // approves the new version, and the tools page shows the description as text.
    let rewritten = alice
        .request(
            "tools/call",
            json!({ "name": "fx__rewrite_tool", "arguments": { "name": "echo", "description": HOSTILE } }),
        )
        .await;
    assert!(rewritten.outcome.is_ok(), "{:?}", rewritten.outcome);
    browser.eval(&tab, "location.hash = '#registry'");
    browser.wait_for(
        &tab,
        "document.querySelector('#registry tr[data-row=\"fx\"]') && document.querySelector('#registry tr[data-row=\"fx\"]').innerText.includes('Approve v2')",
    );
    browser.screenshot(&tab, "registry-drift");
    browser.click(&tab, &button_in("registry", "fx", 2));
    browser.wait_for(
        &tab,
        "document.getElementById('status').innerText.includes('approve fx v2: done')",
    );
    let registry = admin_get(&gateway, "/admin/registry").await;
    assert_eq!(registry["servers"][0]["approvedVersion"], 2, "{registry}");
    browser.eval(&tab, "location.hash = '#tools'");
    browser.wait_for(
        &tab,
        "document.querySelector('#tools') && document.querySelector('#tools').innerText.includes('onerror=')",
    );
    browser.screenshot(&tab, "tools-hostile");
    assert_eq!(
        browser.eval(
            &tab,
            "[document.querySelectorAll('#tools img, #tools script, #hostile').length, typeof window.__pwned]"
        ),
        json!([0, "undefined"]),
        "the hostile description became markup"
    );
    let cell = browser.eval(
        &tab,
        "[...document.querySelectorAll('#tools td')].map(td => td.textContent).find(t => t.includes('onerror'))",
    );
    assert_eq!(cell, json!(HOSTILE));

    // Another rug pull: the tools page lists the quarantined tool and approves it.
    let rewritten = alice
        .request(
            "tools/call",
            json!({ "name": "fx__rewrite_tool", "arguments": { "name": "add", "description": "Adds, now differently" } }),
        )
        .await;
    assert!(rewritten.outcome.is_ok(), "{:?}", rewritten.outcome);
    browser.eval(&tab, "location.hash = '#tools'");
    browser.wait_for(
        &tab,
        "document.querySelector('#quarantined tr[data-row=\"fx/add\"]')",
    );
    browser.click(
        &tab,
        "#quarantined tr[data-row=\"fx/add\"] button[data-action=schema]",
    );
    browser.wait_for(
        &tab,
        "document.getElementById('schema-input') && document.getElementById('schema-input').innerText.includes('First addend')",
    );
    browser.screenshot(&tab, "tools-quarantined");
    browser.click(
        &tab,
        "#quarantined tr[data-row=\"fx/add\"] button[data-action=approve]",
    );
    browser.wait_for(
        &tab,
        "document.getElementById('status').innerText.includes('approve fx v3: done')",
    );
    let registry = admin_get(&gateway, "/admin/registry").await;
    assert_eq!(registry["servers"][0]["approvedVersion"], 3, "{registry}");
    assert_eq!(
        registry["servers"][0]["quarantined"],
        json!([]),
        "{registry}"
    );
    browser.wait_for(
        &tab,
        "!document.querySelector('#quarantined tr[data-row=\"fx/add\"]') && document.querySelector('#tools tr[data-row=\"fx__add\"]')",
    );

    // A call waits for an administrator; approving it in the page lets its retry run.
    let waited = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "ship it" } }),
        )
        .await;
    let id = waited.error()["data"]["approval"]
        .as_str()
        .unwrap_or_else(|| panic!("{:?}", waited.outcome))
        .to_owned();
    browser.eval(&tab, "location.hash = '#approvals'");
    browser.wait_for(
        &tab,
        &format!("document.querySelector('#pending tr[data-row=\"{id}\"]')"),
    );
    browser.screenshot(&tab, "approvals-pending");
    browser.click(
        &tab,
        &format!("#pending tr[data-row=\"{id}\"] button[data-action=approve]"),
    );
    browser.wait_for(
        &tab,
        &format!("document.querySelector('#decided tr[data-row=\"{id}\"]')"),
    );
    let approvals = admin_get(&gateway, "/admin/approvals").await;
    let entry = approvals["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (&entry["state"], &entry["by"]),
        (&json!("approved"), &json!("admin_token"))
    );
    let retried = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "ship it" }, "_meta": { APPROVAL_KEY: id } }),
        )
        .await;
    assert_eq!(retried.result()["content"][0]["text"], "ship it");

    // Denied in the page, the retry is refused.
    let waited = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "no" } }),
        )
        .await;
    let denied = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.wait_for(
        &tab,
        &format!("document.querySelector('#pending tr[data-row=\"{denied}\"]')"),
    );
    browser.click(
        &tab,
        &format!("#pending tr[data-row=\"{denied}\"] button[data-action=deny]"),
    );
    browser.wait_for(
        &tab,
        &format!("document.querySelector('#decided tr[data-row=\"{denied}\"]')"),
    );
    let retried = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "no" }, "_meta": { APPROVAL_KEY: denied } }),
        )
        .await;
    assert_eq!(
        retried.error()["data"]["status"],
        "denied",
        "{:?}",
        retried.outcome
    );

    // Register, reload and remove a server from the page.
    browser.eval(&tab, "location.hash = '#servers'");
    browser.wait_for(&tab, "document.querySelector('#register')");
    let definition = json!({ "command": fixture(), "args": ["stdio"] }).to_string();
    browser.eval(
        &tab,
        &format!(
            "(() => {{ const f = document.getElementById('register'); f.elements.name.value = 'extra'; \
             f.elements.server.value = {definition:?}; f.requestSubmit(); }})()"
        ),
    );
    browser.wait_for(
        &tab,
        "document.querySelector('#servers tr[data-row=\"extra\"]')",
    );
    let servers = admin_get(&gateway, "/admin/servers").await;
    assert!(
        servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra"),
        "{servers}"
    );
    browser.screenshot(&tab, "servers-registered");
    browser.click(&tab, &button_in("servers", "extra", 1));
    browser.wait_for(
        &tab,
        "document.getElementById('status').innerText.includes('reload extra: done')",
    );
    // Stop and start it from the page.
    browser.click(
        &tab,
        "#servers tr[data-row=\"extra\"] button[data-action=stop]",
    );
    browser.wait_for(
        &tab,
        "document.getElementById('status').innerText.includes('stop extra: done') && document.querySelector('#servers tr[data-row=\"extra\"]').innerText.includes('dormant')",
    );
    let servers = admin_get(&gateway, "/admin/servers").await;
    let extra = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "extra")
        .unwrap()
        .clone();
    assert_eq!(
        (&extra["state"], &extra["pids"]),
        (&json!("dormant"), &json!([])),
        "{extra}"
    );
    browser.screenshot(&tab, "servers-stopped");
    browser.click(
        &tab,
        "#servers tr[data-row=\"extra\"] button[data-action=start]",
    );
    browser.wait_for(
        &tab,
        "document.getElementById('status').innerText.includes('start extra: done') && document.querySelector('#servers tr[data-row=\"extra\"]').innerText.includes('ready')",
    );
    let servers = admin_get(&gateway, "/admin/servers").await;
    assert!(
        servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra" && s["state"] == "ready"),
        "{servers}"
    );

    // Remove asks for confirmation: the click runs after this evaluation returns, and
    // the dialog is accepted.
    let remove = button_in("servers", "extra", 2);
    browser.wait_for(&tab, &format!("document.querySelector({remove:?})"));
    browser.eval(
        &tab,
        &format!("setTimeout(() => document.querySelector({remove:?}).click(), 0)"),
    );
    browser.wait_event(&tab, "Page.javascriptDialogOpening");
    browser.call(
        Some(&tab),
        "Page.handleJavaScriptDialog",
        json!({ "accept": true }),
    );
    browser.wait_for(
        &tab,
        "!document.querySelector('#servers tr[data-row=\"extra\"]')",
    );
    let servers = admin_get(&gateway, "/admin/servers").await;
    assert!(
        !servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra"),
        "{servers}"
    );

    let errors = browser.errors(&tab);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_answers_with_the_scripted_model() {
    let Some(mut browser) = launch_or_skip() else {
        return;
    };
    let llm = ScriptedLlm::start(vec![
        calls(&[("fx__add", json!({ "a": 2, "b": 3 }))]),
        text("The sum is 5."),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[gateway]\nstate_dir = {:?}\nadmin_token = \"{ADMIN}\"\n\n{}\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        dir.path().join("state").display().to_string(),
        // Every tool offered (the fixture has more than the default `max_tools`).
        llm.agent_section("max_tools = 512"),
        fixture(),
    );
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    let tab = browser.tab(Some(&basic("operator", ADMIN)));
    assert_eq!(
        browser.navigate(&tab, &format!("{}/ui/#chat", base(&gateway))),
        None
    );
    browser.wait_for(&tab, "document.getElementById('chat-form')");
    browser.eval(
        &tab,
        "(() => { const f = document.getElementById('chat-form'); \
         f.elements.query.value = 'what is 2 + 3?'; f.requestSubmit(); })()",
    );
    browser.wait_for(
        &tab,
        "document.querySelector('.chat-answer') && document.querySelector('.chat-answer').innerText.includes('The sum is 5.')",
    );
    let trace = browser.eval(&tab, "document.querySelector('#chat-trace').innerText");
    let trace = trace.as_str().unwrap();
    assert!(
        trace.contains("fx") && trace.contains("add") && trace.contains("ok"),
        "{trace}"
    );
    browser.screenshot(&tab, "chat");
    // The model saw the question, and the tool's result went back to it.
    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].to_string().contains("what is 2 + 3?"));
    assert!(requests[1].to_string().contains('5'));
    let errors = browser.errors(&tab);
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_needs_the_admin_credential_and_sends_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path()), &[])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str, authorization: Option<String>| {
        let mut request = client.get(format!("{}{path}", base(&gateway)));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send()
    };
    for path in ["/ui/", "/ui/app.js", "/ui/admin/servers"] {
        let refused = get(path, None).await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic "), "{challenge}");
        let wrong = get(path, Some(basic("x", "wrong-token"))).await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        // A client key without the admin role is known but not allowed.
        let alice = get(path, Some(basic("alice", ALICE))).await.unwrap();
        assert_eq!(alice.status(), 403, "{path}");
    }
    let page = get("/ui/", Some(basic("operator", ADMIN))).await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"app.js\""), "{html}");
    // The bearer token works too, and the API under /ui answers like /admin.
    let servers: Value = client
        .get(format!("{}/ui/admin/servers", base(&gateway)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(servers["servers"][0]["name"], "fx", "{servers}");
    // Basic is accepted under /ui only: the admin API itself keeps to bearer tokens.
    let admin = get("/admin/servers", Some(basic("operator", ADMIN)))
        .await
        .unwrap();
    assert_eq!(admin.status(), 401);
}

/// The page-load figure for the closing note, not a pass/fail test (timings are not
/// asserted): 500 servers × 20 tools = 10,000 tools (ten HTTP fixtures listing only their
/// 20 filler tools, each registered 50 times); prints how long the Servers page (all 500 rows)
/// and the Tools page (its first 500 rows, of all) take to show, three loads each.
/// `cargo test -p switchboard --test console -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn page_load_with_ten_thousand_tools() {
    let Some(mut browser) = launch_or_skip() else {
        return;
    };
    // Ten HTTP fixtures listing 20 filler tools each, 50 servers on each.
    let mut upstreams = Vec::new();
    for _ in 0..10 {
        upstreams.push(
            switchboard_testkit::spawn_fixture_http(
                &binary_beside(GATEWAY, "switchboard-fixture"),
                "http",
                &["--only-extra-tools", "--extra-tools", "20"],
            )
            .await
            .unwrap(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[gateway]\nstate_dir = {:?}\nadmin_token = \"{ADMIN}\"\n",
        dir.path().join("state").display().to_string()
    );
    for index in 0..500 {
        let url = &upstreams[index % upstreams.len()].url;
        text.push_str(&format!("\n[servers.s{index}]\nurl = {url:?}\n"));
    }
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    // On a loaded 2-core machine some of 500 simultaneous handshakes pass their 30 s
    // limit at start-up: start those again, eight at a time, through the admin API.
    let servers = admin_get(&gateway, "/admin/servers").await;
    let failed: Vec<String> = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "ready")
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    println!("{} of 500 servers to start again", failed.len());
    let client = reqwest::Client::new();
    for batch in failed.chunks(8) {
        let starts = batch.iter().map(|name| {
            client
                .post(format!("{}/admin/servers/{name}/start", base(&gateway)))
                .bearer_auth(ADMIN)
                .send()
        });
        for started in futures::future::join_all(starts).await {
            assert!(started.unwrap().status().is_success());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = loop {
        let tools = admin_get(&gateway, "/admin/tools").await;
        let count = tools["tools"].as_array().unwrap().len();
        if count >= 10_000 || Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(count, 10_000, "{count} tools");
    let tab = browser.tab(Some(&basic("operator", ADMIN)));
    for (page, rows, expected) in [
        ("servers", "#servers tbody tr", 500),
        ("tools", "#tools tbody tr", 500),
    ] {
        for round in 1..=3 {
            let started = Instant::now();
            assert_eq!(
                browser.navigate(&tab, &format!("{}/ui/#{page}", base(&gateway))),
                None
            );
            browser.wait_for(
                &tab,
                &format!("document.querySelectorAll({rows:?}).length >= {expected}"),
            );
            println!(
                "{page} page, load {round}: {expected} rows shown in {} ms",
                started.elapsed().as_millis()
            );
            browser.navigate(&tab, "about:blank");
        }
        if page == "tools" {
            browser.navigate(&tab, &format!("{}/ui/#tools", base(&gateway)));
            browser.wait_for(
                &tab,
                &format!(
                    "document.getElementById('tools-count') && document.getElementById('tools-count').innerText.includes('of {count} tools')"
                ),
            );
            let fetched = browser.eval(
                &tab,
                "(async () => { const t = performance.now(); const r = await fetch('admin/tools'); \
                 await r.json(); return Math.round(performance.now() - t); })()",
            );
            println!("  of which GET /admin/tools + JSON parse: {fetched} ms");
            browser.navigate(&tab, "about:blank");
        }
    }
}
