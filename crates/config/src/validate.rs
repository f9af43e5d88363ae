//! Raw → validated: turns the `Raw*` file shapes into runtime settings.
//!
//! Both file formats funnel into one `ServerFields` shape so the transport rules
//! (stdio needs `command`, remote needs `url`, no mixing) live in one place. The
//! first problem found is returned, with the key path the user has to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::model::{
    EraPreference, GatewaySettings, ListenSettings, OAuthClient, ServerSpec, TransportSpec,
};
use crate::name::ServerName;
use crate::raw::{
    RawEra, RawGateway, RawHttpListen, RawListen, RawMcpJson, RawMcpServer, RawNative,
    RawNativeServer, RawTransport, Table, UniqueMap,
};
use crate::secret::Secret;

/// A validated document, before its source is attached.
#[derive(Debug)]
pub(crate) struct Validated {
    pub(crate) gateway: GatewaySettings,
    pub(crate) listen: ListenSettings,
    pub(crate) servers: BTreeMap<ServerName, ServerSpec>,
    /// Keys that were ignored.
    pub(crate) warnings: Vec<Problem>,
    pub(crate) access: Option<crate::access::AccessSettings>,
    pub(crate) audit: Option<crate::audit::AuditSettings>,
    pub(crate) redaction: Option<crate::redaction::RedactionSettings>,
    pub(crate) registry: crate::registry::RegistrySettings,
    pub(crate) approvals: Option<crate::approvals::ApprovalSettings>,
    pub(crate) secrets: Option<crate::vault::SecretsSettings>,
    pub(crate) telemetry: Option<crate::telemetry::TelemetrySettings>,
    pub(crate) cluster: Option<crate::cluster::ClusterSettings>,
    pub(crate) agent: Option<crate::agent::AgentSettings>,
    pub(crate) search: Option<crate::search::SearchSettings>,
    pub(crate) discovery: Vec<crate::discovery::DiscoverySource>,
    pub(crate) rollouts: BTreeMap<ServerName, crate::rollouts::Rollout>,
    pub(crate) scripts: crate::scripts::ScriptSettings,
}

/// How a format spells the keys that differ between formats.
struct Dialect {
    servers_key: &'static str,
    transport_key: &'static str,
    timeout_key: &'static str,
}

const NATIVE: Dialect = Dialect {
    servers_key: "servers",
    transport_key: "transport",
    timeout_key: "request_timeout_ms",
};

const MCP_JSON: Dialect = Dialect {
    servers_key: "mcpServers",
    transport_key: "type",
    timeout_key: "timeout",
};

/// One server as written, in either format.
struct ServerFields {
    transport: TransportFields,
    era: EraPreference,
    request_timeout_ms: Option<u64>,
    enabled: bool,
    lazy: bool,
    /// `required` (native format only).
    required: bool,
    idle_timeout_ms: Option<u64>,
    policy: crate::policy::RawPolicy,
    auto_approve: Vec<String>,
    /// `tenants` (native format only).
    tenants: Option<UniqueMap<Table<crate::tenants::RawTenantCredentials>>>,
    /// `group` (native format only).
    group: Option<String>,
    /// `cluster` (native format only).
    cluster: crate::raw::ClusterMode,
}

/// The keys that decide and describe the transport.
struct TransportFields {
    kind: Option<RawTransport>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    cwd: Option<String>,
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    oauth: Option<crate::raw::RawOAuth>,
    sandbox: Option<crate::sandbox::RawSandbox>,
}

impl From<RawNativeServer> for ServerFields {
    fn from(raw: RawNativeServer) -> Self {
        Self {
            transport: TransportFields {
                kind: raw.transport,
                command: raw.command,
                args: raw.args,
                env: raw.env.map(|map| map.0),
                cwd: raw.cwd,
                url: raw.url,
                headers: raw.headers.map(|map| map.0),
                oauth: raw.oauth.map(|table| table.0),
                sandbox: raw.sandbox.map(|table| table.0),
            },
            era: match raw.era {
                None | Some(RawEra::Auto) => EraPreference::Auto,
                Some(RawEra::Legacy) => EraPreference::Legacy,
                Some(RawEra::Modern) => EraPreference::Modern,
            },
            request_timeout_ms: raw.request_timeout_ms,
            enabled: raw.enabled.unwrap_or(true),
            lazy: raw.lazy.unwrap_or(false),
            required: raw.required.unwrap_or(false),
            idle_timeout_ms: raw.idle_timeout_ms,
            policy: crate::policy::RawPolicy {
                sharing: raw.sharing,
                pool: raw.pool,
                health: raw.health,
                breaker: raw.breaker,
                limits: raw.limits,
                restart_backoff_ms: raw.restart_backoff_ms,
                restart_backoff_max_ms: raw.restart_backoff_max_ms,
                retry_backoff_ms: raw.retry_backoff_ms,
                retry_backoff_max_ms: raw.retry_backoff_max_ms,
                timeout_reset_on_progress: raw.timeout_reset_on_progress,
                max_total_timeout_ms: raw.max_total_timeout_ms,
                read_only_retries: raw.read_only_retries,
                trust_annotations: raw.trust_annotations,
                cache_read_only_ms: raw.cache_read_only_ms,
                validate: raw.validate,
                pin: raw.pin,
                tools: raw.tools,
            },
            auto_approve: Vec::new(),
            tenants: raw.tenants,
            group: raw.group,
            cluster: raw.cluster.unwrap_or_default(),
        }
    }
}

/// One `.mcp.json` entry; keys without a meaning here become `warnings`.
fn mcp_server(
    raw: RawMcpServer,
    path: &KeyPath,
    warnings: &mut Vec<Problem>,
) -> Result<ServerFields, Problem> {
    let kind = match (raw.kind, raw.transport_type) {
        (Some(kind), Some(other)) if kind != other => {
            return Err(Problem::new(
                path.key("transportType"),
                "conflicts with `type`: write one of the two",
            ));
        }
        (kind, other) => kind.or(other),
    };
    for key in raw.unknown.keys() {
        warnings.push(Problem::new(
            path.key(key),
            "ignored: switchboard does not use this key",
        ));
    }
    let mut auto_approve: Vec<String> = Vec::new();
    for tool in raw
        .auto_approve
        .into_iter()
        .chain(raw.always_allow)
        .flatten()
    {
        if !auto_approve.contains(&tool) {
            auto_approve.push(tool);
        }
    }
    let request_timeout_ms = raw.timeout.map(|timeout| {
        if timeout <= RawMcpServer::TIMEOUT_SECONDS_UP_TO {
            timeout * 1000
        } else {
            timeout
        }
    });
    Ok(ServerFields {
        transport: TransportFields {
            kind: kind.map(RawTransport::from),
            command: raw.command,
            args: raw.args,
            env: raw.env.map(|map| map.0),
            cwd: raw.cwd,
            url: raw.url,
            headers: raw.headers.map(|map| map.0),
            oauth: None,
            sandbox: None,
        },
        era: EraPreference::Auto,
        request_timeout_ms,
        enabled: !raw.disabled.unwrap_or(false),
        lazy: false,
        required: false,
        idle_timeout_ms: None,
        policy: crate::policy::RawPolicy::default(),
        auto_approve,
        tenants: None,
        group: None,
        cluster: crate::raw::ClusterMode::Local,
    })
}

/// Validates a `switchboard.toml` document.
pub(crate) fn native(raw: RawNative, env: EnvLookup<'_>) -> Result<Validated, Problem> {
    let root = KeyPath::root();
    let servers = raw
        .servers
        .0
        .into_iter()
        .map(|(name, server)| (name, ServerFields::from(server.0)))
        .collect();
    let access = raw
        .access
        .map(|table| crate::access::validate(table.0, &root.key("access"), env))
        .transpose()?;
    let audit = raw
        .audit
        .map(|table| crate::audit::validate(table.0, &root.key("audit"), env))
        .transpose()?;
    let redaction = raw
        .redaction
        .map(|table| crate::redaction::validate(table.0, &root.key("redaction"), env))
        .transpose()?;
    let registry = raw
        .registry
        .map(|table| crate::registry::validate(table.0, &root.key("registry"), env))
        .transpose()?
        .unwrap_or_default();
    let approvals = raw
        .approvals
        .map(|table| crate::approvals::validate(table.0, &root.key("approvals"), env))
        .transpose()?;
    let secrets = raw
        .secrets
        .map(|table| crate::vault::validate(table.0, &root.key("secrets"), env))
        .transpose()?;
    let telemetry = raw
        .telemetry
        .map(|table| crate::telemetry::validate(table.0, &root.key("telemetry"), env))
        .transpose()?;
    let cluster = raw
        .cluster
        .map(|table| crate::cluster::validate(table.0, &root.key("cluster"), env))
        .transpose()?;
    let agent = raw
        .agent
        .map(|table| crate::agent::validate(table.0, &root.key("agent"), env))
        .transpose()?;
    let search = match raw.search {
        Some(table) => crate::search::validate(table.0, &root.key("search"), env)?,
        None => None,
    };
    let discovery = raw
        .discovery
        .map(|entries| crate::discovery::validate_all(entries, &root.key("discovery"), env))
        .transpose()?
        .unwrap_or_default();
    let scripts = raw
        .scripts
        .map(|table| crate::scripts::validate(table.0, &root.key("scripts")))
        .transpose()?
        .unwrap_or_default();
    let mut validated = document(raw.gateway.0, raw.listen.0, servers, &root, &NATIVE, env)?;
    if let Some(access) = &access {
        known_tenants(&validated.servers, access)?;
    }
    let declared: Option<std::collections::BTreeSet<String>> = access
        .as_ref()
        .map(|access| access.tenants.keys().cloned().collect());
    validated.rollouts = crate::rollouts::validate(
        raw.rollouts
            .0
            .into_iter()
            .map(|(name, table)| (name, table.0))
            .collect(),
        &root.key("rollouts"),
        &validated.servers,
        declared.as_ref(),
    )?;
    validated.access = access;
    validated.audit = audit;
    validated.redaction = redaction;
    validated.registry = registry;
    validated.approvals = approvals;
    validated.secrets = secrets;
    validated.telemetry = telemetry;
    if let Some(cluster) = &cluster
        && cluster.secret.is_none()
        && let Some((name, _)) = validated
            .servers
            .iter()
            .find(|(_, spec)| spec.cluster == crate::raw::ClusterMode::Owned)
    {
        return Err(Problem::new(
            root.key("cluster").key("secret"),
            format!(
                "is required: server `{name}` is `cluster = \"owned\"`, and replicas forward its calls to its owner over a channel authenticated with this secret"
            ),
        ));
    }
    validated.cluster = cluster;
    validated.agent = agent;
    validated.search = search;
    validated.discovery = discovery;
    validated.scripts = scripts;
    Ok(validated)
}

/// Credentials for a tenant `[access.tenants]` does not declare would never be used (a
/// principal naming an unknown tenant is refused): a typo, reported with its key path.
fn known_tenants(
    servers: &BTreeMap<ServerName, ServerSpec>,
    access: &crate::access::AccessSettings,
) -> Result<(), Problem> {
    if access.tenants.is_empty() {
        return Ok(());
    }
    for (name, spec) in servers {
        if let Some(tenant) = spec
            .tenants
            .keys()
            .find(|tenant| !access.tenants.contains_key(*tenant))
        {
            return Err(Problem::new(
                KeyPath::root()
                    .key(NATIVE.servers_key)
                    .key(name.as_str())
                    .key("tenants")
                    .key(tenant),
                format!("unknown tenant `{tenant}` (not in access.tenants)"),
            ));
        }
    }
    Ok(())
}

/// Validates a `.mcp.json` document.
pub(crate) fn mcp_json(raw: RawMcpJson, env: EnvLookup<'_>) -> Result<Validated, Problem> {
    let section = KeyPath::root().key("switchboard");
    let mut warnings: Vec<Problem> = raw
        .unknown
        .keys()
        .map(|key| {
            Problem::new(
                KeyPath::root().key(key),
                "ignored: switchboard reads only `mcpServers` and `switchboard`",
            )
        })
        .collect();
    let servers_path = KeyPath::root().key(MCP_JSON.servers_key);
    let servers = raw
        .mcp_servers
        .0
        .into_iter()
        .map(|(name, server)| {
            let fields = mcp_server(server.0, &servers_path.key(&name), &mut warnings)?;
            Ok((name, fields))
        })
        .collect::<Result<_, Problem>>()?;
    let settings = raw.switchboard.0;
    let mut validated = document(
        settings.gateway.0,
        settings.listen.0,
        servers,
        &section,
        &MCP_JSON,
        env,
    )?;
    validated.warnings = warnings;
    Ok(validated)
}

/// `settings_path` is where `gateway` and `listen` live: the root, or `switchboard` in JSON.
fn document(
    raw_gateway: RawGateway,
    raw_listen: RawListen,
    raw_servers: Vec<(String, ServerFields)>,
    settings_path: &KeyPath,
    dialect: &Dialect,
    env: EnvLookup<'_>,
) -> Result<Validated, Problem> {
    let gateway_path = settings_path.key("gateway");
    let gateway = gateway(raw_gateway, &gateway_path, env)?;
    let listen = listen(raw_listen, &settings_path.key("listen"))?;

    let servers_path = KeyPath::root().key(dialect.servers_key);
    let mut servers = BTreeMap::new();
    for (name, fields) in raw_servers {
        let path = servers_path.key(&name);
        let name =
            ServerName::new(name).map_err(|error| Problem::new(path.clone(), error.to_string()))?;
        servers.insert(name, server(fields, &path, dialect, env)?);
    }
    groups_apart(&servers, &servers_path)?;

    if gateway.passthrough && servers.len() != 1 {
        return Err(Problem::new(
            gateway_path.key("passthrough"),
            format!(
                "passthrough mode needs exactly one server, found {}",
                servers.len()
            ),
        ));
    }
    Ok(Validated {
        gateway,
        listen,
        servers,
        warnings: Vec::new(),
        access: None,
        audit: None,
        redaction: None,
        registry: Default::default(),
        approvals: None,
        secrets: None,
        telemetry: None,
        cluster: None,
        agent: None,
        search: None,
        discovery: Vec::new(),
        rollouts: BTreeMap::new(),
        scripts: Default::default(),
    })
}

/// A failover group's name is the prefix its tools are listed under, so it must not be a
/// server's name too (every member exists: membership is declared on the member).
fn groups_apart(servers: &BTreeMap<ServerName, ServerSpec>, path: &KeyPath) -> Result<(), Problem> {
    for (name, spec) in servers {
        if let Some(group) = &spec.group
            && servers.keys().any(|other| other.as_str() == group)
        {
            return Err(Problem::new(
                path.key(name.as_str()).key("group"),
                format!(
                    "group `{group}` has the name of a server: group and server names share one namespace"
                ),
            ));
        }
    }
    Ok(())
}

fn gateway(
    raw: RawGateway,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<GatewaySettings, Problem> {
    let defaults = GatewaySettings::default();
    let name = match raw.name {
        Some(name) if name.trim().is_empty() => {
            return Err(Problem::new(path.key("name"), "must not be empty"));
        }
        Some(name) => name,
        None => defaults.name,
    };
    let state_secret = match raw.state_secret {
        None => None,
        Some(secret) => {
            let secret_path = path.key("state_secret");
            let secret = expanded(&secret, &secret_path, env)?;
            if secret.len() < GatewaySettings::MIN_STATE_SECRET_BYTES {
                return Err(Problem::new(
                    secret_path,
                    format!(
                        "must be at least {} bytes long (omit it for a random per-process key)",
                        GatewaySettings::MIN_STATE_SECRET_BYTES
                    ),
                ));
            }
            Some(Secret::new(secret))
        }
    };
    Ok(GatewaySettings {
        name,
        passthrough: raw.passthrough.unwrap_or(defaults.passthrough),
        max_message_bytes: byte_limit(
            raw.max_message_bytes,
            defaults.max_message_bytes,
            &path.key("max_message_bytes"),
        )?,
        request_timeout: timeout(
            raw.request_timeout_ms,
            defaults.request_timeout,
            &path.key("request_timeout_ms"),
        )?,
        probe_timeout: timeout(
            raw.probe_timeout_ms,
            defaults.probe_timeout,
            &path.key("probe_timeout_ms"),
        )?,
        connect_timeout: timeout(
            raw.connect_timeout_ms,
            defaults.connect_timeout,
            &path.key("connect_timeout_ms"),
        )?,
        state_secret,
        admin_token: match raw.admin_token {
            None => None,
            Some(token) => {
                let token_path = path.key("admin_token");
                let token = expanded(&token, &token_path, env)?;
                if token.len() < 16 {
                    return Err(Problem::new(token_path, "must be at least 16 bytes long"));
                }
                Some(Secret::new(token))
            }
        },
        state_dir: match raw.state_dir {
            None => None,
            Some(dir) => Some(expanded(&dir, &path.key("state_dir"), env)?.into()),
        },
        drain_timeout: timeout(
            raw.drain_timeout_ms,
            defaults.drain_timeout,
            &path.key("drain_timeout_ms"),
        )?,
        meta_tools: {
            let tools = raw.meta_tools.unwrap_or_default();
            for (index, tool) in tools.iter().enumerate() {
                if !GatewaySettings::META_TOOLS.contains(&tool.as_str()) {
                    return Err(Problem::new(
                        path.key("meta_tools").index(index),
                        format!(
                            "unknown meta-tool `{tool}`, expected one of {}",
                            GatewaySettings::META_TOOLS.join(", ")
                        ),
                    ));
                }
            }
            tools
        },
        meta_tools_by_default: raw
            .meta_tools_by_default
            .unwrap_or(defaults.meta_tools_by_default),
        allow_install: raw.allow_install.unwrap_or(false),
        allow_commands: {
            let commands = raw.allow_commands.unwrap_or_default();
            if let Some(index) = commands.iter().position(|c| c.trim().is_empty()) {
                return Err(Problem::new(
                    path.key("allow_commands").index(index),
                    "must name a program",
                ));
            }
            commands
        },
        tools: match raw.tools.as_deref() {
            None => defaults.tools,
            Some(value) => crate::model::ToolsMode::parse(value)
                .map_err(|reason| Problem::new(path.key("tools"), reason))?,
        },
        search_threshold_percent: match raw.search_threshold {
            None => defaults.search_threshold_percent,
            Some(value) if (0.0..=1.0).contains(&value) => (value * 100.0).round() as u8,
            Some(_) => {
                return Err(Problem::new(
                    path.key("search_threshold"),
                    "must be between 0 and 1",
                ));
            }
        },
    })
}

fn listen(raw: RawListen, path: &KeyPath) -> Result<ListenSettings, Problem> {
    let defaults = ListenSettings::default();
    let http = match raw.http {
        RawHttpListen::Default => defaults.http,
        RawHttpListen::Disabled => None,
        RawHttpListen::Address(address) => Some(address),
    };
    let allowed_origins = raw.allowed_origins.unwrap_or_default();
    for (index, origin) in allowed_origins.iter().enumerate() {
        check_origin(origin).map_err(|reason| {
            Problem::new(
                path.key("allowed_origins").index(index),
                format!(
                    "expected an origin like \"https://app.example.com\" \
                     (scheme://host[:port], no path or trailing slash), got {origin:?}: {reason}"
                ),
            )
        })?;
    }
    let allowed_hosts = raw.allowed_hosts.unwrap_or_default();
    for (index, host) in allowed_hosts.iter().enumerate() {
        check_host(host).map_err(|reason| {
            Problem::new(
                path.key("allowed_hosts").index(index),
                format!(
                    "expected a host name like \"gateway.internal\" (optionally with :port), \
                     got {host:?}: {reason}"
                ),
            )
        })?;
    }
    let metrics_allowed_hosts = raw.metrics_allowed_hosts.unwrap_or_default();
    for (index, host) in metrics_allowed_hosts.iter().enumerate() {
        if host == "*" {
            continue;
        }
        check_host(host).map_err(|reason| {
            Problem::new(
                path.key("metrics_allowed_hosts").index(index),
                format!(
                    "expected a host name like \"scraper.internal\" (optionally with :port) \
                     or \"*\", got {host:?}: {reason}"
                ),
            )
        })?;
    }
    Ok(ListenSettings {
        http,
        allowed_origins,
        allowed_hosts,
        max_body_bytes: byte_limit(
            raw.max_body_bytes,
            defaults.max_body_bytes,
            &path.key("max_body_bytes"),
        )?,
        header_read_timeout: timeout(
            raw.header_read_timeout_ms,
            defaults.header_read_timeout,
            &path.key("header_read_timeout_ms"),
        )?,
        body_read_timeout: timeout(
            raw.body_read_timeout_ms,
            defaults.body_read_timeout,
            &path.key("body_read_timeout_ms"),
        )?,
        max_connections_per_client: crate::policy::count(
            raw.max_connections_per_client,
            defaults.max_connections_per_client,
            &path.key("max_connections_per_client"),
        )?,
        max_sessions_per_client: crate::policy::count(
            raw.max_sessions_per_client,
            defaults.max_sessions_per_client,
            &path.key("max_sessions_per_client"),
        )?,
        metrics_allowed_hosts,
    })
}

fn server(
    fields: ServerFields,
    path: &KeyPath,
    dialect: &Dialect,
    env: EnvLookup<'_>,
) -> Result<ServerSpec, Problem> {
    let request_timeout = match fields.request_timeout_ms {
        None => None,
        Some(millis) => Some(positive_millis(millis, &path.key(dialect.timeout_key))?),
    };
    let idle_timeout = match fields.idle_timeout_ms {
        None => None,
        Some(millis) => Some(positive_millis(millis, &path.key("idle_timeout_ms"))?),
    };
    if fields.required && fields.lazy {
        return Err(Problem::new(
            path.key("required"),
            "a `lazy` server cannot be `required`: it is not started until its first call, so `/readyz` would never report ready",
        ));
    }
    if fields.required && !fields.enabled {
        return Err(Problem::new(
            path.key("required"),
            "a disabled server (`enabled = false`) cannot be `required`",
        ));
    }
    let group = fields
        .group
        .map(|group| {
            ServerName::new(group)
                .map(|name| name.as_str().to_owned())
                .map_err(|error| Problem::new(path.key("group"), error.to_string()))
        })
        .transpose()?;
    let transport = transport(fields.transport, path, dialect, env)?;
    let policy = crate::policy::validate(fields.policy, path)?;
    let tenants = crate::tenants::validate(fields.tenants, &transport, policy.sharing, path, env)?;
    if fields.cluster == crate::raw::ClusterMode::Owned {
        if !matches!(transport, crate::model::TransportSpec::Stdio { .. }) {
            return Err(Problem::new(
                path.key("cluster"),
                "`owned` applies to stdio servers only (an HTTP server is reachable from every replica already)",
            ));
        }
        if policy.sharing != crate::policy::Sharing::Shared {
            return Err(Problem::new(
                path.key("cluster"),
                "`owned` needs `sharing = \"shared\"`: one process for the whole cluster",
            ));
        }
        if group.is_some() {
            return Err(Problem::new(
                path.key("cluster"),
                "`owned` cannot be combined with `group`",
            ));
        }
    }
    Ok(ServerSpec {
        transport,
        era: fields.era,
        request_timeout,
        enabled: fields.enabled,
        lazy: fields.lazy,
        required: fields.required,
        idle_timeout,
        policy,
        auto_approve: fields.auto_approve,
        tenants,
        group,
        cluster: fields.cluster,
    })
}

fn transport(
    fields: TransportFields,
    path: &KeyPath,
    dialect: &Dialect,
    env: EnvLookup<'_>,
) -> Result<TransportSpec, Problem> {
    // `reason` ends up in messages so the user sees why a key is not allowed.
    let (kind, reason) = match (fields.kind, &fields.command, &fields.url) {
        (Some(kind), _, _) => (
            kind,
            format!("`{}` is \"{}\"", dialect.transport_key, kind.as_str()),
        ),
        (None, Some(_), Some(_)) => {
            return Err(Problem::new(
                path.clone(),
                "both `command` and `url` are set: a server is either stdio (`command`) \
                 or remote (`url`)",
            ));
        }
        (None, Some(_), None) => (RawTransport::Stdio, "inferred from `command`".to_owned()),
        (None, None, Some(_)) => (RawTransport::Http, "inferred from `url`".to_owned()),
        (None, None, None) => {
            return Err(Problem::new(
                path.clone(),
                "missing field `command` (for a stdio server) or `url` (for an http or sse server)",
            ));
        }
    };
    match kind {
        RawTransport::Stdio => stdio(fields, path, &reason, env),
        RawTransport::Http | RawTransport::Sse => remote(kind, fields, path, &reason, env),
    }
}

fn stdio(
    fields: TransportFields,
    path: &KeyPath,
    reason: &str,
    env: EnvLookup<'_>,
) -> Result<TransportSpec, Problem> {
    let not_allowed = |key: &str| {
        Problem::new(
            path.key(key),
            format!("not allowed for a stdio server ({reason})"),
        )
    };
    if fields.url.is_some() {
        return Err(not_allowed("url"));
    }
    if fields.headers.is_some() {
        return Err(not_allowed("headers"));
    }
    if fields.oauth.is_some() {
        return Err(not_allowed("oauth"));
    }
    let Some(raw_command) = fields.command else {
        return Err(Problem::new(
            path.clone(),
            format!("missing field `command`, required for a stdio server ({reason})"),
        ));
    };
    let command_path = path.key("command");
    let command = process_string(&raw_command, &command_path, env)?;
    if command.trim().is_empty() {
        return Err(Problem::new(command_path, "must not be empty"));
    }

    let args_path = path.key("args");
    let args = fields
        .args
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, arg)| process_string(arg, &args_path.index(index), env))
        .collect::<Result<Vec<_>, _>>()?;

    let child_env = child_env(fields.env.unwrap_or_default(), &path.key("env"), env)?;

    let cwd = match fields.cwd {
        None => None,
        Some(raw_cwd) => {
            let cwd_path = path.key("cwd");
            let cwd = process_string(&raw_cwd, &cwd_path, env)?;
            if cwd.is_empty() {
                return Err(Problem::new(
                    cwd_path,
                    "must not be empty (omit it to inherit)",
                ));
            }
            Some(PathBuf::from(cwd))
        }
    };
    let sandbox = match fields.sandbox {
        None => None,
        Some(raw) => Some(crate::sandbox::validate(
            raw,
            &path.key("sandbox"),
            &mut |value, key| process_string(value, key, env),
        )?),
    };
    Ok(TransportSpec::Stdio {
        command,
        args,
        env: child_env,
        cwd,
        sandbox,
    })
}

fn remote(
    kind: RawTransport,
    fields: TransportFields,
    path: &KeyPath,
    reason: &str,
    env: EnvLookup<'_>,
) -> Result<TransportSpec, Problem> {
    let article = if kind == RawTransport::Sse {
        "an sse"
    } else {
        "an http"
    };
    let not_allowed = |key: &str| {
        Problem::new(
            path.key(key),
            format!("not allowed for {article} server ({reason})"),
        )
    };
    if fields.command.is_some() {
        return Err(not_allowed("command"));
    }
    if fields.args.is_some() {
        return Err(not_allowed("args"));
    }
    if fields.env.is_some() {
        return Err(not_allowed("env"));
    }
    if fields.cwd.is_some() {
        return Err(not_allowed("cwd"));
    }
    if fields.sandbox.is_some() {
        return Err(not_allowed("sandbox"));
    }
    let Some(raw_url) = fields.url else {
        return Err(Problem::new(
            path.clone(),
            format!("missing field `url`, required for {article} server ({reason})"),
        ));
    };
    let url_path = path.key("url");
    let url = expanded(&raw_url, &url_path, env)?;
    check_url(&url).map_err(|problem| {
        Problem::new(
            url_path.clone(),
            // The URL is not echoed: it may carry credentials.
            format!("expected an absolute http:// or https:// URL with a host: {problem}"),
        )
    })?;

    let headers = headers(
        fields.headers.unwrap_or_default(),
        &path.key("headers"),
        env,
    )?;
    let oauth = match fields.oauth {
        None => None,
        Some(_) if kind == RawTransport::Sse => {
            return Err(Problem::new(
                path.key("oauth"),
                format!("not allowed for an sse server ({reason}): OAuth is for Streamable HTTP"),
            ));
        }
        Some(raw) => Some(oauth(raw, &headers, &path.key("oauth"), env)?),
    };
    Ok(match kind {
        RawTransport::Sse => TransportSpec::Sse { url, headers },
        RawTransport::Http | RawTransport::Stdio => TransportSpec::Http {
            url,
            headers,
            oauth,
        },
    })
}

/// A child's `env` (the server's, or a tenant's): names a process accepts, values
/// expanded and kept as secrets.
pub(crate) fn child_env(
    raw: BTreeMap<String, String>,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<BTreeMap<String, Secret<String>>, Problem> {
    let mut child_env = BTreeMap::new();
    for (key, value) in raw {
        let value_path = path.key(&key);
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(Problem::new(
                value_path,
                "invalid environment variable name: must be non-empty without `=` or NUL",
            ));
        }
        let value = expand_with_secrets(&value, &value_path, env)?;
        if value.contains('\0') {
            return Err(Problem::new(value_path, "must not contain a NUL character"));
        }
        child_env.insert(key, Secret::new(value));
    }
    Ok(child_env)
}

/// Request `headers` (the server's, or a tenant's): valid HTTP syntax, each name once
/// (case-insensitively), values expanded and kept as secrets.
pub(crate) fn headers(
    raw: BTreeMap<String, String>,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<BTreeMap<String, Secret<String>>, Problem> {
    let mut headers = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (name, value) in raw {
        let header_path = path.key(&name);
        let header_name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Problem::new(header_path.clone(), "invalid HTTP header name"))?;
        if !seen.insert(header_name.as_str().to_owned()) {
            return Err(Problem::new(
                header_path,
                "duplicate header (header names are case-insensitive)",
            ));
        }
        let value = expand_with_secrets(&value, &header_path, env)?;
        // The value is not echoed: headers usually carry credentials.
        http::HeaderValue::from_str(&value).map_err(|_| {
            Problem::new(
                header_path.clone(),
                "invalid HTTP header value (control characters are not allowed)",
            )
        })?;
        headers.insert(name, Secret::new(value));
    }
    Ok(headers)
}

/// `[servers.NAME.oauth]` (or a tenant's): how the gateway identifies itself to the
/// server's authorization server.
pub(crate) fn oauth(
    raw: crate::raw::RawOAuth,
    headers: &BTreeMap<String, Secret<String>>,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<OAuthClient, Problem> {
    if headers
        .keys()
        .any(|name| name.eq_ignore_ascii_case("authorization"))
    {
        return Err(Problem::new(
            path.clone(),
            "a server with its own `Authorization` header does not take part in OAuth; \
             remove one of the two",
        ));
    }
    let field = |value: Option<String>, key: &str| {
        value
            .map(|value| expanded(&value, &path.key(key), env))
            .transpose()
            .map(|value| value.filter(|v| !v.is_empty()))
    };
    // Secret values keep `${secret:NAME}` references (resolved from the vault).
    let secret = |value: Option<String>, key: &str| {
        value
            .map(|value| expand_with_secrets(&value, &path.key(key), env))
            .transpose()
            .map(|value| value.filter(|v| !v.is_empty()).map(Secret::new))
    };
    let grant_name = field(raw.grant, "grant")?;
    let source =
        |inline: Option<Secret<String>>, file: Option<String>, key: &str| match (inline, file) {
            (Some(_), Some(_)) => Err(Problem::new(
                path.key(key),
                format!("give `{key}` or `{key}_file`, not both"),
            )),
            (Some(value), None) => Ok(Some(crate::model::CredentialSource::Inline(value))),
            (None, Some(file)) => Ok(Some(crate::model::CredentialSource::File(file.into()))),
            (None, None) => Ok(None),
        };
    let private_key = source(
        secret(raw.private_key, "private_key")?,
        field(raw.private_key_file, "private_key_file")?,
        "private_key",
    )?;
    let algorithm = field(raw.signing_algorithm, "signing_algorithm")?;
    if let Some(algorithm) = &algorithm
        && ![
            "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
        ]
        .contains(&algorithm.as_str())
    {
        return Err(Problem::new(
            path.key("signing_algorithm"),
            format!(
                "unknown algorithm `{algorithm}`: expected ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512 or EdDSA"
            ),
        ));
    }
    let assertion = source(
        secret(raw.assertion, "assertion")?,
        field(raw.assertion_file, "assertion_file")?,
        "assertion",
    )?;
    let idp_token_endpoint = field(raw.idp_token_endpoint, "idp_token_endpoint")?;
    let idp_client_id = field(raw.idp_client_id, "idp_client_id")?;
    let idp_client_secret = secret(raw.idp_client_secret, "idp_client_secret")?;
    let id_token = source(
        secret(raw.id_token, "id_token")?,
        field(raw.id_token_file, "id_token_file")?,
        "id_token",
    )?;
    let only_for = |present: bool, key: &str, grant: &str| {
        if present {
            Err(Problem::new(
                path.key(key),
                format!("only used with grant = \"{grant}\""),
            ))
        } else {
            Ok(())
        }
    };
    let grant = match grant_name.as_deref().unwrap_or("authorization_code") {
        "authorization_code" | "client_credentials" => {
            only_for(assertion.is_some(), "assertion", "jwt_bearer")?;
            only_for(
                idp_token_endpoint.is_some()
                    || idp_client_id.is_some()
                    || idp_client_secret.is_some()
                    || id_token.is_some(),
                "idp_token_endpoint",
                "enterprise",
            )?;
            if grant_name.as_deref() == Some("client_credentials") {
                crate::model::OAuthGrant::ClientCredentials
            } else {
                crate::model::OAuthGrant::AuthorizationCode
            }
        }
        "jwt_bearer" => {
            only_for(id_token.is_some(), "id_token", "enterprise")?;
            crate::model::OAuthGrant::JwtBearer {
                assertion: assertion.ok_or_else(|| {
                    Problem::new(
                        path.key("assertion"),
                        "grant = \"jwt_bearer\" needs `assertion` or `assertion_file`",
                    )
                })?,
            }
        }
        "enterprise" => {
            only_for(assertion.is_some(), "assertion", "jwt_bearer")?;
            let endpoint = idp_token_endpoint.ok_or_else(|| {
                Problem::new(
                    path.key("idp_token_endpoint"),
                    "grant = \"enterprise\" needs the identity provider's token endpoint",
                )
            })?;
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
                || check_url(&endpoint).is_err()
            {
                return Err(Problem::new(
                    path.key("idp_token_endpoint"),
                    "expected an http(s):// URL",
                ));
            }
            if idp_client_secret.is_some() && idp_client_id.is_none() {
                return Err(Problem::new(
                    path.key("idp_client_secret"),
                    "an identity provider secret needs its `idp_client_id`",
                ));
            }
            crate::model::OAuthGrant::Enterprise {
                idp_token_endpoint: endpoint,
                idp_client_id,
                idp_client_secret,
                id_token: id_token.ok_or_else(|| {
                    Problem::new(
                        path.key("id_token"),
                        "grant = \"enterprise\" needs `id_token` or `id_token_file`",
                    )
                })?,
            }
        }
        other => {
            return Err(Problem::new(
                path.key("grant"),
                format!(
                    "unknown grant `{other}`: expected authorization_code, client_credentials, jwt_bearer or enterprise"
                ),
            ));
        }
    };
    let client = OAuthClient {
        client_id: field(raw.client_id, "client_id")?,
        client_secret: secret(raw.client_secret, "client_secret")?,
        client_metadata_url: field(raw.client_metadata_url, "client_metadata_url")?,
        private_key: private_key.map(|pem| crate::model::SigningKey {
            pem,
            algorithm: algorithm.unwrap_or_else(|| "ES256".into()),
        }),
        grant,
        dpop: raw.dpop.unwrap_or(false),
        scope: field(raw.scope, "scope")?,
    };
    if client.private_key.is_some() && client.client_secret.is_some() {
        return Err(Problem::new(
            path.key("private_key"),
            "give `client_secret` (client_secret_basic) or `private_key` (private_key_jwt), not both",
        ));
    }
    if client.private_key.is_some() && client.client_id.is_none() {
        return Err(Problem::new(
            path.key("private_key"),
            "a private key needs its `client_id`",
        ));
    }
    if client.grant != crate::model::OAuthGrant::AuthorizationCode
        && client.client_id.is_none()
        && !matches!(client.grant, crate::model::OAuthGrant::JwtBearer { .. })
    {
        return Err(Problem::new(
            path.key("client_id"),
            "this grant needs a pre-registered `client_id`",
        ));
    }
    if client.grant == crate::model::OAuthGrant::ClientCredentials
        && client.client_secret.is_none()
        && client.private_key.is_none()
    {
        return Err(Problem::new(
            path.key("grant"),
            "grant = \"client_credentials\" needs `client_secret` or `private_key`",
        ));
    }
    if client.client_secret.is_some() && client.client_id.is_none() {
        return Err(Problem::new(
            path.key("client_secret"),
            "a client secret needs its `client_id`",
        ));
    }
    if let Some(url) = &client.client_metadata_url
        && (!url.starts_with("https://") || check_url(url).is_err())
    {
        return Err(Problem::new(
            path.key("client_metadata_url"),
            "expected an https:// URL of a Client ID Metadata Document",
        ));
    }
    Ok(client)
}

/// [`expanded`], keeping `${secret:NAME}` references (a template: see `crate::vault`).
fn expand_with_secrets(value: &str, path: &KeyPath, env: EnvLookup<'_>) -> Result<String, Problem> {
    crate::expand::expand_with_secrets(value, env)
        .map_err(|message| Problem::new(path.clone(), message))
}

fn expanded(value: &str, path: &KeyPath, env: EnvLookup<'_>) -> Result<String, Problem> {
    expand(value, env).map_err(|message| Problem::new(path.clone(), message))
}

/// Expands a string handed to a child process, which cannot carry NUL.
fn process_string(value: &str, path: &KeyPath, env: EnvLookup<'_>) -> Result<String, Problem> {
    let value = expanded(value, path, env)?;
    if value.contains('\0') {
        return Err(Problem::new(
            path.clone(),
            "must not contain a NUL character",
        ));
    }
    Ok(value)
}

fn positive_millis(millis: u64, path: &KeyPath) -> Result<Duration, Problem> {
    if millis == 0 {
        return Err(Problem::new(
            path.clone(),
            "must be a positive number of milliseconds",
        ));
    }
    Ok(Duration::from_millis(millis))
}

fn timeout(millis: Option<u64>, default: Duration, path: &KeyPath) -> Result<Duration, Problem> {
    millis.map_or(Ok(default), |millis| positive_millis(millis, path))
}

fn byte_limit(bytes: Option<u64>, default: usize, path: &KeyPath) -> Result<usize, Problem> {
    match bytes {
        None => Ok(default),
        Some(0) => Err(Problem::new(
            path.clone(),
            "must be a positive number of bytes",
        )),
        Some(bytes) => usize::try_from(bytes)
            .map_err(|_| Problem::new(path.clone(), "too large for this platform")),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("empty".to_owned());
    }
    if !url.contains("://") {
        return Err("missing scheme".to_owned());
    }
    let uri: http::Uri = url.parse().map_err(|error| format!("{error}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("unsupported scheme `{other}`")),
        None => return Err("missing scheme".to_owned()),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("missing host".to_owned()),
    }
}

fn check_origin(origin: &str) -> Result<(), String> {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err("missing scheme".to_owned());
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("invalid scheme `{scheme}`"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment".to_owned());
    }
    check_host(authority)
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty".to_owned());
    }
    if host.contains(['@', '/', '?', '#']) {
        return Err("only a host and an optional port are allowed".to_owned());
    }
    host.parse::<http::uri::Authority>()
        .map(drop)
        .map_err(|error| format!("{error}"))
}
