//! What the approval step adds to a call that needs no approval, in-process, on the echo
//! path: a `tools/call` of `fx__echo` through [approval step, answer] against [answer]
//! alone, with one rule that does not match (the common case: a few tools gated), and
//! with 16 rules none of which matches (globs, tenants, annotations: the policy walk).
//! The answering step stands in for the upstream, which the approval step does not change.
//!
//! Run with `cargo bench -p switchboard-gateway --bench approval`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_config::{ApprovalSettings, Config, ConfigFormat};
use switchboard_gateway::catalog::ServerLists;
use switchboard_gateway::db::Db;
use switchboard_gateway::pipeline::approval::{Approval, Desk};
use switchboard_gateway::pipeline::{Call, Flow, Hooks, Step, StepFuture, Target};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::registry::Registry;
use switchboard_gateway::reply::Reply;
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::Era;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers every call to a server in the upstream's place (last in the chain).
struct Answer;

impl Step for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let flow = match call.target {
            Target::Upstream(_) => Flow::Respond(Reply::Value(
                json!({ "content": [{ "type": "text", "text": "hi" }] }),
            )),
            _ => Flow::Continue,
        };
        Box::pin(std::future::ready(Ok(flow)))
    }
}

fn approvals(rules: &str) -> ApprovalSettings {
    let text = format!("[approvals]\n{rules}");
    let config = switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid");
    config.approvals.expect("[approvals]")
}

const ONE_RULE: &str = "[[approvals.rules]]\ntools = \"fx__write_*\"\n";

fn sixteen_rules() -> String {
    let mut rules = String::new();
    for index in 0..15 {
        rules.push_str(&format!(
            "[[approvals.rules]]\nservers = \"srv{index}*\"\nwhen = \"destructive\"\n"
        ));
    }
    rules.push_str("[[approvals.rules]]\ntools = \"fx__echo\"\ntenants = [\"acme\"]\n");
    rules
}

fn config(state: &std::path::Path) -> Config {
    let db = Db::open(Some(state)).expect("the database opens");
    let registry = Registry::open(db, None, &Default::default()).expect("the registry opens");
    let lists = ServerLists {
        tools: vec![json!({
            "name": "echo",
            "description": "Returns its text",
            "inputSchema": { "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] },
        })],
        ..ServerLists::default()
    };
    registry.observe(
        "fx",
        switchboard_config::Pin::Off,
        std::sync::Arc::new(lists),
        true,
    );
    // Closed before the gateway opens the same file.
    drop(registry);
    let text = format!(
        "[gateway]\nstate_dir = {:?}\n[servers.fx]\ncommand = \"/nonexistent/switchboard-bench-server\"\nlazy = true\nvalidate = false\n",
        state.display().to_string()
    );
    switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid")
}

fn ctx() -> ClientCtx {
    ClientCtx {
        era: Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({ "elicitation": {} }),
        client_info: None,
        principal: Principal::anonymous_stateless(Face::Http, "c1", Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

fn per_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let params: Value = json!({ "name": "fx__echo", "arguments": { "text": "hi" } });
    let variants: Vec<(&str, Option<ApprovalSettings>)> = vec![
        ("answer only", None),
        (
            "approval (1 rule, no match) + answer",
            Some(approvals(ONE_RULE)),
        ),
        (
            "approval (16 rules, no match) + answer",
            Some(approvals(&sixteen_rules())),
        ),
        ("answer only (again, last)", None),
    ];
    let mut group = c.benchmark_group("fx__echo in-process, no approval needed");
    let mut dirs = BTreeMap::new();
    for (label, settings) in variants {
        let state = tempfile::tempdir().unwrap();
        let config = config(state.path());
        let mut steps: Vec<Arc<dyn Step>> = Vec::new();
        if let Some(settings) = &settings {
            let desk = Desk::new(settings, Arc::new(Db::memory()), None);
            steps.push(Arc::new(Approval::new(desk)));
        }
        steps.push(Arc::new(Answer));
        let gateway = runtime
            .block_on(Gateway::start_with_steps(&config, steps))
            .expect("gateway starts");
        let ctx = ctx();
        group.bench_function(label, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    gateway
                        .handle_reply(&ctx, "tools/call", Some(black_box(params.clone())))
                        .await
                        .expect("answered")
                })
            })
        });
        dirs.insert(label, state);
    }
    group.finish();
}

criterion_group!(benches, per_call);
criterion_main!(benches);
