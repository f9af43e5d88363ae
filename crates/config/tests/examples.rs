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
fn the_upstream_auth_example_configures_every_grant() {
    use switchboard_config::{CredentialSource, OAuthGrant};
    let config = load(&examples_dir().join("upstream-auth.toml")).unwrap();
    let oauth = |name: &str| match &config.servers[name].transport {
        TransportSpec::Http {
            oauth: Some(oauth), ..
        } => oauth.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let billing = oauth("billing");
    assert_eq!(billing.grant, OAuthGrant::ClientCredentials);
    assert!(billing.client_secret.is_some() && billing.private_key.is_none());
    assert_eq!(billing.scope.as_deref(), Some("invoices:read"));
    let ledger = oauth("ledger");
    assert!(ledger.dpop);
    let key = ledger.private_key.expect("private_key_jwt");
    assert_eq!(key.algorithm, "ES256");
    assert!(matches!(key.pem, CredentialSource::File(_)));
    assert!(matches!(
        oauth("search").grant,
        OAuthGrant::JwtBearer {
            assertion: CredentialSource::File(_)
        }
    ));
    let crm = oauth("crm");
    let OAuthGrant::Enterprise {
        idp_token_endpoint,
        id_token,
        ..
    } = &crm.grant
    else {
        panic!("crm is enterprise-managed: {:?}", crm.grant);
    };
    assert_eq!(idp_token_endpoint, "https://idp.example.com/oauth2/token");
    assert!(matches!(id_token, CredentialSource::File(_)));
    // A stored-secret reference stays a reference until the vault resolves it.
    assert_eq!(
        crm.client_secret.as_ref().unwrap().expose_str(),
        "${secret:crm_client_secret}"
    );
    assert_eq!(oauth("tickets").grant, OAuthGrant::AuthorizationCode);
}

#[test]
fn the_cluster_example_names_a_redis() {
    let config = load(&examples_dir().join("cluster.toml")).unwrap_or_else(|e| panic!("{e}"));
    let cluster = config.cluster.expect("[cluster]");
    assert!(cluster.redis.expose().starts_with("redis://"));
    assert_eq!(cluster.key_prefix, "switchboard");
    assert_eq!(cluster.command_timeout.as_millis(), 500);
    assert_eq!(cluster.lease.as_millis(), 5000);
    assert!(cluster.secret.is_some());
    assert_eq!(
        config.servers["indexer"].cluster,
        switchboard_config::ClusterMode::Owned
    );
    // Without the section: none.
    let plain = load(&examples_dir().join("telemetry.toml")).unwrap();
    assert!(plain.cluster.is_none());
}
