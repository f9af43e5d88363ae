//! The runtime configuration: validated values only, no file syntax.
//!
//! Everything here was checked by `validate`; holders of a [`Config`] never
//! need to re-check names, URLs or bounds.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::name::ServerName;
use crate::secret::Secret;

/// A complete, validated gateway configuration.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Config {
    /// Gateway-wide behaviour.
    pub gateway: GatewaySettings,
    /// The downstream HTTP listener.
    pub listen: ListenSettings,
    /// Upstream servers, in name order so iteration is deterministic.
    pub servers: BTreeMap<ServerName, ServerSpec>,
    /// Who may call what (`[access]`); `None`: no access control (anyone who reaches a
    /// face may call everything, as without the section).
    pub access: Option<crate::access::AccessSettings>,
    /// The tamper-evident audit log (`[audit]`); `None`: no audit step.
    pub audit: Option<crate::audit::AuditSettings>,
    /// What is removed from results, and whether poisoned tools are hidden
    /// (`[redaction]`); `None`: results pass unchanged.
    pub redaction: Option<crate::redaction::RedactionSettings>,
    /// The capability registry's history bounds, drift webhook and list TTL
    /// (`[registry]`; defaults without it).
    pub registry: crate::registry::RegistrySettings,
    /// Approval gates (`[approvals]`); `None`: no call waits for approval.
    pub approvals: Option<crate::approvals::ApprovalSettings>,
    /// The key of the secrets stored in the embedded database (`[secrets]`); `None`: no
    /// secret store (`${secret:NAME}` references cannot be resolved).
    pub secrets: Option<crate::vault::SecretsSettings>,
    /// OpenTelemetry traces over OTLP (`[telemetry]`); `None`: nothing traced, at no cost.
    /// Read at start only (a reload does not change it).
    pub telemetry: Option<crate::telemetry::TelemetrySettings>,
    /// Several replicas over one Redis (`[cluster]`); `None`: one process, embedded store.
    /// Read at start only.
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// The router agent's model endpoint (`[agent]`); `None`: no agent (`/query` says so).
    pub agent: Option<crate::agent::AgentSettings>,
    /// Semantic ranking for tool search (`[search]`); `None`: lexical search only. Read
    /// at start only.
    pub search: Option<crate::search::SearchSettings>,
    /// Watched sources of further servers (`[[discovery]]`); empty: none. Read at start
    /// only (what the sources hold is hot-loaded).
    pub discovery: Vec<crate::discovery::DiscoverySource>,
    /// Version rollouts (`[rollouts.NAME]`), by logical name; empty without any.
    pub rollouts: BTreeMap<ServerName, crate::rollouts::Rollout>,
    /// Bounds of orchestration scripts and batches (`[scripts]`; defaults without it).
    /// Read at start only.
    pub scripts: crate::scripts::ScriptSettings,
    /// Where this configuration was read from.
    pub source: ConfigSource,
    /// What was ignored (unknown keys other hosts write into `.mcp.json`), for the log.
    pub warnings: Vec<crate::ConfigWarning>,
}

/// Gateway-wide behaviour (`[gateway]`).
#[derive(Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Name the gateway reports in `serverInfo`.
    pub name: String,
    /// Single-upstream mode: names are forwarded without a server prefix.
    /// Only valid with exactly one configured server.
    pub passthrough: bool,
    /// Bound for one JSON-RPC message: a stdio line, an HTTP body, an upstream response.
    pub max_message_bytes: usize,
    /// Default deadline for one forwarded request.
    pub request_timeout: Duration,
    /// Deadline for the era probe (`server/discover`) sent to stdio upstreams.
    pub probe_timeout: Duration,
    /// Deadline for starting and initializing an upstream.
    pub connect_timeout: Duration,
    /// HMAC key for MRTR `requestState`; `None` means a random key per process.
    pub state_secret: Option<Secret<String>>,
    /// Bearer token of the `/admin` API; `None` disables the API.
    pub admin_token: Option<Secret<String>>,
    /// Directory of the embedded store (servers registered at runtime, last known
    /// catalogs); `None` keeps that state in memory only.
    pub state_dir: Option<PathBuf>,
    /// How long a replaced server instance may finish its calls before it is stopped.
    pub drain_timeout: Duration,
    /// Meta-tools offered to agents (`list_servers`, `search_tools`, `load_server`,
    /// `reload_server`, `unload_server`, `call`, `install_server`, `set_secret`, `run`,
    /// `batch`); empty means none.
    pub meta_tools: Vec<String>,
    /// Whether a client that does not say (`/mcp?meta_tools=on|off`, `switchboard stdio
    /// --meta-tools on|off`) sees the meta-tools (default: no).
    pub meta_tools_by_default: bool,
    /// Whether `install_server` may install packages.
    pub allow_install: bool,
    /// Programs (exact names or paths) that `load_server` may run from an agent's
    /// definition; empty means it only starts servers that are already defined.
    pub allow_commands: Vec<String>,
    /// How a client that does not choose (`/mcp?tools=search|catalog`, `switchboard stdio
    /// --tools search|catalog`) sees the tools: the whole catalog (default), or meta mode.
    pub tools: ToolsMode,
    /// Share (in percent) of a query's information a tool must match to be found by tool
    /// search (`search_threshold = 0.1` in the file).
    pub search_threshold_percent: u8,
}

/// How a client sees the tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ToolsMode {
    /// Every tool it may use, in `tools/list` (the default).
    #[default]
    Catalog,
    /// Meta mode: `search_tools`, `call_tool` and `select_tools`, plus the tools it selected.
    Search,
}

impl ToolsMode {
    /// `catalog` or `search`.
    pub fn parse(value: &str) -> Result<ToolsMode, String> {
        match value {
            "catalog" => Ok(ToolsMode::Catalog),
            "search" => Ok(ToolsMode::Search),
            other => Err(format!("expected catalog or search, not `{other}`")),
        }
    }
}

impl GatewaySettings {
    /// Default for [`GatewaySettings::name`].
    pub const DEFAULT_NAME: &'static str = "switchboard";
    /// Default for [`GatewaySettings::max_message_bytes`]: 16 MiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Default for [`GatewaySettings::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default for [`GatewaySettings::probe_timeout`].
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default for [`GatewaySettings::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`GatewaySettings::drain_timeout`].
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The meta-tools that exist.
    pub const META_TOOLS: [&'static str; 10] = [
        "list_servers",
        "search_tools",
        "load_server",
        "reload_server",
        "unload_server",
        "call",
        "install_server",
        "set_secret",
        "run",
        "batch",
    ];
    /// Default for [`GatewaySettings::search_threshold_percent`].
    pub const DEFAULT_SEARCH_THRESHOLD_PERCENT: u8 = 10;
    /// Shortest accepted `state_secret`, in bytes.
    pub const MIN_STATE_SECRET_BYTES: usize = 16;
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            name: Self::DEFAULT_NAME.to_owned(),
            passthrough: false,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            state_secret: None,
            admin_token: None,
            state_dir: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            meta_tools: Vec::new(),
            meta_tools_by_default: false,
            allow_install: false,
            allow_commands: Vec::new(),
            tools: ToolsMode::Catalog,
            search_threshold_percent: Self::DEFAULT_SEARCH_THRESHOLD_PERCENT,
        }
    }
}

// Hand-written to keep the log line short; the secrets print as redactions anyway.
impl fmt::Debug for GatewaySettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("GatewaySettings")
            .field("name", &self.name)
            .field("passthrough", &self.passthrough)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("probe_timeout", &self.probe_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("state_secret", &self.state_secret)
            .field("admin_token", &self.admin_token)
            .finish()
    }
}

/// The downstream HTTP listener (`[listen]`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ListenSettings {
    /// Address for the Streamable HTTP endpoint; `None` disables HTTP.
    /// `switchboard serve --listen` overrides it.
    pub http: Option<SocketAddr>,
    /// Exact `Origin` values allowed besides the localhost ones.
    pub allowed_origins: Vec<String>,
    /// `Host` header values allowed besides `localhost`, `127.0.0.1` and `[::1]` (any port).
    pub allowed_hosts: Vec<String>,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Time a connection has to send a request's headers, counted from the moment it
    /// waits for them: so it also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Time a request has to send its whole body once its headers are in (408 after).
    pub body_read_timeout: Duration,
    /// Open connections one client address may hold; more are closed at once.
    pub max_connections_per_client: usize,
    /// Legacy sessions one client address may hold; its oldest idle one is shed for a new
    /// one.
    pub max_sessions_per_client: usize,
    /// `Host` values allowed on `/metrics` only, besides the ones `/mcp` allows (for
    /// scrapers that reach the gateway by another name); `"*"` allows any.
    pub metrics_allowed_hosts: Vec<String>,
}

impl ListenSettings {
    /// Default for [`ListenSettings::http`]: `127.0.0.1:8931`.
    pub const DEFAULT_HTTP: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8931));
    /// Default for [`ListenSettings::max_body_bytes`]: 4 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// Default for [`ListenSettings::header_read_timeout`]: 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`ListenSettings::body_read_timeout`]: 30 s.
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`ListenSettings::max_connections_per_client`]: 256.
    pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
    /// Default for [`ListenSettings::max_sessions_per_client`]: 1,000.
    pub const DEFAULT_MAX_SESSIONS_PER_CLIENT: usize = 1000;
}

impl Default for ListenSettings {
    fn default() -> Self {
        Self {
            http: Some(Self::DEFAULT_HTTP),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            max_connections_per_client: Self::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_sessions_per_client: Self::DEFAULT_MAX_SESSIONS_PER_CLIENT,
            metrics_allowed_hosts: Vec::new(),
        }
    }
}

/// One upstream server.
#[derive(Clone, PartialEq, Debug)]
pub struct ServerSpec {
    /// How to reach it.
    pub transport: TransportSpec,
    /// Which protocol era to speak.
    pub era: EraPreference,
    /// Per-server override of [`GatewaySettings::request_timeout`].
    pub request_timeout: Option<Duration>,
    /// Disabled servers stay in the config (so reload sees them) but are not started.
    pub enabled: bool,
    /// Dormant until first called: listed from the last known catalog, started on demand.
    pub lazy: bool,
    /// `/readyz` reports not ready while this server is not ready (never with `lazy`).
    pub required: bool,
    /// Stop the server after this long without calls (the next call starts it again).
    pub idle_timeout: Option<Duration>,
    /// Sharing, pools, health, breaker, limits, timeouts and retries.
    pub policy: crate::policy::ServerPolicy,
    /// Tools the host file approves without asking (`.mcp.json` `autoApprove` /
    /// `alwaysAllow`), kept for an approval policy; nothing enforces it yet.
    pub auto_approve: Vec<String>,
    /// Upstream credentials per tenant (`[servers.NAME.tenants.TENANT]`), injected into the
    /// instance started for that tenant; only on `per_tenant` servers.
    pub tenants: BTreeMap<String, crate::tenants::TenantCredentials>,
    /// The failover group this server belongs to (`group = "NAME"`): the group's common
    /// tools are listed once, as `NAME__tool`, and each call goes to one member.
    pub group: Option<String>,
    /// How the server runs when several replicas share a `[cluster]`: on every replica
    /// (`local`, the default), or once per cluster (`owned`: one replica holds a lease in
    /// Redis and runs it, the others forward its calls there).
    pub cluster: crate::raw::ClusterMode,
}

impl ServerSpec {
    /// How to reach the server on behalf of `tenant`: its transport with that tenant's
    /// credentials laid over the server's own. The server's own transport for a tenant
    /// without credentials of its own, and for `None` (callers without a tenant, the
    /// gateway's own requests).
    pub fn transport_for(&self, tenant: Option<&str>) -> std::borrow::Cow<'_, TransportSpec> {
        match tenant.and_then(|tenant| self.tenants.get(tenant)) {
            Some(credentials) => std::borrow::Cow::Owned(credentials.apply(&self.transport)),
            None => std::borrow::Cow::Borrowed(&self.transport),
        }
    }

    /// The deadline for one request to this server, given the gateway default.
    pub fn effective_request_timeout(&self, gateway: &GatewaySettings) -> Duration {
        self.request_timeout.unwrap_or(gateway.request_timeout)
    }
}

/// Static OAuth client information for a protected HTTP upstream. The gateway holds it;
/// no client of the gateway ever sees it.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct OAuthClient {
    /// A client id registered in advance with the authorization server.
    pub client_id: Option<String>,
    /// Its secret (confidential client, `client_secret_basic`); `None` for a public client.
    pub client_secret: Option<Secret<String>>,
    /// An `https://` URL of a Client ID Metadata Document that identifies this client.
    pub client_metadata_url: Option<String>,
    /// How tokens are obtained (`grant`).
    pub grant: OAuthGrant,
    /// `private_key_jwt` client authentication (RFC 7523 section 2.2): the key, used
    /// instead of `client_secret`.
    pub private_key: Option<SigningKey>,
    /// Request DPoP-bound tokens and present them with DPoP proofs (RFC 9449).
    pub dpop: bool,
    /// Scopes requested by the non-interactive grants (space-separated).
    pub scope: Option<String>,
}

impl OAuthClient {
    /// Every secret value, for `${secret:NAME}` resolution.
    pub fn secrets_mut(&mut self) -> Vec<&mut Secret<String>> {
        let mut values: Vec<&mut Secret<String>> = self.client_secret.iter_mut().collect();
        if let Some(SigningKey {
            pem: CredentialSource::Inline(pem),
            ..
        }) = &mut self.private_key
        {
            values.push(pem);
        }
        match &mut self.grant {
            OAuthGrant::JwtBearer { assertion } => values.extend(assertion.inline_mut()),
            OAuthGrant::Enterprise {
                idp_client_secret,
                id_token,
                ..
            } => {
                values.extend(idp_client_secret.iter_mut());
                values.extend(id_token.inline_mut());
            }
            OAuthGrant::AuthorizationCode | OAuthGrant::ClientCredentials => {}
        }
        values
    }
}

/// How the gateway obtains tokens for a protected upstream.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub enum OAuthGrant {
    /// The authorization code grant with PKCE (a headless user agent).
    #[default]
    AuthorizationCode,
    /// The client credentials grant (OAuth 2.1 section 4.2).
    ClientCredentials,
    /// The JWT bearer grant (RFC 7523 section 2.1) with a workload identity token.
    JwtBearer {
        /// The workload's JWT.
        assertion: CredentialSource,
    },
    /// Enterprise-managed authorization: token exchange (RFC 8693) of an ID token for an
    /// identity assertion grant at the identity provider, then the JWT bearer grant.
    Enterprise {
        /// The identity provider's token endpoint.
        idp_token_endpoint: String,
        /// This client at the identity provider.
        idp_client_id: Option<String>,
        /// Its secret there (`client_secret_basic`).
        idp_client_secret: Option<Secret<String>>,
        /// The ID token exchanged.
        id_token: CredentialSource,
    },
}

/// A credential given inline (a secret) or as a file read at each use (rotated tokens).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CredentialSource {
    /// The value itself.
    Inline(Secret<String>),
    /// A file holding it (surrounding whitespace ignored).
    File(PathBuf),
}

impl CredentialSource {
    fn inline_mut(&mut self) -> Option<&mut Secret<String>> {
        match self {
            CredentialSource::Inline(value) => Some(value),
            CredentialSource::File(_) => None,
        }
    }

    /// The current value (a file is read now).
    pub fn read(&self) -> std::io::Result<Secret<String>> {
        match self {
            CredentialSource::Inline(value) => Ok(value.clone()),
            CredentialSource::File(path) => {
                let text = std::fs::read_to_string(path)?;
                Ok(Secret::new(text.trim().to_owned()))
            }
        }
    }
}

/// A private key signing client assertions.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SigningKey {
    /// PKCS#8 PEM.
    pub pem: CredentialSource,
    /// The JWS algorithm: `ES256`, `ES384`, `RS256`, `PS256` or `EdDSA`.
    pub algorithm: String,
}

/// How an upstream is reached. `${VAR}` references are already expanded. Environment and
/// header values are [`Secret`]s (they usually carry credentials): `Debug` shows their
/// names only.
#[derive(Clone, PartialEq, Debug)]
pub enum TransportSpec {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// Program to run; a bare name is looked up on `PATH` by the spawner.
        command: String,
        /// Arguments, in order.
        args: Vec<String>,
        /// Extra environment variables for the child.
        env: BTreeMap<String, Secret<String>>,
        /// Working directory; `None` inherits the gateway's.
        cwd: Option<PathBuf>,
        /// Limits and isolation for the child's processes (`[servers.NAME.sandbox]`).
        sandbox: Option<crate::sandbox::SandboxSpec>,
    },
    /// Streamable HTTP (either era). `url` is an absolute `http://` or `https://` URL.
    Http {
        /// Endpoint URL.
        url: String,
        /// Extra request headers; names and values are valid HTTP header syntax.
        headers: BTreeMap<String, Secret<String>>,
        /// This client's registration with the server's authorization server, when it is
        /// not registered dynamically (`[servers.NAME.oauth]`).
        oauth: Option<OAuthClient>,
    },
    /// The deprecated 2024-11-05 HTTP+SSE transport. `url` is the SSE endpoint.
    Sse {
        /// SSE endpoint URL.
        url: String,
        /// Extra request headers; names and values are valid HTTP header syntax.
        headers: BTreeMap<String, Secret<String>>,
    },
}

impl TransportSpec {
    /// A short label: `stdio`, `http` or `sse`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::Http { .. } => "http",
            Self::Sse { .. } => "sse",
        }
    }
}

/// Which protocol era to speak to an upstream.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum EraPreference {
    /// Probe and pick.
    #[default]
    Auto,
    /// Initialize-handshake era (2025-11-25 and before).
    Legacy,
    /// Stateless era.
    Modern,
}

impl EraPreference {
    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        }
    }
}

impl fmt::Display for EraPreference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The syntax of a config file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ConfigFormat {
    /// `switchboard.toml`.
    #[default]
    Native,
    /// `.mcp.json` as written for Claude Desktop, Claude Code and Cursor.
    McpJson,
}

impl fmt::Display for ConfigFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Native => "switchboard TOML",
            Self::McpJson => ".mcp.json",
        })
    }
}

/// Where a [`Config`] came from.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ConfigSource {
    /// The file, if it was loaded from one.
    pub path: Option<PathBuf>,
    /// The syntax it was written in.
    pub format: ConfigFormat,
}

impl Config {
    /// The listen address used when the file does not set one.
    pub fn default_listen() -> SocketAddr {
        ListenSettings::DEFAULT_HTTP
    }

    /// Enabled servers, in name order.
    pub fn enabled_servers(&self) -> impl Iterator<Item = (&ServerName, &ServerSpec)> {
        self.servers.iter().filter(|(_, spec)| spec.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio(command: &str) -> ServerSpec {
        ServerSpec {
            transport: TransportSpec::Stdio {
                command: command.to_owned(),
                args: Vec::new(),
                env: BTreeMap::new(),
                cwd: None,
                sandbox: None,
            },
            era: EraPreference::Auto,
            request_timeout: None,
            enabled: true,
            lazy: false,
            required: false,
            idle_timeout: None,
            policy: crate::policy::ServerPolicy::default(),
            auto_approve: Vec::new(),
            tenants: BTreeMap::new(),
            group: None,
            cluster: Default::default(),
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let gateway = GatewaySettings::default();
        assert_eq!(gateway.name, "switchboard");
        assert!(!gateway.passthrough);
        assert_eq!(gateway.max_message_bytes, 16_777_216);
        assert_eq!(gateway.request_timeout, Duration::from_secs(60));
        assert_eq!(gateway.probe_timeout, Duration::from_secs(2));
        assert_eq!(gateway.connect_timeout, Duration::from_secs(30));
        assert_eq!(gateway.state_secret, None);
        // Safe defaults: agents steer nothing unless the operator says so.
        assert!(!gateway.meta_tools_by_default && !gateway.allow_install);
        assert!(gateway.meta_tools.is_empty() && gateway.allow_commands.is_empty());
        let listen = ListenSettings::default();
        assert_eq!(listen.http, Some("127.0.0.1:8931".parse().unwrap()));
        assert_eq!(Config::default_listen(), "127.0.0.1:8931".parse().unwrap());
        assert_eq!(listen.max_body_bytes, 4_194_304);
        assert!(listen.allowed_origins.is_empty() && listen.allowed_hosts.is_empty());
    }

    #[test]
    fn debug_redacts_the_state_secret() {
        let gateway = GatewaySettings {
            state_secret: Some(Secret::new("very-secret-hmac-key".to_owned())),
            admin_token: Some(Secret::new("admin-token-0123456789".to_owned())),
            ..GatewaySettings::default()
        };
        let debug = format!("{gateway:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(!debug.contains("admin-token"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn effective_timeout_prefers_the_server_override() {
        let gateway = GatewaySettings::default();
        let mut spec = stdio("a");
        assert_eq!(
            spec.effective_request_timeout(&gateway),
            Duration::from_secs(60)
        );
        spec.request_timeout = Some(Duration::from_millis(1500));
        assert_eq!(
            spec.effective_request_timeout(&gateway),
            Duration::from_millis(1500)
        );
    }
}
