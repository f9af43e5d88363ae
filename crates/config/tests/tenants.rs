//! Per-tenant upstream credentials (`[servers.NAME.tenants.TENANT]`): how they are read,
//! laid over the server's own, refused where they cannot apply, and never printed.

mod common;

use common::{assert_invalid, native};
use switchboard_config::{Sharing, TransportSpec};

const STDIO: &str = r#"
[access.tenants.acme]
[access.tenants.globex]

[servers.keyed]
command = "srv"
sharing = "per_tenant"
env = { REGION = "eu", API_KEY = "server-key-${TOKEN}" }

[servers.keyed.tenants.acme]
env = { API_KEY = "acme-key-${SECRET}" }

[servers.keyed.tenants.globex]
env = { API_KEY = "globex-key-literal" }
"#;

#[test]
fn each_tenant_gets_its_credentials_over_the_servers() {
    let config = native(STDIO).unwrap();
    let spec = &config.servers["keyed"];
    assert_eq!(spec.policy.sharing, Sharing::PerTenant);
    assert_eq!(spec.policy.sharing.as_str(), "per_tenant");
    let env_of = |tenant: Option<&str>| {
        let TransportSpec::Stdio { env, .. } = spec.transport_for(tenant).into_owned() else {
            panic!("stdio")
        };
        env.into_iter()
            .map(|(k, v)| (k, v.into_exposed()))
            .collect::<Vec<_>>()
    };
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        env_of(Some("acme")),
        [
            pair("API_KEY", "acme-key-0123456789abcdef0123"),
            pair("REGION", "eu")
        ]
    );
    assert_eq!(
        env_of(Some("globex")),
        [pair("API_KEY", "globex-key-literal"), pair("REGION", "eu")]
    );
    // A tenant without credentials of its own, and no tenant: the server's.
    let server_own = [pair("API_KEY", "server-key-s3cret"), pair("REGION", "eu")];
    assert_eq!(env_of(Some("initech")), server_own);
    assert_eq!(env_of(None), server_own);
}

#[test]
fn debug_of_the_whole_config_shows_no_credential() {
    let text = format!(
        "{STDIO}\n[servers.remote]\nurl = \"http://a\"\nsharing = \"per_tenant\"\n\
         headers = {{ X-Base = \"base-header-value\" }}\n\
         [servers.remote.tenants.acme]\nheaders = {{ Authorization = \"Bearer acme-bearer-value\" }}\n\
         [servers.remote.tenants.globex.oauth]\nclient_id = \"globex\"\nclient_secret = \"globex-client-value\"\n\
         [gateway]\nadmin_token = \"admin-token-value-0123\"\nstate_secret = \"state-secret-value-0123\"\n"
    );
    let config = native(&text).unwrap();
    let printed = format!("{config:?} {config:#?}");
    for secret in [
        "server-key",
        "acme-key",
        "0123456789abcdef0123",
        "globex-key-literal",
        "base-header-value",
        "acme-bearer-value",
        "globex-client-value",
        "admin-token-value",
        "state-secret-value",
    ] {
        assert!(!printed.contains(secret), "{secret} printed: {printed}");
    }
    // Names stay visible: what is set, not its value.
    for name in ["API_KEY", "REGION", "X-Base", "Authorization", "globex"] {
        assert!(printed.contains(name), "{name} missing: {printed}");
    }
    let TransportSpec::Http { headers, .. } = config.servers["remote"]
        .transport_for(Some("acme"))
        .into_owned()
    else {
        panic!("http")
    };
    assert_eq!(
        headers["Authorization"].expose_str(),
        "Bearer acme-bearer-value"
    );
    assert_eq!(headers["X-Base"].expose_str(), "base-header-value");
    let TransportSpec::Http { oauth, .. } = config.servers["remote"]
        .transport_for(Some("globex"))
        .into_owned()
    else {
        panic!("http")
    };
    assert_eq!(
        oauth.unwrap().client_secret.unwrap().expose_str(),
        "globex-client-value"
    );
}

#[test]
fn credentials_need_a_per_tenant_server() {
    for sharing in ["", "sharing = \"shared\"\n", "sharing = \"pool\"\n"] {
        let display = assert_invalid(
            native(&format!(
                "[servers.x]\ncommand = \"srv\"\n{sharing}[servers.x.tenants.acme]\nenv = {{ K = \"v\" }}\n"
            )),
            "servers.x.tenants",
            "need `sharing = \"per_tenant\"`",
        );
        assert!(!display.contains("\"v\""), "{display}");
    }
    // per_tenant without credentials is fine: every tenant its own instance.
    native("[servers.x]\ncommand = \"srv\"\nsharing = \"per_tenant\"\n").unwrap();
}

#[test]
fn credentials_follow_the_servers_transport() {
    let per_tenant = |server: &str, tenant: &str| {
        native(&format!(
            "[servers.x]\n{server}\nsharing = \"per_tenant\"\n[servers.x.tenants.acme]\n{tenant}\n"
        ))
    };
    assert_invalid(
        per_tenant("url = \"http://a\"", "env = { K = \"v\" }"),
        "servers.x.tenants.acme.env",
        "not allowed: the server's transport is http",
    );
    assert_invalid(
        per_tenant("command = \"srv\"", "headers = { K = \"v\" }"),
        "servers.x.tenants.acme.headers",
        "not allowed: the server's transport is stdio",
    );
    assert_invalid(
        per_tenant(
            "url = \"http://a/sse\"\ntransport = \"sse\"",
            "oauth = { client_id = \"a\" }",
        ),
        "servers.x.tenants.acme.oauth",
        "`oauth` is for http servers",
    );
    assert_invalid(
        per_tenant("command = \"srv\"", "cwd = \"/tmp\""),
        "servers.x.tenants.acme.cwd",
        "unknown field `cwd`, expected one of `env`, `headers`, `oauth`",
    );
    // Values are checked like the server's own, without echoing them.
    let display = assert_invalid(
        per_tenant(
            "url = \"http://a\"",
            "headers = { X-Key = \"bad\\u0001secret-part\" }",
        ),
        "servers.x.tenants.acme.headers.X-Key",
        "invalid HTTP header value",
    );
    assert!(!display.contains("secret-part"), "{display}");
    assert_invalid(
        per_tenant("command = \"srv\"", "env = { K = \"${UNSET_FOR_TEST}\" }"),
        "servers.x.tenants.acme.env.K",
        "`UNSET_FOR_TEST` is not set",
    );
    assert_invalid(
        per_tenant("command = \"srv\"", "env = { \"A=B\" = \"v\" }"),
        "servers.x.tenants.acme.env.\"A=B\"",
        "invalid environment variable name",
    );
}

#[test]
fn an_authorization_header_and_oauth_exclude_each_other() {
    assert_invalid(
        native(
            "[servers.x]\nurl = \"http://a\"\nsharing = \"per_tenant\"\noauth = { client_id = \"gw\" }\n\
             [servers.x.tenants.acme]\nheaders = { authorization = \"Bearer t\" }\n",
        ),
        "servers.x.tenants.acme.headers",
        "conflicts with the server's `oauth`",
    );
    assert_invalid(
        native(
            "[servers.x]\nurl = \"http://a\"\nsharing = \"per_tenant\"\nheaders = { Authorization = \"Bearer t\" }\n\
             [servers.x.tenants.acme]\noauth = { client_id = \"acme\" }\n",
        ),
        "servers.x.tenants.acme.oauth",
        "own `Authorization` header",
    );
}

#[test]
fn credentials_for_an_undeclared_tenant_are_a_typo() {
    assert_invalid(
        native(
            "[access.tenants.acme]\n[servers.x]\ncommand = \"srv\"\nsharing = \"per_tenant\"\n\
             [servers.x.tenants.acme]\nenv = { K = \"a\" }\n[servers.x.tenants.acmee]\nenv = { K = \"b\" }\n",
        ),
        "servers.x.tenants.acmee",
        "unknown tenant `acmee` (not in access.tenants)",
    );
    // Without declared tenants (tenants named by JWT claims), any name is taken.
    native(
        "[access]\n[servers.x]\ncommand = \"srv\"\nsharing = \"per_tenant\"\n\
         [servers.x.tenants.anyone]\nenv = { K = \"a\" }\n",
    )
    .unwrap();
}
