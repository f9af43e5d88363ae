//! `[telemetry]`: defaults, the traces URL, and every rejection naming its key.

mod common;

use std::time::Duration;

use common::{assert_invalid, native};
use switchboard_config::TelemetrySettings;

fn telemetry(body: &str) -> TelemetrySettings {
    native(&format!("[telemetry]\n{body}"))
        .unwrap_or_else(|error| panic!("{error}"))
        .telemetry
        .expect("section present")
}

#[test]
fn off_without_the_section() {
    assert!(native("").unwrap().telemetry.is_none());
}

#[test]
fn defaults_and_the_traces_path() {
    let settings = telemetry("endpoint = \"http://127.0.0.1:4318\"\n");
    assert_eq!(
        settings,
        TelemetrySettings {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            sample_ratio: 1.0,
            service_name: "switchboard".into(),
            export_timeout: Duration::from_secs(10),
            export_interval: Duration::from_secs(5),
        }
    );
    let settings = telemetry(
        "endpoint = \"https://otel.example.com/custom\"\nsample_ratio = 0.01\n\
         service_name = \"edge\"\nexport_timeout_ms = 500\nexport_interval_ms = 100\n\
         protocol = \"http/protobuf\"\n",
    );
    assert_eq!(settings.endpoint, "https://otel.example.com/custom");
    assert_eq!(settings.sample_ratio, 0.01);
    assert_eq!(settings.service_name, "edge");
    assert_eq!(settings.export_timeout, Duration::from_millis(500));
    assert_eq!(settings.export_interval, Duration::from_millis(100));
}

#[test]
fn the_endpoint_expands_variables() {
    let settings = telemetry("endpoint = \"${UNSET_COLLECTOR:-http://collector:4318}\"\n");
    assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
}

#[test]
fn rejections_name_their_key() {
    let cases = [
        ("sample_ratio = 1.0\n", "telemetry.endpoint", "is required"),
        (
            "endpoint = \"collector:4318\"\n",
            "telemetry.endpoint",
            "http:// or https://",
        ),
        (
            "endpoint = \"http://c\"\nprotocol = \"grpc\"\n",
            "telemetry.protocol",
            "only `http/protobuf`",
        ),
        (
            "endpoint = \"http://c\"\nsample_ratio = 1.5\n",
            "telemetry.sample_ratio",
            "between 0.0 and 1.0",
        ),
        (
            "endpoint = \"http://c\"\nservice_name = \" \"\n",
            "telemetry.service_name",
            "must not be empty",
        ),
        (
            "endpoint = \"http://c\"\nexport_timeout_ms = 0\n",
            "telemetry.export_timeout_ms",
            "at least 1",
        ),
        (
            "endpoint = \"http://c\"\nexport_interval_ms = 1\n",
            "telemetry.export_interval_ms",
            "between 10 and 60000",
        ),
        (
            "endpoint = \"http://c\"\nheaders = 1\n",
            "telemetry.headers",
            "unknown field",
        ),
    ];
    for (body, key, message) in cases {
        assert_invalid(native(&format!("[telemetry]\n{body}")), key, message);
    }
}
