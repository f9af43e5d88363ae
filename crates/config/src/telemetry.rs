//! `[telemetry]`: OpenTelemetry traces exported over OTLP. Raw shape, validation and the
//! validated model live together here, like `audit.rs`.
//!
//! Without the section nothing is traced (no exporter, no spans). The section is read at
//! start only: a reload that changes it is reported and takes effect at the next restart.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// The validated `[telemetry]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetrySettings {
    /// Where spans are sent: the OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// The fraction of traces started here that are recorded (0.0–1.0). A request that
    /// continues a client's trace follows the client's sampling decision.
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// How long one export may take before it is abandoned.
    pub export_timeout: Duration,
    /// How often buffered spans are sent (sooner when a batch fills).
    pub export_interval: Duration,
}

impl TelemetrySettings {
    pub const DEFAULT_SERVICE_NAME: &'static str = "switchboard";
    pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
}

/// `[telemetry]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    endpoint: Option<String>,
    protocol: Option<String>,
    sample_ratio: Option<f64>,
    service_name: Option<String>,
    export_timeout_ms: Option<u64>,
    export_interval_ms: Option<u64>,
}

pub(crate) fn validate(
    raw: RawTelemetry,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<TelemetrySettings, Problem> {
    let endpoint = raw
        .endpoint
        .ok_or_else(|| Problem::new(path.key("endpoint"), "is required (the OTLP/HTTP URL)"))?;
    let endpoint =
        expand(&endpoint, env).map_err(|message| Problem::new(path.key("endpoint"), message))?;
    let endpoint = traces_url(endpoint.trim())
        .ok_or_else(|| Problem::new(path.key("endpoint"), "must be an http:// or https:// URL"))?;
    match raw.protocol.as_deref() {
        None | Some("http/protobuf") => {}
        Some(_) => {
            return Err(Problem::new(
                path.key("protocol"),
                "only `http/protobuf` is supported (OTLP over HTTP)",
            ));
        }
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(Problem::new(
            path.key("sample_ratio"),
            "must be between 0.0 and 1.0",
        ));
    }
    let service_name = raw
        .service_name
        .unwrap_or_else(|| TelemetrySettings::DEFAULT_SERVICE_NAME.to_owned());
    if service_name.trim().is_empty() {
        return Err(Problem::new(path.key("service_name"), "must not be empty"));
    }
    let export_timeout = match raw.export_timeout_ms {
        None => TelemetrySettings::DEFAULT_EXPORT_TIMEOUT,
        Some(0) => {
            return Err(Problem::new(
                path.key("export_timeout_ms"),
                "must be at least 1",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let export_interval = match raw.export_interval_ms {
        None => TelemetrySettings::DEFAULT_EXPORT_INTERVAL,
        Some(ms) if !(10..=60_000).contains(&ms) => {
            return Err(Problem::new(
                path.key("export_interval_ms"),
                "must be between 10 and 60000",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(TelemetrySettings {
        endpoint,
        sample_ratio,
        service_name,
        export_timeout,
        export_interval,
    })
}

/// The traces URL for an endpoint: a bare collector address (no path) gets OTLP's
/// `/v1/traces`; a URL with a path is taken as written.
fn traces_url(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return None;
    }
    let path = &rest[authority.len()..];
    if path.is_empty() || path == "/" {
        Some(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
    } else {
        Some(endpoint.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_collector_address_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            traces_url("https://collector:4318/").as_deref(),
            Some("https://collector:4318/v1/traces")
        );
        assert_eq!(
            traces_url("http://c:4318/custom/traces").as_deref(),
            Some("http://c:4318/custom/traces")
        );
        assert_eq!(traces_url("grpc://c:4317"), None);
        assert_eq!(traces_url("http:///v1/traces"), None);
    }
}
