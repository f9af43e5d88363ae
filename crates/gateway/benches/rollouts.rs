//! Version rollouts: what a call costs for a server under a rollout against one without.
//! In-process (`Gateway::start`) in front of stdio instances of the real fixture server,
//! two gateways with the same servers (`plain`, `crm-v20`, `crm-v21`), one of them with
//! `[rollouts.crm]` (tenant `acme` on the candidate, 5 % of the others). Measured: a
//! `tools/call` of `echo` end to end (a server without a rollout on both gateways; the
//! rollout's name for a candidate and a stable tenant), and alone the work a rollout adds
//! to a request: picking the caller's snapshot and the routed member.
//!
//! The fixture binary is taken from `SWITCHBOARD_FIXTURE`, else beside the bench's own
//! target directory (build it first with `cargo build --release -p switchboard-fixture`).
//! Run with `cargo bench -p switchboard-gateway --bench rollouts`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::principal::{Face, Identity, Peer, Principal};
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::Era;
use tokio_util::sync::CancellationToken;

/// The allocator the `switchboard` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_FIXTURE") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("switchboard-fixture");
    assert!(
        path.exists(),
        "{} not found: build it (cargo build --release -p switchboard-fixture) or set SWITCHBOARD_FIXTURE",
        path.display()
    );
    path
}

fn ctx(tenant: &str) -> ClientCtx {
    let identity = Identity {
        id: format!("key:{tenant}"),
        tenant: Some(tenant.to_owned()),
        roles: Vec::new(),
    };
    ClientCtx {
        era: Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({}),
        client_info: None,
        principal: Principal::authenticated(Face::Http, tenant, Peer::default(), &identity),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

async fn call(gateway: &Gateway, ctx: &ClientCtx, name: &str) -> Value {
    gateway
        .handle_reply(
            ctx,
            "tools/call",
            Some(json!({ "name": name, "arguments": { "text": "hello" } })),
        )
        .await
        .expect("answered")
        .into_value()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixture = format!("{:?}", fixture().display().to_string());
    let servers = format!(
        "[servers.plain]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n\
         [servers.crm-v20]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n\
         [servers.crm-v21]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n"
    );
    let rolled = format!(
        "{servers}\n[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\n\
         tenants = [\"acme\"]\npercent = 5\n"
    );
    let start = |text: &str| {
        let config =
            switchboard_config::parse(text, switchboard_config::ConfigFormat::Native, None)
                .expect("valid config");
        runtime.block_on(Gateway::start(&config)).expect("starts")
    };
    let without = start(&servers);
    let with = start(&rolled);
    let (acme, globex) = (ctx("acme"), ctx("globex"));
    // The snapshots are built and the tenants remembered before measuring.
    for gateway in [&without, &with] {
        runtime.block_on(call(gateway, &acme, "plain__echo"));
    }
    let candidate = runtime.block_on(call(&with, &acme, "crm__echo"));
    assert_eq!(candidate["structuredContent"]["text"], "hello");
    runtime.block_on(call(&with, &globex, "crm__echo"));
    assert_eq!(
        with.catalog()
            .for_tenant(Some("acme"))
            .routed("crm")
            .map(|r| r.member.clone()),
        Some("crm-v21".to_owned())
    );

    let mut group = c.benchmark_group("rollouts: tools/call echo");
    let cases: [(&str, &Gateway, &ClientCtx, &str); 4] = [
        (
            "no rollout configured (plain__echo)",
            &without,
            &acme,
            "plain__echo",
        ),
        (
            "server without a rollout, rollouts configured (plain__echo)",
            &with,
            &acme,
            "plain__echo",
        ),
        (
            "rollout, candidate tenant (crm__echo → crm-v21)",
            &with,
            &acme,
            "crm__echo",
        ),
        (
            "rollout, stable tenant (crm__echo → crm-v20)",
            &with,
            &globex,
            "crm__echo",
        ),
    ];
    for (label, gateway, ctx, name) in cases {
        group.bench_function(label, |b| {
            b.iter(|| runtime.block_on(async { black_box(call(gateway, ctx, name).await) }))
        });
    }
    group.finish();

    // The work a rollout adds to one request, alone.
    let mut group = c.benchmark_group("rollouts: snapshot choice + route per request");
    for (label, gateway, tenant, name) in [
        ("no rollout configured", &without, "acme", "plain"),
        (
            "rollouts configured, other server",
            &with,
            "globex",
            "plain",
        ),
        ("candidate tenant, rollout's name", &with, "acme", "crm"),
        ("stable tenant, rollout's name", &with, "globex", "crm"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                let catalog = gateway.catalog().for_tenant(Some(black_box(tenant)));
                black_box(catalog.routed(black_box(name)).is_some())
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        without.shutdown().await;
        with.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
