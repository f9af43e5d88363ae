//! The vault against a real redb file: sealed at rest, wrong keys refused, rotation, and
//! references resolved at use.

use std::collections::BTreeMap;

use switchboard_config::{KeyBytes, Secret, SecretsSettings, TransportSpec, VaultKey};

use super::*;

const VALUE: &str = "plaintext-secret-value-4b9e2a";

fn settings(key: u8, previous: Option<u8>) -> SecretsSettings {
    SecretsSettings {
        key: VaultKey::Inline(KeyBytes([key; 32])),
        previous_key: previous.map(|p| VaultKey::Inline(KeyBytes([p; 32]))),
    }
}

fn with_db<T>(dir: &Path, run: impl FnOnce(Arc<Db>) -> T) -> T {
    run(Db::open(Some(dir)).unwrap())
}

#[test]
fn values_are_sealed_on_disk_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(1, None)).unwrap();
        let (first, created) = vault.put("api", &Secret::new(VALUE.to_owned())).unwrap();
        assert_eq!(first.name, "api");
        assert!(created);
        let (second, created) = vault
            .put("api", &Secret::new(format!("{VALUE}-2")))
            .unwrap();
        assert!(!created);
        assert_eq!(second.created_ms, first.created_ms);
        assert!(second.updated_ms >= first.updated_ms);
        vault.put("other", &Secret::new("x".to_owned())).unwrap();
        assert_eq!(
            vault
                .list()
                .unwrap()
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["api", "other"]
        );
        assert!(vault.delete("other").unwrap());
        assert!(!vault.delete("other").unwrap());
        assert!(format!("{vault:?}").contains("key id") || format!("{vault:?}").contains("Key("));
    });
    let raw = std::fs::read(dir.path().join("switchboard.redb")).unwrap();
    assert!(!raw.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()));
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(1, None)).unwrap();
        assert_eq!(
            vault.get("api").unwrap().unwrap().expose_str(),
            format!("{VALUE}-2")
        );
        assert!(vault.get("missing").unwrap().is_none());
    });
}

#[test]
fn bad_input_is_refused() {
    let vault = Vault::open(Arc::new(Db::memory()), &settings(1, None)).unwrap();
    let value = Secret::new("v".to_owned());
    for name in ["", "a b", "-x", "\0check", &"n".repeat(65)] {
        assert!(
            matches!(vault.put(name, &value), Err(VaultError::InvalidName)),
            "{name:?}"
        );
    }
    let big = Secret::new("x".repeat(MAX_VALUE_BYTES + 1));
    assert!(matches!(
        vault.put("big", &big),
        Err(VaultError::TooLarge(_))
    ));
}

#[test]
fn a_wrong_key_is_refused_by_name_without_printing_keys() {
    let dir = tempfile::tempdir().unwrap();
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(1, None)).unwrap();
        vault.put("api", &Secret::new(VALUE.to_owned())).unwrap();
    });
    let error = with_db(dir.path(), |db| Vault::open(db, &settings(2, None))).unwrap_err();
    assert!(matches!(error, VaultError::WrongKey { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("does not open the stored secrets"),
        "{message}"
    );
    assert!(
        !message.contains("0202") && !message.contains("0101"),
        "{message}"
    );
}

#[test]
fn rotation_re_encrypts_everything_under_the_new_key_only() {
    let dir = tempfile::tempdir().unwrap();
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(1, None)).unwrap();
        vault.put("a", &Secret::new(format!("{VALUE}-a"))).unwrap();
        vault.put("b", &Secret::new(format!("{VALUE}-b"))).unwrap();
    });
    with_db(dir.path(), |db| {
        // New key with the old one as previous: readable before the rotation.
        let vault = Vault::open(db, &settings(2, Some(1))).unwrap();
        assert_eq!(
            vault.get("a").unwrap().unwrap().expose_str(),
            format!("{VALUE}-a")
        );
        // A write in between is sealed under the new key already.
        vault.put("c", &Secret::new(format!("{VALUE}-c"))).unwrap();
        assert_eq!(vault.rotate().unwrap(), 2);
        assert_eq!(vault.rotate().unwrap(), 0, "nothing left to re-encrypt");
    });
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(2, None)).unwrap();
        for name in ["a", "b", "c"] {
            assert_eq!(
                vault.get(name).unwrap().unwrap().expose_str(),
                format!("{VALUE}-{name}")
            );
        }
    });
    let error = with_db(dir.path(), |db| Vault::open(db, &settings(1, None))).unwrap_err();
    assert!(matches!(error, VaultError::WrongKey { .. }), "{error}");
}

#[test]
fn offline_rotation_needs_the_previous_key() {
    let dir = tempfile::tempdir().unwrap();
    with_db(dir.path(), |db| {
        let vault = Vault::open(db, &settings(1, None)).unwrap();
        vault.put("a", &Secret::new(VALUE.to_owned())).unwrap();
    });
    let error = rotate_offline(dir.path(), &settings(3, None)).unwrap_err();
    assert!(error.contains("does not open"), "{error}");
    assert_eq!(
        rotate_offline(dir.path(), &settings(3, Some(1))).unwrap(),
        1
    );
    let vault = Vault::open(Db::open(Some(dir.path())).unwrap(), &settings(3, None)).unwrap();
    assert_eq!(vault.get("a").unwrap().unwrap().expose_str(), VALUE);
}

#[test]
fn key_files_are_read_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    assert_eq!(
        read_key(&VaultKey::File(path.clone())).unwrap().0,
        [0xab; 32]
    );
    std::fs::write(&path, "not-a-key-at-all").unwrap();
    let error = read_key(&VaultKey::File(path)).unwrap_err().to_string();
    assert!(!error.contains("not-a-key"), "{error}");
    assert!(read_key(&VaultKey::File(dir.path().join("missing"))).is_err());
}

fn stdio(env: &[(&str, &str)]) -> TransportSpec {
    TransportSpec::Stdio {
        command: "x".into(),
        args: Vec::new(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.to_string())))
            .collect::<BTreeMap<_, _>>(),
        cwd: None,
        sandbox: None,
    }
}

#[test]
fn references_resolve_at_use() {
    let vault = Vault::open(Arc::new(Db::memory()), &settings(1, None)).unwrap();
    let spec = stdio(&[("TOKEN", "pre-${secret:api}$$"), ("PLAIN", "$$")]);
    assert!(references_secrets(&spec));
    let error = resolve_transport(Some(&vault), &spec).unwrap_err();
    assert!(
        matches!(error, VaultError::Unknown(ref name) if name == "api"),
        "{error}"
    );
    let error = resolve_transport(None, &spec).unwrap_err();
    assert!(
        error.to_string().contains("no `[secrets]` section"),
        "{error}"
    );

    vault.put("api", &Secret::new("one".to_owned())).unwrap();
    let TransportSpec::Stdio { env, .. } = resolve_transport(Some(&vault), &spec).unwrap() else {
        unreachable!()
    };
    assert_eq!(env["TOKEN"].expose_str(), "pre-one$");
    assert_eq!(env["PLAIN"].expose_str(), "$$", "not a template: untouched");
    vault.put("api", &Secret::new("two".to_owned())).unwrap();
    let TransportSpec::Stdio { env, .. } = resolve_transport(Some(&vault), &spec).unwrap() else {
        unreachable!()
    };
    assert_eq!(
        env["TOKEN"].expose_str(),
        "pre-two$",
        "an update reaches the next use"
    );

    vault.put("bad", &Secret::new("a\nb".to_owned())).unwrap();
    let http = TransportSpec::Http {
        url: "http://x/".into(),
        headers: BTreeMap::from([(
            "Authorization".to_owned(),
            Secret::new("Bearer ${secret:bad}".to_owned()),
        )]),
        oauth: None,
    };
    let error = resolve_transport(Some(&vault), &http)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`bad`") && !error.contains("a\nb"),
        "{error}"
    );
    assert!(!references_secrets(&stdio(&[("A", "b")])));
}

#[test]
fn oauth_secrets_resolve_at_use() {
    use switchboard_config::{CredentialSource, OAuthClient, OAuthGrant};
    let vault = Vault::open(Arc::new(Db::memory()), &settings(1, None)).unwrap();
    let http = TransportSpec::Http {
        url: "http://x/".into(),
        headers: BTreeMap::new(),
        oauth: Some(OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("${secret:as_secret}".into())),
            grant: OAuthGrant::Enterprise {
                idp_token_endpoint: "https://idp/token".into(),
                idp_client_id: None,
                idp_client_secret: None,
                id_token: CredentialSource::Inline(Secret::new("${secret:id_token}".into())),
            },
            ..OAuthClient::default()
        }),
    };
    assert!(references_secrets(&http));
    let error = resolve_transport(Some(&vault), &http).unwrap_err();
    assert!(
        matches!(error, VaultError::Unknown(ref name) if name == "as_secret"),
        "{error}"
    );
    vault
        .put("as_secret", &Secret::new("s-1".to_owned()))
        .unwrap();
    vault
        .put("id_token", &Secret::new("eyJ.t.1".to_owned()))
        .unwrap();
    let TransportSpec::Http {
        oauth: Some(oauth), ..
    } = resolve_transport(Some(&vault), &http).unwrap()
    else {
        unreachable!()
    };
    assert_eq!(oauth.client_secret.unwrap().expose_str(), "s-1");
    let OAuthGrant::Enterprise {
        id_token: CredentialSource::Inline(token),
        ..
    } = oauth.grant
    else {
        unreachable!()
    };
    assert_eq!(token.expose_str(), "eyJ.t.1");
    let plain = TransportSpec::Http {
        url: "http://x/".into(),
        headers: BTreeMap::new(),
        oauth: Some(OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("plain".into())),
            ..OAuthClient::default()
        }),
    };
    assert!(!references_secrets(&plain));
}
