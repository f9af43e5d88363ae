//! Per-tenant upstream credentials: `[servers.NAME.tenants.TENANT]` with `env` (stdio),
//! `headers` (http, sse) and `oauth` (http). They are laid over the server's own when an
//! instance is started for that tenant, which only a `per_tenant` server does: tenants
//! with different credentials never share a process or a connection. Raw shape,
//! validation and the validated model live together here, like `policy.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::EnvLookup;
use crate::model::{OAuthClient, TransportSpec};
use crate::policy::Sharing;
use crate::raw::{RawOAuth, Table, UniqueMap};
use crate::secret::Secret;

/// The credentials one tenant's instances of a server carry, besides the server's own.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TenantCredentials {
    /// Added to the server's `env` (stdio); a name the server sets too takes this value.
    pub env: BTreeMap<String, Secret<String>>,
    /// Added to the server's `headers` (http, sse); a header the server sets too (names
    /// compared case-insensitively) takes this value.
    pub headers: BTreeMap<String, Secret<String>>,
    /// Replaces the server's `oauth` client information (http).
    pub oauth: Option<OAuthClient>,
}

impl TenantCredentials {
    /// `base` with these credentials laid over it.
    pub fn apply(&self, base: &TransportSpec) -> TransportSpec {
        let mut spec = base.clone();
        match &mut spec {
            TransportSpec::Stdio { env, .. } => {
                env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            TransportSpec::Http { headers, oauth, .. } => {
                overlay_headers(headers, &self.headers);
                if self.oauth.is_some() {
                    oauth.clone_from(&self.oauth);
                }
            }
            TransportSpec::Sse { headers, .. } => overlay_headers(headers, &self.headers),
        }
        spec
    }
}

/// Header names are case-insensitive: a tenant's `authorization` replaces the server's
/// `Authorization` instead of being sent beside it.
fn overlay_headers(
    headers: &mut BTreeMap<String, Secret<String>>,
    tenant: &BTreeMap<String, Secret<String>>,
) {
    headers.retain(|name, _| !tenant.keys().any(|t| t.eq_ignore_ascii_case(name)));
    headers.extend(tenant.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// `[servers.NAME.tenants.TENANT]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenantCredentials {
    env: Option<UniqueMap<String>>,
    headers: Option<UniqueMap<String>>,
    oauth: Option<Table<RawOAuth>>,
}

/// Validates `servers.NAME.tenants` against the server's validated transport and sharing;
/// `path` is the server's.
pub(crate) fn validate(
    raw: Option<UniqueMap<Table<RawTenantCredentials>>>,
    transport: &TransportSpec,
    sharing: Sharing,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<BTreeMap<String, TenantCredentials>, Problem> {
    let Some(raw) = raw else {
        return Ok(BTreeMap::new());
    };
    let tenants_path = path.key("tenants");
    if sharing != Sharing::PerTenant {
        return Err(Problem::new(
            tenants_path,
            format!(
                "per-tenant credentials need `sharing = \"per_tenant\"` (the server is \"{}\"): \
                 only a per-tenant instance may carry one tenant's credentials",
                sharing.as_str()
            ),
        ));
    }
    let kind = transport.kind();
    let mut tenants = BTreeMap::new();
    for (tenant, table) in raw.0 {
        let path = tenants_path.key(&tenant);
        if tenant.trim().is_empty() {
            return Err(Problem::new(path, "a tenant name must not be empty"));
        }
        let raw = table.0;
        let not_allowed = |key: &str, wanted: &str| {
            Problem::new(
                path.key(key),
                format!("not allowed: the server's transport is {kind}, `{key}` is for {wanted}"),
            )
        };
        let credentials = TenantCredentials {
            env: match raw.env {
                None => BTreeMap::new(),
                Some(_) if kind != "stdio" => return Err(not_allowed("env", "stdio servers")),
                Some(map) => crate::validate::child_env(map.0, &path.key("env"), env)?,
            },
            headers: match raw.headers {
                None => BTreeMap::new(),
                Some(_) if kind == "stdio" => {
                    return Err(not_allowed("headers", "http and sse servers"));
                }
                Some(map) => crate::validate::headers(map.0, &path.key("headers"), env)?,
            },
            oauth: None,
        };
        let oauth = match raw.oauth {
            None => None,
            Some(_) if kind != "http" => return Err(not_allowed("oauth", "http servers")),
            Some(table) => {
                let TransportSpec::Http { headers, .. } = credentials.apply(transport) else {
                    unreachable!("an http server's transport stays http")
                };
                Some(crate::validate::oauth(
                    table.0,
                    &headers,
                    &path.key("oauth"),
                    env,
                )?)
            }
        };
        let credentials = TenantCredentials {
            oauth,
            ..credentials
        };
        // The tenant's `Authorization` header over the server's OAuth: one of the two.
        if let TransportSpec::Http {
            headers,
            oauth: Some(_),
            ..
        } = credentials.apply(transport)
            && headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"))
        {
            return Err(Problem::new(
                path.key("headers"),
                "an `Authorization` header here conflicts with the server's `oauth`: \
                 a server with its own `Authorization` header does not take part in OAuth",
            ));
        }
        tenants.insert(tenant, credentials);
    }
    Ok(tenants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new((*v).to_owned())))
            .collect()
    }

    #[test]
    fn tenant_credentials_are_laid_over_the_servers() {
        let stdio = TransportSpec::Stdio {
            command: "srv".into(),
            args: Vec::new(),
            env: secrets(&[("TZ", "UTC"), ("API_KEY", "server-key")]),
            cwd: None,
            sandbox: None,
        };
        let acme = TenantCredentials {
            env: secrets(&[("API_KEY", "acme-key")]),
            ..TenantCredentials::default()
        };
        let TransportSpec::Stdio { env, .. } = acme.apply(&stdio) else {
            panic!("stdio stays stdio")
        };
        assert_eq!(env, secrets(&[("TZ", "UTC"), ("API_KEY", "acme-key")]));

        let http = TransportSpec::Http {
            url: "http://a".into(),
            headers: secrets(&[("Authorization", "Bearer server"), ("X-Region", "eu")]),
            oauth: None,
        };
        let globex = TenantCredentials {
            headers: secrets(&[("authorization", "Bearer globex")]),
            ..TenantCredentials::default()
        };
        let TransportSpec::Http { headers, .. } = globex.apply(&http) else {
            panic!("http stays http")
        };
        assert_eq!(
            headers,
            secrets(&[("authorization", "Bearer globex"), ("X-Region", "eu")]),
            "one Authorization header, the tenant's"
        );
    }

    #[test]
    fn debug_of_credentials_shows_names_only() {
        let credentials = TenantCredentials {
            env: secrets(&[("API_KEY", "acme-very-secret")]),
            headers: secrets(&[("X-Token", "acme-header-secret")]),
            oauth: Some(OAuthClient {
                client_id: Some("acme".into()),
                client_secret: Some(Secret::new("acme-client-secret".into())),
                client_metadata_url: None,
                ..OAuthClient::default()
            }),
        };
        let debug = format!("{credentials:?}");
        for value in [
            "acme-very-secret",
            "acme-header-secret",
            "acme-client-secret",
        ] {
            assert!(!debug.contains(value), "{debug}");
        }
        assert!(
            debug.contains("API_KEY") && debug.contains("X-Token"),
            "{debug}"
        );
    }
}
