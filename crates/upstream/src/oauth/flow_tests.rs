//! Token acquisition against a real (tiny) authorization server: the non-interactive
//! grants, client authentication, DPoP nonces, caching until expiry, bounded responses.

use std::collections::BTreeSet;
use std::sync::Arc;

use jsonwebtoken::dangerous::insecure_decode;
use serde_json::{Value, json};
use switchboard_config::{CredentialSource, OAuthClient, OAuthGrant, Secret};

use super::testserver::{Reply, Seen, serve};
use super::*;

fn authorizer(server: &str, config: OAuthClient) -> Arc<Authorizer> {
    let url = Url::parse("http://127.0.0.1:9/mcp").unwrap();
    for_server(
        server,
        None,
        &url,
        &reqwest::header::HeaderMap::new(),
        Some(&config),
    )
    .expect("takes part")
}

fn discovery(base: &str) -> Discovery {
    Discovery {
        resource: "http://127.0.0.1:9/mcp".into(),
        scopes_supported: vec![],
        issuer: base.into(),
        metadata: json!({"issuer": base, "token_endpoint": format!("{base}/token")}),
    }
}

fn token(expires_in: u64) -> Reply {
    (
        200,
        vec![],
        json!({"access_token": format!("tok-{}", random_token()), "token_type": "Bearer", "expires_in": expires_in}).to_string(),
    )
}

fn claims(jwt: &str) -> Value {
    insecure_decode::<Value>(jwt).unwrap().claims
}

async fn acquire(auth: &Arc<Authorizer>, base: &str) -> Result<(), AuthError> {
    let mut flow = auth.flow.lock().await;
    auth.acquire(&mut flow, &discovery(base), BTreeSet::new())
        .await
}

#[tokio::test]
async fn client_credentials_with_basic_authentication_is_cached_until_expiry() {
    let server = serve(|_, _| token(3600)).await;
    let auth = authorizer(
        "cc-basic-test",
        OAuthClient {
            client_id: Some("gw client".into()),
            client_secret: Some(Secret::new("s3cret:1".into())),
            grant: OAuthGrant::ClientCredentials,
            scope: Some("tools:read".into()),
            ..OAuthClient::default()
        },
    );
    assert!(Credential::current(&auth).is_none());
    acquire(&auth, &server.base).await.unwrap();
    let first = Credential::current(&auth).expect("a token");
    // Cached: asking again makes no request.
    assert_eq!(Credential::current(&auth).unwrap().token(), first.token());
    let seen = server.seen.lock().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/token");
    assert_eq!(
        request.form("grant_type").as_deref(),
        Some("client_credentials")
    );
    assert_eq!(request.form("scope").as_deref(), Some("tools:read"));
    assert_eq!(
        request.form("resource").as_deref(),
        Some("http://127.0.0.1:9/mcp")
    );
    assert!(request.form("client_secret").is_none());
    // RFC 6749 section 2.3.1: both parts form-encoded, then Base64.
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {}", STANDARD.encode("gw+client:s3cret%3A1")).as_str())
    );
}

#[tokio::test]
async fn an_expiring_token_is_not_presented_and_a_new_one_is_made() {
    // 10 s is inside the renewal margin: the token counts as expired at once.
    let server = serve(|_, index| token(if index == 0 { 10 } else { 3600 })).await;
    let auth = authorizer(
        "cc-expiry-test",
        OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("s".into())),
            grant: OAuthGrant::ClientCredentials,
            ..OAuthClient::default()
        },
    );
    acquire(&auth, &server.base).await.unwrap();
    assert!(
        Credential::current(&auth).is_none(),
        "expired tokens are not sent"
    );
    // Renewed before the next request, at the authorization server of the last token.
    auth.renew_if_expiring().await;
    let renewed = Credential::current(&auth).expect("renewed");
    assert_eq!(server.seen.lock().len(), 2);
    // A valid token is not renewed.
    auth.renew_if_expiring().await;
    assert_eq!(Credential::current(&auth).unwrap().token(), renewed.token());
    assert_eq!(server.seen.lock().len(), 2);
}

#[tokio::test]
async fn private_key_jwt_sends_a_signed_assertion_for_the_issuer() {
    let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pair.to_pkcs8v1().unwrap().as_ref())
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, pem).unwrap();
    let server = serve(|_, _| token(3600)).await;
    let auth = authorizer(
        "cc-jwt-test",
        OAuthClient {
            client_id: Some("jwt-client".into()),
            private_key: Some(switchboard_config::SigningKey {
                pem: CredentialSource::File(key_file),
                algorithm: "ES256".into(),
            }),
            grant: OAuthGrant::ClientCredentials,
            ..OAuthClient::default()
        },
    );
    acquire(&auth, &server.base).await.unwrap();
    let request = server.seen.lock()[0].clone();
    assert!(request.header("authorization").is_none());
    assert_eq!(
        request.form("client_assertion_type").as_deref(),
        Some(jwt::ASSERTION_TYPE)
    );
    let assertion = claims(&request.form("client_assertion").unwrap());
    assert_eq!(assertion["iss"], "jwt-client");
    assert_eq!(assertion["sub"], "jwt-client");
    assert_eq!(assertion["aud"], server.base.as_str());
}

#[tokio::test]
async fn the_workload_token_is_read_from_its_file_at_each_acquisition() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "workload-jwt-1\n").unwrap();
    let server = serve(|_, index| token(if index == 0 { 1 } else { 3600 })).await;
    let auth = authorizer(
        "wif-test",
        OAuthClient {
            grant: OAuthGrant::JwtBearer {
                assertion: CredentialSource::File(file.clone()),
            },
            ..OAuthClient::default()
        },
    );
    acquire(&auth, &server.base).await.unwrap();
    std::fs::write(&file, "workload-jwt-2").unwrap();
    acquire(&auth, &server.base).await.unwrap();
    let seen: Vec<Seen> = server.seen.lock().clone();
    assert_eq!(
        seen[0].form("grant_type").as_deref(),
        Some(grants::JWT_BEARER)
    );
    assert_eq!(seen[0].form("assertion").as_deref(), Some("workload-jwt-1"));
    assert_eq!(seen[1].form("assertion").as_deref(), Some("workload-jwt-2"));
    assert!(seen[0].form("client_id").is_none());
}

#[tokio::test]
async fn enterprise_exchanges_the_id_token_then_presents_the_grant() {
    let server = serve(|request, _| match request.path.as_str() {
        "/idp/token" => (
            200,
            vec![],
            json!({"access_token": "the-id-jag", "issued_token_type": grants::ID_JAG_TYPE, "token_type": "N_A"}).to_string(),
        ),
        _ => token(3600),
    })
    .await;
    let auth = authorizer(
        "enterprise-test",
        OAuthClient {
            client_id: Some("mcp-client".into()),
            client_secret: Some(Secret::new("mcp-secret".into())),
            grant: OAuthGrant::Enterprise {
                idp_token_endpoint: format!("{}/idp/token", server.base),
                idp_client_id: Some("idp-client".into()),
                idp_client_secret: None,
                id_token: CredentialSource::Inline(Secret::new("the-id-token".into())),
            },
            ..OAuthClient::default()
        },
    );
    acquire(&auth, &server.base).await.unwrap();
    let seen = server.seen.lock().clone();
    assert_eq!(seen.len(), 2);
    let exchange = &seen[0];
    assert_eq!(
        exchange.form("grant_type").as_deref(),
        Some(grants::TOKEN_EXCHANGE)
    );
    assert_eq!(
        exchange.form("subject_token").as_deref(),
        Some("the-id-token")
    );
    assert_eq!(
        exchange.form("subject_token_type").as_deref(),
        Some(grants::ID_TOKEN_TYPE)
    );
    assert_eq!(
        exchange.form("requested_token_type").as_deref(),
        Some(grants::ID_JAG_TYPE)
    );
    assert_eq!(
        exchange.form("audience").as_deref(),
        Some(server.base.as_str())
    );
    assert_eq!(
        exchange.form("resource").as_deref(),
        Some("http://127.0.0.1:9/mcp")
    );
    assert_eq!(exchange.form("client_id").as_deref(), Some("idp-client"));
    let bearer = &seen[1];
    assert_eq!(
        bearer.form("grant_type").as_deref(),
        Some(grants::JWT_BEARER)
    );
    assert_eq!(bearer.form("assertion").as_deref(), Some("the-id-jag"));
    assert!(
        bearer
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn dpop_token_requests_retry_once_with_the_servers_nonce() {
    let server = serve(|request: &Seen, _| {
        let proof = claims(request.header("dpop").expect("a DPoP proof"));
        if proof["nonce"] == "as-nonce-1" {
            (
                200,
                vec![("DPoP-Nonce", "as-nonce-2".into())],
                json!({"access_token": "bound", "token_type": "DPoP", "expires_in": 3600})
                    .to_string(),
            )
        } else {
            (
                400,
                vec![("DPoP-Nonce", "as-nonce-1".into())],
                json!({"error": "use_dpop_nonce"}).to_string(),
            )
        }
    })
    .await;
    let auth = authorizer(
        "dpop-as-test",
        OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("s".into())),
            grant: OAuthGrant::ClientCredentials,
            dpop: true,
            ..OAuthClient::default()
        },
    );
    acquire(&auth, &server.base).await.unwrap();
    assert_eq!(server.seen.lock().len(), 2);
    let credential = Credential::current(&auth).unwrap();
    assert!(credential.is_dpop());
    // The latest nonce is kept for the next token request.
    assert_eq!(auth.as_nonce.lock().as_deref(), Some("as-nonce-2"));
    let proof = claims(server.seen.lock()[1].header("dpop").unwrap());
    assert_eq!(proof["htm"], "POST");
    assert_eq!(proof["htu"], format!("{}/token", server.base));
}

#[tokio::test]
async fn a_server_that_keeps_asking_for_a_nonce_is_not_looped_on() {
    let server = serve(|_, index| {
        (
            400,
            vec![("DPoP-Nonce", format!("nonce-{index}"))],
            json!({"error": "use_dpop_nonce"}).to_string(),
        )
    })
    .await;
    let auth = authorizer(
        "dpop-loop-test",
        OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("s".into())),
            grant: OAuthGrant::ClientCredentials,
            dpop: true,
            ..OAuthClient::default()
        },
    );
    let error = acquire(&auth, &server.base).await.unwrap_err().to_string();
    assert!(error.contains("use_dpop_nonce"), "{error}");
    assert_eq!(server.seen.lock().len(), 2);
}

#[tokio::test]
async fn resource_server_nonces_go_into_the_next_proof() {
    let auth = authorizer(
        "dpop-rs-test",
        OAuthClient {
            client_id: Some("c".into()),
            client_secret: Some(Secret::new("s".into())),
            grant: OAuthGrant::ClientCredentials,
            dpop: true,
            ..OAuthClient::default()
        },
    );
    auth.store(Granted {
        access_token: "bound-token".into(),
        refresh_token: None,
        dpop: true,
        expires_in: Some(3600),
    });
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("dpop-nonce", "rs-nonce-7".parse().unwrap());
    let challenge = r#"DPoP error="use_dpop_nonce", error_description="nonce""#;
    assert!(auth.is_nonce_challenge(401, Some(challenge), &headers));
    assert!(!auth.is_nonce_challenge(401, Some("DPoP error=\"invalid_token\""), &headers));
    assert!(!auth.is_nonce_challenge(401, Some(challenge), &reqwest::header::HeaderMap::new()));
    auth.observe(&headers);
    let credential = Credential::current(&auth).unwrap();
    let url = Url::parse("http://127.0.0.1:9/mcp?session=1").unwrap();
    let request = credential
        .apply(reqwest::Client::new().post(url.clone()), "POST", &url)
        .build()
        .unwrap();
    let authorization = request.headers()["authorization"].clone();
    assert!(authorization.is_sensitive());
    assert_eq!(authorization.to_str().unwrap(), "DPoP bound-token");
    let proof = claims(request.headers()["dpop"].to_str().unwrap());
    assert_eq!(proof["nonce"], "rs-nonce-7");
    assert_eq!(proof["htu"], "http://127.0.0.1:9/mcp");
    assert!(proof["ath"].is_string());
    assert!(!format!("{credential:?}").contains("bound-token"));
}

#[tokio::test]
async fn oversized_or_failed_token_responses_fail_without_echoing_secrets() {
    let server = serve(|request, _| {
        if request.form("scope").as_deref() == Some("big") {
            (
                200,
                vec![],
                format!(
                    "{{\"access_token\":\"{}\"}}",
                    "x".repeat(MAX_RESPONSE_BYTES)
                ),
            )
        } else {
            (
                401,
                vec![],
                json!({"error": "invalid_client", "echo": request.body}).to_string(),
            )
        }
    })
    .await;
    for scope in ["big", "small"] {
        let auth = authorizer(
            &format!("bounded-test-{scope}"),
            OAuthClient {
                client_id: Some("c".into()),
                client_secret: Some(Secret::new("very-secret-value".into())),
                grant: OAuthGrant::ClientCredentials,
                scope: Some(scope.into()),
                ..OAuthClient::default()
            },
        );
        let error = acquire(&auth, &server.base).await.unwrap_err().to_string();
        assert!(error.starts_with("token request failed"), "{error}");
        assert!(!error.contains("very-secret"), "{error}");
        assert!(Credential::current(&auth).is_none());
    }
}

#[test]
fn servers_never_share_an_authorizer() {
    let config = OAuthClient {
        client_id: Some("c".into()),
        client_secret: Some(Secret::new("s".into())),
        grant: OAuthGrant::ClientCredentials,
        ..OAuthClient::default()
    };
    let one = authorizer("per-server-a", config.clone());
    let other = authorizer("per-server-b", config.clone());
    assert!(!Arc::ptr_eq(&one, &other));
    assert!(Arc::ptr_eq(
        &one,
        &authorizer("per-server-a", config.clone())
    ));
    // Another grant configuration is another authorizer (and another token).
    let dpop = authorizer(
        "per-server-a",
        OAuthClient {
            dpop: true,
            ..config
        },
    );
    assert!(!Arc::ptr_eq(&one, &dpop));
}
