//! Kubernetes Services as servers (`kind = "kubernetes"`): the Services matching a label
//! selector, in one namespace or all, each resolved to its Streamable HTTP endpoint.
//!
//! The API server is asked the way controllers ask it: a *list* (`GET
//! /api/v1/[namespaces/NS/]services?labelSelector=…`) gives every matching Service and a
//! `resourceVersion`, then a *watch* from that version streams `ADDED` / `MODIFIED` /
//! `DELETED` events as newline-delimited JSON. When the stream ends (the server's
//! `timeoutSeconds`, a dropped connection, a `410 Gone` error event), the source lists
//! again — a full resync, so an event lost while disconnected cannot leave a stale
//! server — and watches anew. Failures back off from 100 ms doubling to `max_backoff`
//! (reset by a successful list); while the API server is unreachable the last good
//! servers stay.
//!
//! A Service becomes `{"type": "http", "url": "http://HOST:PORT/PATH"}`:
//! - HOST: its `clusterIP` (its stable in-cluster address), or `NAME.NAMESPACE.svc` for a
//!   headless Service, or `externalName`;
//! - PORT: the port named by the `switchboard.dev/port` annotation (a name or a number),
//!   else the port named `mcp`, else its only port;
//! - PATH: the `switchboard.dev/path` annotation, default `/mcp`; scheme from
//!   `switchboard.dev/scheme` (`http`, `https`), transport from `switchboard.dev/transport`
//!   (`http`, `sse`);
//! - its server name: the `switchboard.dev/name` annotation, else the Service's name,
//!   after the source's prefix.
//!
//! Bounds: one watch event (line) or one list answer of at most `max_event_bytes` (a list
//! 16 times that), at most `max_servers` Services (the rest reported), every request with
//! a connect timeout; the token is re-read at each connection (service-account tokens
//! rotate) and never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::{DiscoverySource, KubernetesSource, Secret, ServerName, ServerSpec};

use super::{Layer, record};
use crate::gateway::Gateway;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How long the API server keeps one watch open before we list again.
const WATCH_SECONDS: u64 = 300;
/// A list answer may be this many times `max_event_bytes`.
const LIST_FACTOR: usize = 16;

/// Annotations read from a Service.
pub(crate) const ANNOTATION_NAME: &str = "switchboard.dev/name";
pub(crate) const ANNOTATION_PORT: &str = "switchboard.dev/port";
pub(crate) const ANNOTATION_PATH: &str = "switchboard.dev/path";
pub(crate) const ANNOTATION_SCHEME: &str = "switchboard.dev/scheme";
pub(crate) const ANNOTATION_TRANSPORT: &str = "switchboard.dev/transport";

/// Why talking to the API server failed.
#[derive(Debug, thiserror::Error)]
enum KubeError {
    #[error("no API server: set api_url, or run in a pod (KUBERNETES_SERVICE_HOST is unset)")]
    NoApiServer,
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("API server answered {status}: {reason}")]
    Status { status: u16, reason: String },
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("answer not understood: {0}")]
    Shape(String),
    /// The watch's version is too old (`410 Gone`): list again.
    #[error("watch expired (410 Gone)")]
    Gone,
}

pub(crate) fn spawn(gateway: &Gateway, source: DiscoverySource, kube: KubernetesSource) {
    let shutdown = gateway.inner.shutdown.clone();
    let mut watcher = Watcher {
        gateway: gateway.clone(),
        layer: Layer::new(&source.name),
        source,
        kube,
        services: BTreeMap::new(),
        errors: BTreeMap::new(),
    };
    gateway.spawn(async move {
        tokio::select! {
            () = watcher.run() => {}
            () = shutdown.cancelled() => {}
        }
    });
}

/// The connection settings, resolved at each (re)connection.
struct Api {
    base: String,
    token: Option<Secret<String>>,
    client: reqwest::Client,
}

struct Watcher {
    gateway: Gateway,
    source: DiscoverySource,
    kube: KubernetesSource,
    layer: Layer,
    /// Matching Services by `namespace/name`: their server, or why they give none.
    services: BTreeMap<String, Result<(String, ServerSpec), String>>,
    /// Errors of the connection (`list`, `watch`).
    errors: BTreeMap<String, String>,
}

impl Watcher {
    async fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.cycle(&mut backoff).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(source = %self.source.name, %error, retry_ms = backoff.as_millis() as u64, "kubernetes discovery: API server not followed; the last good servers stay");
                    self.set_connected(false);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.kube.max_backoff);
                }
            }
        }
    }

    /// One list and the watch after it, until the watch ends.
    async fn cycle(&mut self, backoff: &mut Duration) -> Result<(), KubeError> {
        let api = self.connect().await.inspect_err(|error| {
            self.errors.insert("connect".into(), error.to_string());
            self.publish();
        })?;
        self.errors.remove("connect");
        let version = match self.list(&api).await {
            Ok(version) => version,
            Err(error) => {
                self.errors.insert("list".into(), error.to_string());
                self.publish();
                return Err(error);
            }
        };
        self.errors.remove("list");
        *backoff = FIRST_BACKOFF;
        self.apply().await;
        let watched = self.watch(&api, version).await;
        self.set_connected(false);
        match watched {
            Ok(()) | Err(KubeError::Gone) => {
                self.errors.remove("watch");
                Ok(())
            }
            Err(error) => {
                self.errors.insert("watch".into(), error.to_string());
                self.publish();
                Err(error)
            }
        }
    }

    async fn connect(&self) -> Result<Api, KubeError> {
        let in_cluster = self.kube.api_url.is_none();
        let base = match &self.kube.api_url {
            Some(url) => url.clone(),
            None => {
                let host =
                    std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| KubeError::NoApiServer)?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let token_file = self.kube.token_file.clone().or_else(|| {
            (in_cluster && self.kube.token.is_none())
                .then(|| PathBuf::from(SERVICE_ACCOUNT).join("token"))
        });
        let token = match (&self.kube.token, token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(Secret::new(read_small(path).await?.trim().to_owned())),
            (None, None) => None,
        };
        let ca_file = self
            .kube
            .ca_file
            .clone()
            .or_else(|| in_cluster.then(|| PathBuf::from(SERVICE_ACCOUNT).join("ca.crt")));
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if let Some(path) = ca_file {
            let pem = read_small(path).await?;
            let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|error| KubeError::Client(error.to_string()))?;
            builder = builder.tls_certs_only(certificates);
        }
        let client = builder
            .build()
            .map_err(|error| KubeError::Client(error.to_string()))?;
        Ok(Api {
            base,
            token,
            client,
        })
    }

    fn url(&self, api: &Api, watch: Option<&str>) -> Result<reqwest::Url, KubeError> {
        let path = match &self.kube.namespace {
            Some(namespace) => format!("{}/api/v1/namespaces/{namespace}/services", api.base),
            None => format!("{}/api/v1/services", api.base),
        };
        let mut url =
            reqwest::Url::parse(&path).map_err(|error| KubeError::Client(error.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("labelSelector", &self.kube.selector);
            if let Some(version) = watch {
                query
                    .append_pair("watch", "true")
                    .append_pair("resourceVersion", version)
                    .append_pair("allowWatchBookmarks", "true")
                    .append_pair("timeoutSeconds", &WATCH_SECONDS.to_string());
            }
        }
        Ok(url)
    }

    async fn get(
        &self,
        api: &Api,
        url: reqwest::Url,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, KubeError> {
        let mut request = api.client.get(url).header("accept", "application/json");
        if let Some(token) = &api.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|error| KubeError::Request(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_bounded(response, 64 * 1024).await.unwrap_or_default();
        let reason = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|status| status["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
        if status.as_u16() == 410 {
            return Err(KubeError::Gone);
        }
        Err(KubeError::Status {
            status: status.as_u16(),
            reason,
        })
    }

    /// Lists the matching Services; replaces the known set; returns the list's version.
    async fn list(&mut self, api: &Api) -> Result<String, KubeError> {
        let url = self.url(api, None)?;
        let response = self.get(api, url, Some(Duration::from_secs(30))).await?;
        let body = read_bounded(response, self.kube.max_event_bytes * LIST_FACTOR).await?;
        let list: Value =
            serde_json::from_slice(&body).map_err(|error| KubeError::Shape(error.to_string()))?;
        let version = list["metadata"]["resourceVersion"]
            .as_str()
            .ok_or_else(|| KubeError::Shape("a list without metadata.resourceVersion".into()))?
            .to_owned();
        let items = list["items"]
            .as_array()
            .ok_or_else(|| KubeError::Shape("a list without items".into()))?;
        self.services.clear();
        for item in items {
            self.put(item);
        }
        Ok(version)
    }

    /// Follows the watch until it ends; applies every event.
    async fn watch(&mut self, api: &Api, version: String) -> Result<(), KubeError> {
        let url = self.url(api, Some(&version))?;
        let mut response = self.get(api, url, None).await?;
        self.set_connected(true);
        let max = self.kube.max_event_bytes;
        let mut line: Vec<u8> = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|error| KubeError::Request(error.without_url().to_string()))?;
            let Some(chunk) = chunk else { return Ok(()) };
            let mut changed = false;
            for piece in chunk.split_inclusive(|byte| *byte == b'\n') {
                line.extend_from_slice(piece);
                if line.len() > max + 1 {
                    return Err(KubeError::TooLarge(max));
                }
                if !line.ends_with(b"\n") {
                    continue;
                }
                let event: Value = match serde_json::from_slice(&line) {
                    Ok(event) => event,
                    Err(_) if line.iter().all(u8::is_ascii_whitespace) => {
                        line.clear();
                        continue;
                    }
                    Err(error) => return Err(KubeError::Shape(error.to_string())),
                };
                line.clear();
                let object = &event["object"];
                match event["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        self.put(object);
                        changed = true;
                    }
                    Some("DELETED") => {
                        self.services.remove(&key(object));
                        changed = true;
                    }
                    Some("BOOKMARK") => {}
                    Some("ERROR") => {
                        if object["code"].as_u64() == Some(410) {
                            return Err(KubeError::Gone);
                        }
                        return Err(KubeError::Status {
                            status: object["code"].as_u64().unwrap_or(0) as u16,
                            reason: object["message"].as_str().unwrap_or("").to_owned(),
                        });
                    }
                    _ => return Err(KubeError::Shape("an event without a known type".into())),
                }
            }
            if changed {
                self.apply().await;
            }
        }
    }

    fn put(&mut self, service: &Value) {
        let mapped =
            service_definition(service, &self.source.prefix).and_then(|(name, definition)| {
                crate::roster::parse_definition(&name, &definition)
                    .map(|spec| (name, spec))
                    .map_err(|error| error.message)
            });
        self.services.insert(key(service), mapped);
    }

    async fn apply(&mut self) {
        let mut wanted = BTreeMap::new();
        let mut errors = self.errors.clone();
        for (service, mapped) in &self.services {
            match mapped {
                Err(error) => {
                    errors.insert(service.clone(), error.clone());
                }
                Ok((name, spec)) => {
                    if wanted.len() >= self.source.max_servers {
                        errors.insert(
                            service.clone(),
                            format!(
                                "the source already gives max_servers = {} servers; ignored",
                                self.source.max_servers
                            ),
                        );
                    } else if wanted.contains_key(name) {
                        errors.insert(
                            service.clone(),
                            format!("server `{name}` is given by another Service; ignored"),
                        );
                    } else {
                        wanted.insert(name.clone(), spec.clone());
                    }
                }
            }
        }
        let outcome = self.layer.apply(&self.gateway, &wanted).await;
        record(
            &self.gateway,
            &self.source.name,
            &self.layer,
            &outcome,
            errors,
        );
    }

    /// Publishes the connection errors without applying anything.
    fn publish(&self) {
        let mut errors: BTreeMap<String, String> = self
            .services
            .iter()
            .filter_map(|(service, mapped)| {
                mapped.as_ref().err().map(|e| (service.clone(), e.clone()))
            })
            .collect();
        errors.extend(self.errors.clone());
        self.gateway
            .inner
            .discovery
            .update(&self.source.name, |status| status.errors = errors);
    }

    fn set_connected(&self, connected: bool) {
        self.gateway
            .inner
            .discovery
            .update(&self.source.name, |status| {
                status.connected = Some(connected)
            });
    }
}

fn key(service: &Value) -> String {
    format!(
        "{}/{}",
        service["metadata"]["namespace"].as_str().unwrap_or(""),
        service["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// A Service → its server name and definition (see the module doc).
pub(crate) fn service_definition(service: &Value, prefix: &str) -> Result<(String, Value), String> {
    let metadata = &service["metadata"];
    let service_name = metadata["name"]
        .as_str()
        .ok_or("a Service without metadata.name")?;
    let namespace = metadata["namespace"].as_str().unwrap_or("default");
    let annotation = |key: &str| metadata["annotations"][key].as_str();
    let name = format!(
        "{prefix}{}",
        annotation(ANNOTATION_NAME).unwrap_or(service_name)
    );
    ServerName::new(name.clone()).map_err(|error| {
        format!("{error}; name the server with the `{ANNOTATION_NAME}` annotation")
    })?;
    let spec = &service["spec"];
    let ports = spec["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let port = match annotation(ANNOTATION_PORT) {
        Some(wanted) => ports
            .iter()
            .find(|port| {
                port["name"].as_str() == Some(wanted)
                    || port["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(wanted)
            })
            .ok_or_else(|| format!("no port `{wanted}` (from {ANNOTATION_PORT})"))?,
        None => match ports
            .iter()
            .find(|port| port["name"].as_str() == Some("mcp"))
        {
            Some(port) => port,
            None if ports.len() == 1 => &ports[0],
            None => {
                return Err(format!(
                    "{} ports and none named `mcp`: name one with the `{ANNOTATION_PORT}` annotation",
                    ports.len()
                ));
            }
        },
    };
    let number = port["port"]
        .as_u64()
        .filter(|n| (1..=65535).contains(n))
        .ok_or("a port without a valid number")?;
    let host = match (spec["type"].as_str(), spec["clusterIP"].as_str()) {
        (Some("ExternalName"), _) => spec["externalName"]
            .as_str()
            .ok_or("an ExternalName Service without externalName")?
            .to_owned(),
        (_, Some(ip)) if !ip.is_empty() && ip != "None" => {
            if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_owned()
            }
        }
        _ => format!("{service_name}.{namespace}.svc"),
    };
    let path = annotation(ANNOTATION_PATH).unwrap_or("/mcp");
    if !path.starts_with('/') {
        return Err(format!("{ANNOTATION_PATH} must start with `/`"));
    }
    let scheme = match annotation(ANNOTATION_SCHEME).unwrap_or("http") {
        scheme @ ("http" | "https") => scheme,
        _ => return Err(format!("{ANNOTATION_SCHEME} must be `http` or `https`")),
    };
    let transport = match annotation(ANNOTATION_TRANSPORT).unwrap_or("http") {
        transport @ ("http" | "sse") => transport,
        _ => return Err(format!("{ANNOTATION_TRANSPORT} must be `http` or `sse`")),
    };
    Ok((
        name,
        json!({ "type": transport, "url": format!("{scheme}://{host}:{number}{path}") }),
    ))
}

async fn read_small(path: PathBuf) -> Result<String, KubeError> {
    let read_path = path.clone();
    tokio::task::spawn_blocking(move || switchboard_config::read(&read_path, 1024 * 1024))
        .await
        .map_err(|join| KubeError::Client(join.to_string()))?
        .map_err(|error| KubeError::File {
            path,
            source: std::io::Error::other(error.to_string()),
        })
}

async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, KubeError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| KubeError::Request(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > max {
            return Err(KubeError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(annotations: Value, spec: Value) -> Value {
        json!({
            "metadata": { "name": "weather", "namespace": "tools", "annotations": annotations },
            "spec": spec
        })
    }

    #[test]
    fn cluster_ip_and_the_port_named_mcp() {
        let (name, definition) = service_definition(
            &service(
                json!({}),
                json!({ "clusterIP": "10.96.0.12", "ports": [{ "name": "metrics", "port": 9090 }, { "name": "mcp", "port": 8080 }] }),
            ),
            "k-",
        )
        .unwrap();
        assert_eq!(name, "k-weather");
        assert_eq!(
            definition,
            json!({ "type": "http", "url": "http://10.96.0.12:8080/mcp" })
        );
    }

    #[test]
    fn annotations_choose_port_path_scheme_and_name() {
        let (name, definition) = service_definition(
            &service(
                json!({ ANNOTATION_PORT: "9000", ANNOTATION_PATH: "/v1/mcp", ANNOTATION_SCHEME: "https", ANNOTATION_NAME: "wx", ANNOTATION_TRANSPORT: "sse" }),
                json!({ "clusterIP": "None", "ports": [{ "name": "a", "port": 9000 }, { "name": "b", "port": 9001 }] }),
            ),
            "",
        )
        .unwrap();
        assert_eq!(name, "wx");
        assert_eq!(
            definition,
            json!({ "type": "sse", "url": "https://weather.tools.svc:9000/v1/mcp" })
        );
        let single = service_definition(
            &service(
                json!({}),
                json!({ "clusterIP": "fd00::1", "ports": [{ "port": 80 }] }),
            ),
            "",
        )
        .unwrap();
        assert_eq!(single.1["url"], "http://[fd00::1]:80/mcp");
    }

    #[test]
    fn unusable_services_say_why() {
        let two = service(
            json!({}),
            json!({ "clusterIP": "10.0.0.1", "ports": [{ "port": 1 }, { "port": 2 }] }),
        );
        assert!(
            service_definition(&two, "")
                .unwrap_err()
                .contains(ANNOTATION_PORT)
        );
        let missing = service(
            json!({ ANNOTATION_PORT: "web" }),
            json!({ "ports": [{ "port": 1 }] }),
        );
        assert!(
            service_definition(&missing, "")
                .unwrap_err()
                .contains("no port `web`")
        );
        let long = json!({ "metadata": { "name": "a-service-name-longer-than-thirty-two-characters" }, "spec": { "ports": [{ "port": 1 }] } });
        assert!(
            service_definition(&long, "")
                .unwrap_err()
                .contains(ANNOTATION_NAME)
        );
        let path = service(
            json!({ ANNOTATION_PATH: "mcp" }),
            json!({ "ports": [{ "port": 1 }] }),
        );
        assert!(service_definition(&path, "").is_err());
    }
}
