//! Micro-benchmarks of result redaction (`[redaction]` with every built-in detector, one
//! configured pattern and one injected secret): what the step adds to a typical echo
//! result, clean and with one email in it, and to a 64 KiB text result, clean prose and
//! with a finding every ~1 KiB. Tool-description screening of a 20-tool server (run when
//! its lists change, not per call) is measured too.
//!
//! Run with `cargo bench -p switchboard-gateway --bench redact`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_config::{ConfigFormat, parse};
use switchboard_gateway::redact::{Redactor, Secrets};

const CONFIG: &str = r#"
[servers.fx]
command = "fixture"
env = { API_TOKEN = "tok-0123456789abcdef" }

[redaction]
hash_salt = "bench-salt-0123456789"

[[redaction.patterns]]
name = "ticket"
regex = 'TCK-[0-9]{6}'
"#;

fn redactor() -> Redactor {
    let config = parse(CONFIG, ConfigFormat::Native, None).expect("valid config");
    let settings = config.redaction.clone().expect("a [redaction] section");
    Redactor::new(&settings, Arc::new(Secrets::from_config(&config)))
}

/// What the fixture's echo tool answers.
fn echo(text: &str) -> Value {
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": { "text": text },
        "x-fixture-result": 1,
        "_meta": { "fixture/echo": true },
    })
}

/// About 64 KiB of log-like prose with numbers, dates, paths and URLs but no findings.
fn prose() -> String {
    let line = "2026-05-04T10:22:31Z INFO request 4821 took 12.5 ms on worker-3 \
                (GET /api/v1/items?page=2, https://example.com/docs/items) version 1.24.0\n";
    line.repeat(64 * 1024 / line.len() + 1)[..64 * 1024].to_owned()
}

/// The same, with an email, a phone number or a card number every ~1 KiB.
fn prose_with_findings() -> String {
    let findings = [
        "mail bob@example.org ",
        "call +44 20 7946 0958 ",
        "card 4111 1111 1111 1111 ",
    ];
    let mut text = String::with_capacity(70 * 1024);
    let mut index = 0;
    for line in prose().lines() {
        text.push_str(line);
        text.push('\n');
        if text.len() / 1024 > index {
            text.push_str(findings[index % findings.len()]);
            index += 1;
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let redactor = redactor();
    let mut group = c.benchmark_group("redact");

    let mut clean = echo("hello from the benchmark, nothing to see here");
    group.bench_function("echo result, clean", |b| {
        b.iter(|| redactor.redact_result("tools/call", "fx", "fx__echo", black_box(&mut clean)))
    });
    let with_email = echo("please reply to bob@example.org by friday");
    group.bench_function("echo result, one email (incl. clone)", |b| {
        b.iter_batched(
            || with_email.clone(),
            |mut result| redactor.redact_result("tools/call", "fx", "fx__echo", &mut result),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("clone of the echo result (subtract)", |b| {
        b.iter(|| black_box(&with_email).clone())
    });

    let mut big = json!({ "content": [{ "type": "text", "text": prose() }] });
    group.throughput(criterion::Throughput::Bytes(64 * 1024));
    group.bench_function("64 KiB text result, clean", |b| {
        b.iter(|| redactor.redact_result("tools/call", "fx", "fx__echo", black_box(&mut big)))
    });
    let busy = json!({ "content": [{ "type": "text", "text": prose_with_findings() }] });
    group.bench_function("64 KiB text result, a finding per KiB (incl. clone)", |b| {
        b.iter_batched(
            || busy.clone(),
            |mut result| redactor.redact_result("tools/call", "fx", "fx__echo", &mut result),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let tools: Vec<Value> = (0..20)
        .map(|index| {
            json!({
                "name": format!("tool_{index}"),
                "description": format!("Does task {index}; returns a short text result."),
                "inputSchema": { "type": "object", "properties": {
                    "query": { "type": "string", "description": "What to look for" },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 100 } } },
            })
        })
        .collect();
    c.bench_function("screen 20 tool definitions", |b| {
        b.iter(|| {
            black_box(&tools)
                .iter()
                .filter_map(switchboard_gateway::screen::screen_tool)
                .count()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
