//! The file shapes: `Raw*` structs that mirror what users write, before validation.
//!
//! Every struct denies unknown fields, and every field is optional so that
//! "missing" and "conflicting" can be reported by `validate` with the key path
//! instead of by serde with a generic message. Maps reject duplicate keys
//! (serde_json would otherwise keep the last one silently).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::{self, IgnoredAny};

/// `switchboard.toml`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNative {
    #[serde(default)]
    pub(crate) gateway: Table<RawGateway>,
    #[serde(default)]
    pub(crate) listen: Table<RawListen>,
    #[serde(default)]
    pub(crate) servers: UniqueMap<Table<RawNativeServer>>,
    pub(crate) access: Option<Table<crate::access::RawAccess>>,
    pub(crate) audit: Option<Table<crate::audit::RawAudit>>,
    pub(crate) redaction: Option<Table<crate::redaction::RawRedaction>>,
    pub(crate) registry: Option<Table<crate::registry::RawRegistry>>,
    pub(crate) approvals: Option<Table<crate::approvals::RawApprovals>>,
    pub(crate) secrets: Option<Table<crate::vault::RawSecrets>>,
    pub(crate) telemetry: Option<Table<crate::telemetry::RawTelemetry>>,
    pub(crate) cluster: Option<Table<crate::cluster::RawCluster>>,
    pub(crate) agent: Option<Table<crate::agent::RawAgent>>,
    pub(crate) search: Option<Table<crate::search::RawSearch>>,
    pub(crate) discovery: Option<Vec<Table<crate::discovery::RawDiscovery>>>,
    #[serde(default)]
    pub(crate) rollouts: UniqueMap<Table<crate::rollouts::RawRollout>>,
    pub(crate) scripts: Option<Table<crate::scripts::RawScripts>>,
}

/// `[gateway]`; also `"switchboard": { "gateway": ... }` in `.mcp.json`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) name: Option<String>,
    pub(crate) passthrough: Option<bool>,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) request_timeout_ms: Option<u64>,
    pub(crate) probe_timeout_ms: Option<u64>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) state_secret: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) state_dir: Option<String>,
    pub(crate) drain_timeout_ms: Option<u64>,
    pub(crate) meta_tools: Option<Vec<String>>,
    pub(crate) meta_tools_by_default: Option<bool>,
    pub(crate) allow_install: Option<bool>,
    pub(crate) allow_commands: Option<Vec<String>>,
    pub(crate) tools: Option<String>,
    pub(crate) search_threshold: Option<f64>,
}

/// `[listen]`; also `"switchboard": { "listen": ... }` in `.mcp.json`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    #[serde(default)]
    pub(crate) http: RawHttpListen,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) allowed_hosts: Option<Vec<String>>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) header_read_timeout_ms: Option<u64>,
    pub(crate) body_read_timeout_ms: Option<u64>,
    pub(crate) max_connections_per_client: Option<u64>,
    pub(crate) max_sessions_per_client: Option<u64>,
    pub(crate) metrics_allowed_hosts: Option<Vec<String>>,
}

/// `listen.http`: an address, or `false` (JSON: also `null`) to disable HTTP.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) enum RawHttpListen {
    /// Not written: use the default address.
    #[default]
    Default,
    Disabled,
    Address(SocketAddr),
}

impl<'de> Deserialize<'de> for RawHttpListen {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HttpVisitor;

        impl<'de> de::Visitor<'de> for HttpVisitor {
            type Value = RawHttpListen;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter
                    .write_str("a socket address like \"127.0.0.1:8931\", or false to disable HTTP")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                value
                    .parse()
                    .map(RawHttpListen::Address)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
                Ok(if value {
                    RawHttpListen::Default
                } else {
                    RawHttpListen::Disabled
                })
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawHttpListen::Disabled)
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawHttpListen::Disabled)
            }
        }

        deserializer.deserialize_any(HttpVisitor)
    }
}

/// `[servers.NAME]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNativeServer {
    pub(crate) transport: Option<RawTransport>,
    pub(crate) command: Option<String>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) env: Option<UniqueMap<String>>,
    pub(crate) cwd: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) headers: Option<UniqueMap<String>>,
    pub(crate) oauth: Option<Table<RawOAuth>>,
    pub(crate) era: Option<RawEra>,
    pub(crate) request_timeout_ms: Option<u64>,
    pub(crate) enabled: Option<bool>,
    pub(crate) lazy: Option<bool>,
    pub(crate) required: Option<bool>,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) sharing: Option<crate::policy::RawSharing>,
    pub(crate) pool: Option<Table<crate::policy::RawPool>>,
    pub(crate) health: Option<Table<crate::policy::RawHealth>>,
    pub(crate) breaker: Option<Table<crate::policy::RawBreaker>>,
    pub(crate) limits: Option<Table<crate::policy::RawLimits>>,
    pub(crate) restart_backoff_ms: Option<u64>,
    pub(crate) restart_backoff_max_ms: Option<u64>,
    pub(crate) retry_backoff_ms: Option<u64>,
    pub(crate) retry_backoff_max_ms: Option<u64>,
    pub(crate) timeout_reset_on_progress: Option<bool>,
    pub(crate) max_total_timeout_ms: Option<u64>,
    pub(crate) read_only_retries: Option<u32>,
    pub(crate) trust_annotations: Option<bool>,
    pub(crate) cache_read_only_ms: Option<u64>,
    pub(crate) validate: Option<bool>,
    pub(crate) pin: Option<crate::policy::RawPin>,
    pub(crate) tools: Option<UniqueMap<Table<crate::policy::RawTool>>>,
    pub(crate) tenants: Option<UniqueMap<Table<crate::tenants::RawTenantCredentials>>>,
    pub(crate) sandbox: Option<Table<crate::sandbox::RawSandbox>>,
    pub(crate) group: Option<String>,
    pub(crate) cluster: Option<ClusterMode>,
}

/// `cluster = "..."` of a server: how it runs when several replicas share a `[cluster]`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Every replica runs its own instances (the default).
    #[default]
    Local,
    /// One replica of the cluster runs the server, under a lease in Redis; the others
    /// forward its calls to that replica (stdio servers with `sharing = "shared"` only).
    Owned,
}

/// `transport = "..."` in the native format.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawTransport {
    Stdio,
    Http,
    Sse,
}

impl RawTransport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
            Self::Sse => "sse",
        }
    }
}

/// `era = "..."`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawEra {
    Auto,
    Legacy,
    Modern,
}

/// `.mcp.json`. Hosts keep their own settings beside `mcpServers` (Claude Desktop's
/// `claude_desktop_config.json`): other keys are collected for a warning, not denied.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct RawMcpJson {
    #[serde(rename = "mcpServers", default)]
    pub(crate) mcp_servers: UniqueMap<Table<RawMcpServer>>,
    #[serde(default)]
    pub(crate) switchboard: Table<RawSwitchboardSection>,
    #[serde(flatten)]
    pub(crate) unknown: BTreeMap<String, IgnoredAny>,
}

/// The optional top-level `"switchboard"` object of `.mcp.json`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSwitchboardSection {
    #[serde(default)]
    pub(crate) gateway: Table<RawGateway>,
    #[serde(default)]
    pub(crate) listen: Table<RawListen>,
}

/// `[servers.NAME.oauth]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    pub(crate) client_metadata_url: Option<String>,
    /// The grant: `authorization_code` (default), `client_credentials`, `jwt_bearer`,
    /// `enterprise`.
    pub(crate) grant: Option<String>,
    /// `private_key_jwt` client authentication (RFC 7523): a PKCS#8 PEM key, inline or
    /// in a file, and its JWS algorithm (default `ES256`).
    pub(crate) private_key: Option<String>,
    pub(crate) private_key_file: Option<String>,
    pub(crate) signing_algorithm: Option<String>,
    /// DPoP-bound tokens (RFC 9449).
    pub(crate) dpop: Option<bool>,
    /// Scopes requested by the non-interactive grants.
    pub(crate) scope: Option<String>,
    /// `jwt_bearer`: the workload's JWT, inline or in a (rotated) file.
    pub(crate) assertion: Option<String>,
    pub(crate) assertion_file: Option<String>,
    /// `enterprise`: the identity provider's token endpoint, this client there, and the
    /// ID token exchanged (inline or in a file).
    pub(crate) idp_token_endpoint: Option<String>,
    pub(crate) idp_client_id: Option<String>,
    pub(crate) idp_client_secret: Option<String>,
    pub(crate) id_token: Option<String>,
    pub(crate) id_token_file: Option<String>,
}

/// `"mcpServers": { "NAME": ... }`, with the keys the popular hosts write (Claude
/// Desktop/Code, Cursor, Cline, Roo Code, VS Code, Gemini CLI). Keys no host gives a
/// meaning switchboard could honour are collected for a warning, not denied.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct RawMcpServer {
    #[serde(rename = "type")]
    pub(crate) kind: Option<RawMcpType>,
    /// Cline's older spelling of `type`.
    #[serde(rename = "transportType")]
    pub(crate) transport_type: Option<RawMcpType>,
    pub(crate) command: Option<String>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) env: Option<UniqueMap<String>>,
    pub(crate) cwd: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) headers: Option<UniqueMap<String>>,
    pub(crate) disabled: Option<bool>,
    /// Accepted because clients write it; never used.
    #[allow(dead_code, reason = "read only to accept the key")]
    pub(crate) description: Option<IgnoredAny>,
    /// Seconds up to [`RawMcpServer::TIMEOUT_SECONDS_UP_TO`] (Cline, Roo Code),
    /// milliseconds above (Gemini CLI).
    pub(crate) timeout: Option<u64>,
    /// Cline: tools approved without asking.
    #[serde(rename = "autoApprove")]
    pub(crate) auto_approve: Option<Vec<String>>,
    /// Roo Code: tools approved without asking.
    #[serde(rename = "alwaysAllow")]
    pub(crate) always_allow: Option<Vec<String>>,
    #[serde(flatten)]
    pub(crate) unknown: BTreeMap<String, IgnoredAny>,
}

impl RawMcpServer {
    /// The largest `timeout` read as seconds: Roo Code's maximum (an hour). A larger
    /// value would be over an hour in seconds, so it is read as milliseconds.
    pub(crate) const TIMEOUT_SECONDS_UP_TO: u64 = 3600;
}

/// `"type": "..."` in `.mcp.json`, with the spellings different clients use.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawMcpType {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "http", alias = "streamable-http", alias = "streamableHttp")]
    Http,
    #[serde(rename = "sse")]
    Sse,
}

impl From<RawMcpType> for RawTransport {
    fn from(kind: RawMcpType) -> Self {
        match kind {
            RawMcpType::Stdio => Self::Stdio,
            RawMcpType::Http => Self::Http,
            RawMcpType::Sse => Self::Sse,
        }
    }
}

/// A struct that must be written as a table / object.
///
/// serde's derived structs also accept a sequence of field values (`[]` would be a
/// valid empty config); this wrapper only offers the map form, and its type error
/// says "table" instead of the Rust struct name.
#[derive(Debug, Default)]
pub(crate) struct Table<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for TableVisitor<T> {
            type Value = Table<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table (an object in JSON)")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(access)).map(Table)
            }
        }

        deserializer.deserialize_map(TableVisitor(PhantomData))
    }
}

/// A string-keyed map that rejects duplicate keys.
#[derive(Debug)]
pub(crate) struct UniqueMap<V>(pub(crate) BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> de::Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table (an object in JSON)")
            }

            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((key, value)) = access.next_entry::<String, V>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
