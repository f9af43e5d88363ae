//! `[[discovery]]`: watched sources of servers besides the config file — a directory (or
//! one file) of MCP Registry `server.json` documents, and Kubernetes Services carrying a
//! label. Raw shape, validation and the validated model live together here, like
//! `cluster.rs`.
//!
//! The sources themselves are read and watched by the gateway (`discovery/`); this module
//! only checks how they are described. The section is read at start only: what a source
//! *contains* is hot-loaded, a change to the `[[discovery]]` entries takes a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Secret;
use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::raw::{Table, UniqueMap};

/// One validated `[[discovery]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoverySource {
    /// The source's name in `/admin/discovery` and logs (`name`, default `KIND-INDEX`).
    pub name: String,
    /// Prepended to every server name the source yields (e.g. `reg-`), so that its
    /// servers cannot take names the file uses.
    pub prefix: String,
    /// Most servers the source may contribute; further ones are reported, not added.
    pub max_servers: usize,
    pub kind: DiscoveryKind,
}

/// What a source reads.
#[derive(Clone, Debug, PartialEq)]
pub enum DiscoveryKind {
    Registry(RegistrySource),
    Kubernetes(KubernetesSource),
}

impl DiscoveryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscoveryKind::Registry(_) => "registry",
            DiscoveryKind::Kubernetes(_) => "kubernetes",
        }
    }
}

/// `kind = "registry"`: `server.json` documents of the official MCP Registry format.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrySource {
    /// One `server.json` file, or a directory whose `*.json` files are each one.
    pub path: PathBuf,
    /// Which form wins when a document offers both a package and a remote.
    pub prefer: Prefer,
    /// How a package of each `registryType` is run (built-in: npm, pypi, oci; these
    /// override or add).
    pub runners: BTreeMap<String, Runner>,
    /// Largest document read; a larger one is an error for that file.
    pub max_file_bytes: u64,
}

impl RegistrySource {
    pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;
}

/// Package or remote, when a `server.json` has both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// Connect to the remote (nothing to install or run locally). The default.
    Remote,
    /// Run the package locally.
    Package,
}

/// The command line a package is run with. In `args`, `{identifier}`, `{version}` and
/// `{package}` (the registry's own pinned spelling: `pkg@1.2.3`, `pkg==1.2.3`,
/// `image:1.2.3`) are replaced; the package's runtime arguments go before these, its
/// package arguments after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runner {
    pub command: String,
    pub args: Vec<String>,
}

/// `kind = "kubernetes"`: Services carrying a label, watched through the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct KubernetesSource {
    /// The API server (`https://host:port`); `None`: in-cluster, from
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` with the pod's service-account token and CA.
    pub api_url: Option<String>,
    /// A bearer token (usually `${VAR}`); otherwise `token_file` or the service account's.
    pub token: Option<Secret<String>>,
    pub token_file: Option<PathBuf>,
    /// The API server's CA bundle (PEM); in-cluster default: the service account's.
    pub ca_file: Option<PathBuf>,
    /// The namespace watched; `None`: every namespace (needs cluster-wide `list`/`watch`).
    pub namespace: Option<String>,
    /// A label selector (`app.kubernetes.io/component=mcp`), as `kubectl -l` takes it.
    pub selector: String,
    /// Longest time between reconnect attempts (doubling from 100 ms).
    pub max_backoff: Duration,
    /// Largest single watch event or list answer read.
    pub max_event_bytes: usize,
}

impl KubernetesSource {
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;
    pub const MAX_EVENT_BYTES: usize = 64 * 1024 * 1024;
}

impl DiscoverySource {
    /// Default and upper bound of `max_servers`.
    pub const DEFAULT_MAX_SERVERS: usize = 100;
    pub const MAX_SERVERS: usize = 10_000;
}

use DiscoverySource as Bounds;

/// `[[discovery]]` as written (both kinds' keys; validation says which belong where).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    kind: Option<String>,
    name: Option<String>,
    prefix: Option<String>,
    max_servers: Option<u64>,
    // registry
    path: Option<String>,
    prefer: Option<String>,
    runners: Option<UniqueMap<Table<RawRunner>>>,
    max_file_bytes: Option<u64>,
    // kubernetes
    api_url: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    ca_file: Option<String>,
    namespace: Option<String>,
    selector: Option<String>,
    max_backoff_ms: Option<u64>,
    max_event_bytes: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunner {
    command: Option<String>,
    args: Option<Vec<String>>,
}

const REGISTRY_KEYS: &[&str] = &["path", "prefer", "runners", "max_file_bytes"];
const KUBERNETES_KEYS: &[&str] = &[
    "api_url",
    "token",
    "token_file",
    "ca_file",
    "namespace",
    "selector",
    "max_backoff_ms",
    "max_event_bytes",
];

pub(crate) fn validate_all(
    raw: Vec<Table<RawDiscovery>>,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<Vec<DiscoverySource>, Problem> {
    let mut sources: Vec<DiscoverySource> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let at = path.index(index);
        let source = validate(entry.0, index, &at, env)?;
        if sources.iter().any(|other| other.name == source.name) {
            return Err(Problem::new(
                at.key("name"),
                format!("`{}` names another source too", source.name),
            ));
        }
        sources.push(source);
    }
    Ok(sources)
}

fn validate(
    raw: RawDiscovery,
    index: usize,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<DiscoverySource, Problem> {
    let kind = raw.kind.as_deref().ok_or_else(|| {
        Problem::new(
            path.key("kind"),
            "is required: \"registry\" or \"kubernetes\"",
        )
    })?;
    let (other_keys, kind_name) = match kind {
        "registry" => (KUBERNETES_KEYS, "registry"),
        "kubernetes" => (REGISTRY_KEYS, "kubernetes"),
        _ => {
            return Err(Problem::new(
                path.key("kind"),
                "must be \"registry\" or \"kubernetes\"",
            ));
        }
    };
    let present = present_keys(&raw);
    if let Some(key) = present.iter().find(|key| other_keys.contains(key)) {
        return Err(Problem::new(
            path.key(key),
            format!("does not apply to kind = \"{kind_name}\""),
        ));
    }
    let name = raw.name.unwrap_or_else(|| format!("{kind_name}-{index}"));
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Problem::new(
            path.key("name"),
            "must be 1-64 characters of letters, digits, `-`, `_` or `.`",
        ));
    }
    let prefix = raw.prefix.unwrap_or_default();
    if prefix.len() > 16
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        || prefix.contains("__")
    {
        return Err(Problem::new(
            path.key("prefix"),
            "must be at most 16 letters, digits, `-` or `_` (no `__`)",
        ));
    }
    let max_servers = match raw.max_servers {
        None => Bounds::DEFAULT_MAX_SERVERS,
        Some(n) if (1..=Bounds::MAX_SERVERS as u64).contains(&n) => n as usize,
        Some(_) => {
            return Err(Problem::new(
                path.key("max_servers"),
                format!("must be between 1 and {}", Bounds::MAX_SERVERS),
            ));
        }
    };
    let kind = if kind_name == "registry" {
        DiscoveryKind::Registry(registry(
            RawRegistry {
                path: raw.path,
                prefer: raw.prefer,
                runners: raw.runners,
                max_file_bytes: raw.max_file_bytes,
            },
            path,
            env,
        )?)
    } else {
        DiscoveryKind::Kubernetes(kubernetes(
            RawKubernetes {
                api_url: raw.api_url,
                token: raw.token,
                token_file: raw.token_file,
                ca_file: raw.ca_file,
                namespace: raw.namespace,
                selector: raw.selector,
                max_backoff_ms: raw.max_backoff_ms,
                max_event_bytes: raw.max_event_bytes,
            },
            path,
            env,
        )?)
    };
    Ok(DiscoverySource {
        name,
        prefix,
        max_servers,
        kind,
    })
}

fn present_keys(raw: &RawDiscovery) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut mark = |set: bool, key: &'static str| {
        if set {
            keys.push(key);
        }
    };
    mark(raw.path.is_some(), "path");
    mark(raw.prefer.is_some(), "prefer");
    mark(raw.runners.is_some(), "runners");
    mark(raw.max_file_bytes.is_some(), "max_file_bytes");
    mark(raw.api_url.is_some(), "api_url");
    mark(raw.token.is_some(), "token");
    mark(raw.token_file.is_some(), "token_file");
    mark(raw.ca_file.is_some(), "ca_file");
    mark(raw.namespace.is_some(), "namespace");
    mark(raw.selector.is_some(), "selector");
    mark(raw.max_backoff_ms.is_some(), "max_backoff_ms");
    mark(raw.max_event_bytes.is_some(), "max_event_bytes");
    keys
}

struct RawRegistry {
    path: Option<String>,
    prefer: Option<String>,
    runners: Option<UniqueMap<Table<RawRunner>>>,
    max_file_bytes: Option<u64>,
}

fn registry(
    raw: RawRegistry,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<RegistrySource, Problem> {
    let file = raw.path.ok_or_else(|| {
        Problem::new(
            path.key("path"),
            "is required (a server.json file or a directory of them)",
        )
    })?;
    let file = expand(&file, env).map_err(|message| Problem::new(path.key("path"), message))?;
    if file.trim().is_empty() {
        return Err(Problem::new(path.key("path"), "must not be empty"));
    }
    let prefer = match raw.prefer.as_deref() {
        None | Some("remote") => Prefer::Remote,
        Some("package") => Prefer::Package,
        Some(_) => {
            return Err(Problem::new(
                path.key("prefer"),
                "must be \"remote\" or \"package\"",
            ));
        }
    };
    let mut runners = BTreeMap::new();
    for (registry_type, runner) in raw.runners.map(|map| map.0).unwrap_or_default() {
        let at = path.key("runners").key(&registry_type);
        let command = runner
            .0
            .command
            .ok_or_else(|| Problem::new(at.key("command"), "is required"))?;
        let command =
            expand(&command, env).map_err(|message| Problem::new(at.key("command"), message))?;
        if command.trim().is_empty() {
            return Err(Problem::new(at.key("command"), "must not be empty"));
        }
        let mut args = Vec::new();
        for (index, arg) in runner.0.args.unwrap_or_default().into_iter().enumerate() {
            args.push(
                expand(&arg, env)
                    .map_err(|message| Problem::new(at.key("args").index(index), message))?,
            );
        }
        runners.insert(registry_type, Runner { command, args });
    }
    let max_file_bytes = match raw.max_file_bytes {
        None => RegistrySource::DEFAULT_MAX_FILE_BYTES,
        Some(0) => {
            return Err(Problem::new(
                path.key("max_file_bytes"),
                "must be at least 1",
            ));
        }
        Some(n) if n > crate::DEFAULT_MAX_CONFIG_BYTES => {
            return Err(Problem::new(
                path.key("max_file_bytes"),
                "must be at most 16777216",
            ));
        }
        Some(n) => n,
    };
    Ok(RegistrySource {
        path: PathBuf::from(file),
        prefer,
        runners,
        max_file_bytes,
    })
}

struct RawKubernetes {
    api_url: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    ca_file: Option<String>,
    namespace: Option<String>,
    selector: Option<String>,
    max_backoff_ms: Option<u64>,
    max_event_bytes: Option<u64>,
}

fn kubernetes(
    raw: RawKubernetes,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<KubernetesSource, Problem> {
    let expanded = |value: Option<String>, key: &str| -> Result<Option<String>, Problem> {
        value
            .map(|value| {
                expand(&value, env).map_err(|message| Problem::new(path.key(key), message))
            })
            .transpose()
    };
    let api_url = expanded(raw.api_url, "api_url")?.map(|url| url.trim_end_matches('/').to_owned());
    if let Some(url) = &api_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Problem::new(
            path.key("api_url"),
            "must be an http:// or https:// URL",
        ));
    }
    // The token's value never appears in a message.
    let token = expanded(raw.token, "token")?;
    if token.is_some() && raw.token_file.is_some() {
        return Err(Problem::new(
            path.key("token_file"),
            "conflicts with `token`: write one of the two",
        ));
    }
    let selector = raw.selector.ok_or_else(|| {
        Problem::new(
            path.key("selector"),
            "is required (a label selector, e.g. \"switchboard.dev/mcp=true\")",
        )
    })?;
    if selector.trim().is_empty() || selector.len() > 1024 {
        return Err(Problem::new(
            path.key("selector"),
            "must be a non-empty label selector of at most 1024 characters",
        ));
    }
    let namespace = raw.namespace.filter(|ns| ns != "*");
    if let Some(ns) = &namespace
        && (ns.is_empty()
            || ns.len() > 63
            || !ns
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        return Err(Problem::new(
            path.key("namespace"),
            "must be a namespace name (lowercase letters, digits, `-`) or \"*\" for all",
        ));
    }
    let max_backoff = match raw.max_backoff_ms {
        None => KubernetesSource::DEFAULT_MAX_BACKOFF,
        Some(ms) if (100..=600_000).contains(&ms) => Duration::from_millis(ms),
        Some(_) => {
            return Err(Problem::new(
                path.key("max_backoff_ms"),
                "must be between 100 and 600000",
            ));
        }
    };
    let max_event_bytes = match raw.max_event_bytes {
        None => KubernetesSource::DEFAULT_MAX_EVENT_BYTES,
        Some(n) if n >= 1024 && n <= KubernetesSource::MAX_EVENT_BYTES as u64 => n as usize,
        Some(_) => {
            return Err(Problem::new(
                path.key("max_event_bytes"),
                "must be between 1024 and 67108864",
            ));
        }
    };
    Ok(KubernetesSource {
        api_url,
        token: token.map(Secret::new),
        token_file: raw.token_file.map(PathBuf::from),
        ca_file: raw.ca_file.map(PathBuf::from),
        namespace,
        selector,
        max_backoff,
        max_event_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigFormat, parse_with_env};

    fn sources(text: &str) -> Result<Vec<DiscoverySource>, String> {
        let env = |name: &str| (name == "KUBE_TOKEN").then(|| "s3cret-token".to_owned());
        parse_with_env(text, ConfigFormat::Native, None, &env)
            .map(|config| config.discovery)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn registry_source_with_defaults_and_runners() {
        let parsed = sources(
            "[[discovery]]\nkind = \"registry\"\npath = \"/srv/servers.d\"\n\
             [discovery.runners.npm]\ncommand = \"bunx\"\nargs = [\"{package}\"]\n",
        )
        .unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].name, "registry-0");
        assert_eq!(parsed[0].max_servers, DiscoverySource::DEFAULT_MAX_SERVERS);
        let DiscoveryKind::Registry(registry) = &parsed[0].kind else {
            panic!("registry")
        };
        assert_eq!(registry.path, PathBuf::from("/srv/servers.d"));
        assert_eq!(registry.prefer, Prefer::Remote);
        assert_eq!(registry.runners["npm"].command, "bunx");
        assert_eq!(
            registry.max_file_bytes,
            RegistrySource::DEFAULT_MAX_FILE_BYTES
        );
    }

    #[test]
    fn kubernetes_source_keeps_the_token_secret() {
        let parsed = sources(
            "[[discovery]]\nkind = \"kubernetes\"\nname = \"k8s\"\napi_url = \"https://10.0.0.1:443/\"\n\
             token = \"${KUBE_TOKEN}\"\nnamespace = \"mcp\"\nselector = \"switchboard.dev/mcp=true\"\n",
        )
        .unwrap();
        let DiscoveryKind::Kubernetes(kube) = &parsed[0].kind else {
            panic!("kubernetes")
        };
        assert_eq!(kube.api_url.as_deref(), Some("https://10.0.0.1:443"));
        assert_eq!(kube.token.as_ref().unwrap().expose(), "s3cret-token");
        assert!(!format!("{parsed:?}").contains("s3cret-token"));
        assert_eq!(kube.namespace.as_deref(), Some("mcp"));
    }

    #[test]
    fn errors_name_the_key_path() {
        let cases = [
            ("[[discovery]]\npath = \"x\"\n", "discovery[0].kind"),
            ("[[discovery]]\nkind = \"consul\"\n", "discovery[0].kind"),
            ("[[discovery]]\nkind = \"registry\"\n", "discovery[0].path"),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\nselector = \"a=b\"\n",
                "discovery[0].selector",
            ),
            (
                "[[discovery]]\nkind = \"kubernetes\"\npath = \"x\"\n",
                "discovery[0].path",
            ),
            (
                "[[discovery]]\nkind = \"kubernetes\"\n",
                "discovery[0].selector",
            ),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\nprefer = \"both\"\n",
                "discovery[0].prefer",
            ),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\n[discovery.runners.npm]\nargs = []\n",
                "discovery[0].runners.npm.command",
            ),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\nmax_servers = 0\n",
                "discovery[0].max_servers",
            ),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\nprefix = \"a__\"\n",
                "discovery[0].prefix",
            ),
            (
                "[[discovery]]\nkind = \"registry\"\npath = \"x\"\n[[discovery]]\nkind = \"registry\"\npath = \"y\"\nname = \"registry-0\"\n",
                "discovery[1].name",
            ),
            (
                "[[discovery]]\nkind = \"kubernetes\"\nselector = \"a\"\nnamespace = \"Bad_NS\"\n",
                "discovery[0].namespace",
            ),
            (
                "[[discovery]]\nkind = \"kubernetes\"\nselector = \"a\"\napi_url = \"ftp://x\"\n",
                "discovery[0].api_url",
            ),
        ];
        for (text, key) in cases {
            let error = sources(text).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
        let token = sources(
            "[[discovery]]\nkind = \"kubernetes\"\nselector = \"a\"\ntoken = \"${KUBE_TOKEN}\"\ntoken_file = \"/t\"\n",
        )
        .unwrap_err();
        assert!(!token.contains("s3cret"), "{token}");
        assert!(
            sources("").unwrap().is_empty(),
            "nothing without the section"
        );
    }
}
