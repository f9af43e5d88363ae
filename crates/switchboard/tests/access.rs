//! `[access]` end to end, through the real gateway binary and the fixture server: API keys
//! and JWTs at the HTTP face (401 with the RFC 9728 challenge for every bad credential),
//! two tenants that each see and call only their own server (a hidden tool answers like a
//! nonexistent one), a CEL argument rule, a rate limit exact at its boundary, and a legacy
//! session that stays bound to the identity that opened it. Keys are made with the
//! `openssl` CLI in the test; tokens are signed here.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use switchboard_testkit::{LegacyHttp, ModernHttp, Proc, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";
const OPS_KEY: &str = "ops-key-0123456789";
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "https://gw.test/mcp";

/// An RSA key pair as PEM (private PKCS#8, public SPKI), made with openssl.
struct KeyPair {
    private: String,
    public: String,
}

fn rsa_pair(dir: &Path, name: &str) -> KeyPair {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    KeyPair {
        private: std::fs::read_to_string(private).unwrap(),
        public: std::fs::read_to_string(public).unwrap(),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str, tenant: &str) -> Value {
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tenant": tenant, "exp": now() + 600 })
}

fn sign(pair: &KeyPair, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pair.private.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn config(public_pem: &str, jwks_url: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let fixture = format!("{:?}", fixture.display().to_string());
    format!(
        r#"
[gateway]
meta_tools = ["call", "list_servers"]
meta_tools_by_default = true

[access]
resource = "{AUDIENCE}"

[access.stdio]
tenant = "globex"

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[[access.keys]]
id = "ops"
key = "{OPS_KEY}"
roles = ["admin"]

[access.jwt]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_url = "{jwks_url}"
algorithms = ["RS256"]
leeway_s = 5

[[access.jwt.keys]]
kid = "k1"
pem = """{public_pem}"""

[access.tenants.acme]
servers = {{ allow = ["fa"] }}

[access.tenants.globex]
servers = {{ allow = ["fb"] }}
tools = {{ deny = ["fb__sleep"] }}

[[access.rules]]
when = "tool == 'fa__echo' && has(args.text) && args.text.startsWith('secret')"
message = "no secrets through echo"

[[access.limits]]
per = "principal"
tools = "fb__add"
requests = 2
period_ms = 3600000

[servers.fa]
command = {fixture}
args = ["stdio"]

[servers.fb]
command = {fixture}
args = ["stdio"]
"#
    )
}

/// A JWKS endpoint the test can take down: `None` answers 503.
async fn jwks_server(set: Arc<Mutex<Option<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let set = set.lock().unwrap().clone();
            async move {
                match set {
                    Some(set) => (axum::http::StatusCode::OK, set.to_string()),
                    None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn jwks_of(pair: &KeyPair, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(pair.private.as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    json!({ "keys": [jwk] })
}

struct Setup {
    gateway: Proc,
    k1: KeyPair,
    k2: KeyPair,
    jwks: Arc<Mutex<Option<Value>>>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let k1 = rsa_pair(dir.path(), "k1");
    let k2 = rsa_pair(dir.path(), "k2");
    let jwks = Arc::new(Mutex::new(Some(jwks_of(&k2, "k2"))));
    let url = jwks_server(jwks.clone()).await;
    let gateway = spawn_gateway_http(GATEWAY, &config(&k1.public, &url))
        .await
        .expect("gateway starts");
    Setup {
        gateway,
        k1,
        k2,
        jwks,
        _dir: dir,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The upstream tools listed (meta-tools left out).
fn tool_names(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .filter(|name| !name.starts_with("switchboard__"))
        .collect();
    names.sort();
    names
}

/// POSTs a modern `tools/list` with `headers`; returns the status and the challenge.
async fn attempt(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let client = ModernHttp::with_headers(url, headers);
    let params = switchboard_testkit::client::with_modern_meta(json!({}));
    let response = client
        .builder(Some(1), "tools/list", &params)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), challenge)
}

/// What is refused, the headers sent, and what the challenge must say.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_verified_before_anything_else() {
    let setup = setup().await;
    let url = &setup.gateway.url;
    let origin = url.trim_end_matches("/mcp");
    let challenge =
        "Bearer resource_metadata=\"https://gw.test/.well-known/oauth-protected-resource\"";

    // Accepted: both key headers, a JWT signed by a configured key, one from the JWKS.
    for headers in [
        vec![("authorization", bearer(ACME_KEY))],
        vec![("x-api-key", ACME_KEY.to_owned())],
        vec![(
            "authorization",
            bearer(&sign(&setup.k1, "k1", &claims("alice", "acme"))),
        )],
        vec![(
            "authorization",
            bearer(&sign(&setup.k2, "k2", &claims("bob", "globex"))),
        )],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(attempt(url, &headers).await, (200, None), "{headers:?}");
    }

    // Refused, each with the challenge.
    let mut expired = claims("alice", "acme");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("alice", "acme");
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("alice", "acme");
    wrong_aud["aud"] = json!("https://other.test/mcp");
    let mut wrong_iss = claims("alice", "acme");
    wrong_iss["iss"] = json!("https://evil.test");
    let valid = sign(&setup.k1, "k1", &claims("alice", "acme"));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("mallory", "globex").to_string().as_bytes()),
        parts[2]
    );
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(claims("alice", "acme").to_string().as_bytes())
    );
    let hmac_confusion = encode(
        &{
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".into());
            header
        },
        &claims("alice", "acme"),
        &EncodingKey::from_secret(setup.k1.public.as_bytes()),
    )
    .unwrap();
    let cases: Vec<Case<'_>> = vec![
        ("missing", vec![], ""),
        (
            "wrong key",
            vec![("x-api-key", "nope-0123456789abcdef".into())],
            "invalid credential",
        ),
        (
            "expired",
            vec![("authorization", bearer(&sign(&setup.k1, "k1", &expired)))],
            "expired",
        ),
        (
            "not yet valid",
            vec![("authorization", bearer(&sign(&setup.k1, "k1", &early)))],
            "not yet valid",
        ),
        (
            "wrong audience",
            vec![("authorization", bearer(&sign(&setup.k1, "k1", &wrong_aud)))],
            "audience",
        ),
        (
            "wrong issuer",
            vec![("authorization", bearer(&sign(&setup.k1, "k1", &wrong_iss)))],
            "issuer",
        ),
        (
            "tampered",
            vec![("authorization", bearer(&tampered))],
            "signature",
        ),
        (
            "alg none",
            vec![("authorization", bearer(&alg_none))],
            "error=\"invalid_token\"",
        ),
        (
            "hmac with the rsa key",
            vec![("authorization", bearer(&hmac_confusion))],
            "not accepted",
        ),
        (
            "unknown kid",
            vec![(
                "authorization",
                bearer(&sign(&setup.k1, "k9", &claims("a", "acme"))),
            )],
            "unknown signing key `k9`",
        ),
        (
            "unknown tenant",
            vec![(
                "authorization",
                bearer(&sign(&setup.k1, "k1", &claims("a", "initech"))),
            )],
            "unknown tenant `initech`",
        ),
        (
            "oversized",
            vec![("x-api-key", "x".repeat(9000))],
            "exceeds",
        ),
    ];
    for (what, headers, detail) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (status, got) = attempt(url, &headers).await;
        assert_eq!(status, 401, "{what}");
        let got = got.unwrap_or_else(|| panic!("{what}: no challenge"));
        assert!(got.starts_with(challenge), "{what}: {got}");
        assert!(got.contains(detail), "{what}: {got}");
    }

    // The metadata the challenge names.
    let metadata: Value = reqwest::get(format!("{origin}/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], AUDIENCE);
    assert_eq!(metadata["authorization_servers"], json!([ISSUER]));

    // JWKS endpoint down: the cached key still verifies; a new kid is refused clearly.
    *setup.jwks.lock().unwrap() = None;
    let cached = sign(&setup.k2, "k2", &claims("bob", "globex"));
    assert_eq!(
        attempt(url, &[("authorization", &bearer(&cached))]).await.0,
        200
    );
    let fresh = sign(&setup.k2, "k3", &claims("bob", "globex"));
    let (status, got) = attempt(url, &[("authorization", &bearer(&fresh))]).await;
    assert_eq!(status, 401);
    assert!(got.unwrap().contains("unknown signing key `k3`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_and_call_only_their_own_tools() {
    let setup = setup().await;
    let url = &setup.gateway.url;
    let acme = ModernHttp::with_headers(url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(url, &[("x-api-key", GLOBEX_KEY)]);

    let acme_tools = tool_names(acme.request("tools/list", json!({})).await.result());
    assert!(!acme_tools.is_empty());
    assert!(
        acme_tools.iter().all(|t| t.starts_with("fa__")),
        "{acme_tools:?}"
    );
    let globex_tools = tool_names(globex.request("tools/list", json!({})).await.result());
    assert!(
        globex_tools.iter().all(|t| t.starts_with("fb__")),
        "{globex_tools:?}"
    );
    assert!(globex_tools.contains(&"fb__echo".to_owned()));
    assert!(
        !globex_tools.contains(&"fb__sleep".to_owned()),
        "denied by glob"
    );

    let echo = |name: &str| json!({ "name": name, "arguments": { "text": "hi" } });
    let ok = acme.request("tools/call", echo("fa__echo")).await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);
    // Hidden and nonexistent: the same error, name aside.
    let hidden = acme.request("tools/call", echo("fb__echo")).await;
    let missing = acme.request("tools/call", echo("zz__echo")).await;
    let shape = |error: &Value, name: &str| json!({ "code": error["code"], "message": error["message"].as_str().unwrap().replace(name, "NAME") });
    assert_eq!(
        shape(hidden.error(), "fb__echo"),
        shape(missing.error(), "zz__echo")
    );
    let denied_by_glob = globex
        .request(
            "tools/call",
            json!({ "name": "fb__sleep", "arguments": { "ms": 1 } }),
        )
        .await;
    let missing_sleep = globex
        .request(
            "tools/call",
            json!({ "name": "zz__sleep", "arguments": { "ms": 1 } }),
        )
        .await;
    assert_eq!(
        shape(denied_by_glob.error(), "fb__sleep"),
        shape(missing_sleep.error(), "zz__sleep")
    );

    // The CEL rule denies exactly what it says.
    let secret = acme
        .request(
            "tools/call",
            json!({ "name": "fa__echo", "arguments": { "text": "secret plan" } }),
        )
        .await;
    assert_eq!(secret.error()["code"], -31007);
    assert_eq!(secret.error()["message"], "no secrets through echo");
    assert_eq!(secret.error()["data"]["step"], "rules");
    let almost = acme
        .request(
            "tools/call",
            json!({ "name": "fa__echo", "arguments": { "text": "a secret" } }),
        )
        .await;
    assert!(almost.outcome.is_ok(), "{:?}", almost.outcome);

    // The rate limit: 2 calls of fb__add per principal, the 3rd refused with retry-after.
    let add = json!({ "name": "fb__add", "arguments": { "a": 1, "b": 2 } });
    for _ in 0..2 {
        let call = globex.request("tools/call", add.clone()).await;
        assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    }
    let limited = globex.request("tools/call", add.clone()).await;
    assert_eq!(limited.error()["data"]["step"], "limits");
    assert!(limited.error()["data"]["retryAfterMs"].as_u64().unwrap() > 60_000);
    // Another principal of the same tenant has its own allowance.
    let bob = sign(&setup.k1, "k1", &claims("bob", "globex"));
    let other = ModernHttp::with_headers(url, &[("authorization", &bearer(&bob))]);
    assert!(other.request("tools/call", add).await.outcome.is_ok());
    let metrics = reqwest::get(url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_access_refusals_total{step=\"limits\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_stays_with_the_identity_that_opened_it() {
    let setup = setup().await;
    let url = &setup.gateway.url;
    let acme = LegacyHttp::connect_with(url, &[("x-api-key", ACME_KEY)])
        .await
        .unwrap();
    let tools = tool_names(acme.request("tools/list", json!({})).await.result());
    assert!(tools.iter().all(|t| t.starts_with("fa__")), "{tools:?}");

    // The same session id with another valid identity does not exist for it.
    let response = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", &acme.session)
        .header("mcp-protocol-version", switchboard_testkit::client::LEGACY)
        .header("x-api-key", GLOBEX_KEY)
        .body(json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/list" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // Without a credential: 401 before the session is looked at.
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("mcp-session-id", &acme.session)
        .body(json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/list" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tools_and_the_stdio_face_keep_hidden_servers_hidden() {
    let setup = setup().await;
    let acme = ModernHttp::with_headers(&setup.gateway.url, &[("x-api-key", ACME_KEY)]);
    let meta_call = |server: &str| {
        json!({ "name": "switchboard__call",
                "arguments": { "server": server, "tool": "echo", "arguments": { "text": "hi" } } })
    };
    let hidden = acme.request("tools/call", meta_call("fb")).await;
    let missing = acme.request("tools/call", meta_call("zz")).await;
    assert_eq!(hidden.result()["isError"], true);
    assert_eq!(
        hidden.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .replace("fb", "NAME"),
        missing.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .replace("zz", "NAME"),
    );
    let own = acme.request("tools/call", meta_call("fa")).await;
    assert_ne!(own.result()["isError"], true, "{:?}", own.outcome);
    let listed = acme
        .request(
            "tools/call",
            json!({ "name": "switchboard__list_servers", "arguments": {} }),
        )
        .await;
    let names: Vec<&str> = listed.result()["structuredContent"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fa"]);
    assert!(
        !listed.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"fb\"")
    );

    // The stdio client is the principal `[access.stdio]` names: tenant globex.
    let config = setup.gateway.config.clone().unwrap();
    let stdio = switchboard_testkit::Stdio::spawn(GATEWAY, &config, false)
        .await
        .unwrap();
    let tools = tool_names(stdio.request("tools/list", json!({})).await.result());
    assert!(!tools.is_empty());
    assert!(tools.iter().all(|t| t.starts_with("fb__")), "{tools:?}");
}

/// The next notification (a message with a method and no id) on a stream, within 10 s.
async fn next_notification(stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> String {
    let deadline = std::time::Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(deadline, stream.recv())
            .await
            .expect("a notification within 10 s")
            .expect("stream open");
        if message.get("id").is_none()
            && let Some(method) = message["method"].as_str()
            && method.contains("list_changed")
        {
            return method.to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_change_is_announced_only_to_callers_who_can_see_it() {
    let setup = setup().await;
    let url = &setup.gateway.url;
    let acme = ModernHttp::with_headers(url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(url, &[("x-api-key", GLOBEX_KEY)]);
    let filter = json!({ "toolsListChanged": true, "promptsListChanged": true });
    let mut acme_listen = acme.listen(filter.clone()).await.unwrap();
    let mut globex_listen = globex.listen(filter).await.unwrap();
    let legacy = LegacyHttp::connect_with(url, &[("x-api-key", GLOBEX_KEY)])
        .await
        .unwrap();
    let mut globex_stream = legacy.open_stream().await.unwrap();

    // acme's server changes its tools: acme is told, globex (which cannot see fa) is not.
    acme.request(
        "tools/call",
        json!({ "name": "fa__emit_list_changed", "arguments": { "kind": "tools" } }),
    )
    .await
    .result();
    assert_eq!(
        next_notification(&mut acme_listen).await,
        "notifications/tools/list_changed"
    );
    // globex's own server then changes its prompts. Notifications keep their order, so
    // globex's first one being about prompts proves it never heard of fa's tools.
    globex
        .request(
            "tools/call",
            json!({ "name": "fb__emit_list_changed", "arguments": { "kind": "prompts" } }),
        )
        .await
        .result();
    assert_eq!(
        next_notification(&mut globex_listen).await,
        "notifications/prompts/list_changed",
        "modern listener"
    );
    assert_eq!(
        next_notification(&mut globex_stream).await,
        "notifications/prompts/list_changed",
        "legacy session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_takes_access_identities_with_the_admin_role() {
    let setup = setup().await;
    let origin = setup.gateway.url.trim_end_matches("/mcp").to_owned();
    let client = reqwest::Client::new();
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = client.get(format!("{origin}/admin/servers"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(vec![]).await, 401, "no credential");
    assert_eq!(
        get(vec![("authorization", bearer("not-a-key"))]).await,
        401,
        "unknown key"
    );
    assert_eq!(
        get(vec![("x-api-key", ACME_KEY.to_owned())]).await,
        403,
        "a tenant's key without the admin role"
    );
    assert_eq!(get(vec![("x-api-key", OPS_KEY.to_owned())]).await, 200);
    assert_eq!(
        get(vec![("authorization", bearer(OPS_KEY))]).await,
        200,
        "the same key as a bearer"
    );
    let mut admin_claims = claims("carol", "acme");
    admin_claims["roles"] = json!(["admin"]);
    assert_eq!(
        get(vec![(
            "authorization",
            bearer(&sign(&setup.k1, "k1", &admin_claims))
        )])
        .await,
        200,
        "a JWT whose roles claim holds admin"
    );
    assert_eq!(
        get(vec![(
            "authorization",
            bearer(&sign(&setup.k1, "k1", &claims("dave", "acme")))
        )])
        .await,
        403,
        "a JWT without it"
    );
}

/// `tools/list` as the holder of `key` sees it (upstream tools only).
async fn listed_with(url: &str, key: &str) -> Vec<String> {
    let client = ModernHttp::with_headers(url, &[("x-api-key", key)]);
    tool_names(client.request("tools/list", json!({})).await.result())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_access_section_applies_without_a_restart() {
    let setup = setup().await;
    let url = setup.gateway.url.clone();
    let path = setup.gateway.config.clone().unwrap();
    let original = std::fs::read_to_string(&path).unwrap();
    assert!(
        listed_with(&url, ACME_KEY)
            .await
            .iter()
            .all(|t| t.starts_with("fa__"))
    );
    let acme = ModernHttp::with_headers(&url, &[("x-api-key", ACME_KEY)]);
    let mut acme_listen = acme
        .listen(json!({ "toolsListChanged": true }))
        .await
        .unwrap();
    const LATE_KEY: &str = "late-key-0123456789";
    assert_eq!(attempt(&url, &[("x-api-key", LATE_KEY)]).await.0, 401);

    // acme may now see fb too, and a new key exists.
    let widened = original
        .replace(
            "[access.tenants.acme]\nservers = { allow = [\"fa\"] }",
            "[access.tenants.acme]\nservers = { allow = [\"fa\", \"fb\"] }",
        )
        .replace(
            "[[access.keys]]\nid = \"ops\"",
            &format!(
                "[[access.keys]]\nid = \"late\"\nkey = \"{LATE_KEY}\"\ntenant = \"acme\"\n\n[[access.keys]]\nid = \"ops\""
            ),
        );
    assert_ne!(widened, original);
    std::fs::write(&path, &widened).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !listed_with(&url, ACME_KEY)
        .await
        .iter()
        .any(|t| t.starts_with("fb__"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new allow-list applies"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        next_notification(&mut acme_listen).await,
        "notifications/tools/list_changed",
        "acme is told its list changed"
    );
    assert_eq!(
        attempt(&url, &[("x-api-key", LATE_KEY)]).await.0,
        200,
        "the new key works"
    );
    let late = listed_with(&url, LATE_KEY).await;
    assert!(late.iter().any(|t| t.starts_with("fb__")), "{late:?}");

    // Removing the whole section takes a restart: credentials are still required.
    let start = original.find("[access]").unwrap();
    let end = original.find("[servers.fa]").unwrap();
    let open = format!("{}{}", &original[..start], &original[end..]);
    std::fs::write(&path, open).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        attempt(&url, &[]).await.0,
        401,
        "[access] removal waits for a restart"
    );
    assert_eq!(attempt(&url, &[("x-api-key", LATE_KEY)]).await.0, 200);
}
