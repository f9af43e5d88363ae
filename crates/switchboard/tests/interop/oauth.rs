//! The MCP authorization flow end to end (issue 12): the official Python SDK's OAuth
//! client logs in to the gateway against a local authorization server, then lists and
//! calls a fixture tool through it.
//!
//! Nothing here is a test double. The authorization server is `oidc-provider` from the
//! npm registry (`interop/oauth_server.mjs` configures it: open dynamic registration,
//! PKCE, resource indicators, RS256 JWT access tokens whose `aud` is the gateway's
//! resource URI, keys at `/jwks`); only the person at the browser is scripted (its
//! interaction endpoint signs in `alice` and consents, and the client's redirect handler
//! follows the redirects with an HTTP client: `interop/oauth_login.py`). The client is
//! given nothing but the gateway's URL: it learns where to log in only from the gateway
//! — the 401's `WWW-Authenticate` names the protected resource metadata (RFC 9728),
//! which names the authorization server and the resource the token must be for. A
//! gateway whose challenge or metadata were wrong or missing would send the client to
//! the wrong place (it would fall back to `/.well-known/oauth-authorization-server` on
//! the gateway itself, which does not exist) or fail its resource check, and the test
//! checks the order of the requests the client sent, so it would fail too.

use super::*;

/// The tenant the authorization server puts in its tokens' `tenant` claim.
const TENANT: &str = "acme";

/// `interop/oauth_server.mjs` on a loopback port.
struct AuthServer {
    process: Proc,
    issuer: String,
    jwks_uri: String,
}

impl AuthServer {
    /// Starts it for the resource `resource` and waits until it accepts connections.
    fn start(tools: &Tools, scratch: &Scratch, resource: &str) -> AuthServer {
        let (log, log_path) = scratch.log("oauth-server.log");
        let mut command = Command::new(&tools.node);
        command
            .arg(interop_dir().join("oauth_server.mjs"))
            .arg("--modules")
            .arg(&tools.oauth_modules)
            .args(["--resource", resource, "--tenant", TENANT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut process = Proc::spawn("oauth server", &mut command, Some(log_path));
        let stdout = process.child.stdout.take().expect("stdout is piped");
        let line = wait_for_line(&process.name, stdout, "\"issuer\"");
        let announced: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("oauth server: not JSON ({error}): {line}"));
        let field = |name: &str| {
            announced[name]
                .as_str()
                .unwrap_or_else(|| panic!("oauth server announced no {name}: {line}"))
                .to_owned()
        };
        AuthServer {
            issuer: field("issuer"),
            jwks_uri: field("jwks_uri"),
            process,
        }
    }

    /// What it logged so far (`METHOD PATH STATUS` per request).
    fn log(&self) -> String {
        self.process
            .log
            .as_ref()
            .map(|path| fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// A gateway that requires a JWT from `server` for `resource`, in front of the fixture;
/// the tenant in the token sees two of the fixture's tools.
fn gateway_config(resource: &str, server: &AuthServer) -> String {
    let quote = |value: &str| serde_json::to_string(value).expect("a string serializes");
    format!(
        r#"[gateway]
name = "switchboard-interop-oauth"
connect_timeout_ms = 60000

[servers.fixture]
command = "switchboard-fixture"
args = ["stdio"]

[access]
anonymous = false
resource = {resource}

[access.jwt]
issuer = {issuer}
audience = {resource}
jwks_url = {jwks}
algorithms = ["RS256"]
tenant_claim = "tenant"

[access.tenants.{TENANT}]
servers = {{ allow = ["fixture"] }}
tools = {{ allow = ["fixture__echo", "fixture__add"] }}
"#,
        resource = quote(resource),
        issuer = quote(&server.issuer),
        jwks = quote(&server.jwks_uri),
    )
}

/// Runs `interop/oauth_login.py` in `mode`: log in, list, call `fixture__echo`.
fn log_in_and_call(tools: &Tools, mode: &str, url: &str, text: &str) -> Value {
    let arguments = json!({ "text": text }).to_string();
    let mut command = Command::new(&tools.python);
    command
        .arg(interop_dir().join("oauth_login.py"))
        .args([mode, "fixture__echo", &arguments, url])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let name = format!("python oauth_login.py {mode}");
    let finished = run_client(&name, &mut command);
    assert!(
        finished.status.success(),
        "{name} failed ({})\nstdout: {}\nstderr: {}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    serde_json::from_str(finished.stdout.trim())
        .unwrap_or_else(|error| panic!("{name}: not JSON ({error}): {}", finished.stdout))
}

/// What one login must show: discovery through the gateway, registration, the code
/// grant, a JWT for the gateway's resource, the tenant's view, the call's result.
fn assert_logged_in(document: &Value, mode: &str, gateway: &str, server: &AuthServer, text: &str) {
    let requests: Vec<&str> = document["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|request| request.as_str().expect("a string"))
        .collect();
    let origin = gateway.trim_end_matches("/mcp");
    let issuer = &server.issuer;
    // Discovery in the order the MCP authorization spec gives it, nothing guessed: the
    // first request is refused (401), the challenge's metadata URL is fetched next (a
    // challenge without it would send the client to `/.well-known/
    // oauth-protected-resource/mcp` first), then the authorization server the metadata
    // names.
    assert_eq!(
        requests[0],
        format!("POST {gateway}"),
        "{mode}: {requests:#?}"
    );
    assert_eq!(
        requests[1],
        format!("GET {origin}/.well-known/oauth-protected-resource"),
        "{mode}: the challenge names the metadata: {requests:#?}"
    );
    assert!(
        requests[2].starts_with(&format!("GET {issuer}/.well-known/")),
        "{mode}: the metadata names the authorization server: {requests:#?}"
    );
    let position = |wanted: &str| {
        requests
            .iter()
            .position(|request| *request == wanted)
            .unwrap_or_else(|| panic!("{mode}: no {wanted:?} in {requests:#?}"))
    };
    let registered = position(&format!("POST {issuer}/reg"));
    let token = position(&format!("POST {issuer}/token"));
    assert!(
        2 < registered && registered < token,
        "{mode}: {requests:#?}"
    );
    // Then MCP requests only (a legacy session adds its GET stream and DELETE), the
    // first of them the refused one again, now with the token.
    assert_eq!(requests[token + 1], format!("POST {gateway}"), "{mode}");
    assert!(
        requests[token + 1..]
            .iter()
            .all(|request| request.ends_with(&format!(" {gateway}"))),
        "{mode}: after the token, only MCP requests: {requests:#?}"
    );
    // The person's browser went through the authorization endpoint.
    assert_eq!(
        document["browser"][0],
        format!("{issuer}/auth"),
        "{mode}: {document}"
    );

    let header = &document["token"]["header"];
    let claims = &document["token"]["claims"];
    assert_eq!(header["alg"], "RS256", "{mode}: {header}");
    assert_eq!(
        claims["aud"], gateway,
        "{mode}: the token is for the gateway: {claims}"
    );
    assert_eq!(claims["iss"], issuer.as_str(), "{mode}: {claims}");
    assert_eq!(claims["sub"], "alice", "{mode}: {claims}");
    assert_eq!(claims["tenant"], TENANT, "{mode}: {claims}");

    // The token's tenant decides what exists.
    assert_eq!(
        document["tools"],
        json!(["fixture__echo", "fixture__add"]),
        "{mode}: the tenant's view"
    );
    let result = &document["result"];
    assert_eq!(result["isError"], false, "{mode}: {result}");
    assert_eq!(result["content"][0]["text"], text, "{mode}: {result}");
}

#[test]
fn interop_oauth_login_then_call_python_legacy_and_2026() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    // The resource URI is in the config and in the tokens, so the port comes first.
    let listen = format!("127.0.0.1:{}", free_port());
    let resource = format!("http://{listen}/mcp");
    let server = AuthServer::start(&tools, &scratch, &resource);
    let config = scratch.write("switchboard.toml", &gateway_config(&resource, &server));
    let gateway = Gateway::serve_at(&scratch, &config, &listen);
    assert_eq!(gateway.url, resource);

    for (mode, text) in [("2026-07-28", "modern login"), ("legacy", "legacy login")] {
        let document = log_in_and_call(&tools, mode, &gateway.url, text);
        assert_logged_in(&document, mode, &gateway.url, &server, text);
    }
    // The gateway verified the tokens with the authorization server's published keys.
    assert!(
        server.log().contains("GET /jwks 200"),
        "the gateway never fetched the JWKS:\n{}",
        server.log()
    );
    gateway.stop();
}
