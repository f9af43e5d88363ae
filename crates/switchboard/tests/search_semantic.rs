//! Tool search's semantic side (`[search] model`) end to end, with the real encoder
//! (all-MiniLM-L6-v2, installed by `scripts/install-interop` as `embed/`), the real
//! gateway binary and the fixture: once the tools are embedded, a search is ranked
//! hybrid and finds tools that share no word with the request (lexical search finds
//! nothing for them); it still never returns a tool outside the caller's view; and a
//! hot-loaded server's tools are embedded and found.
//!
//! Gated like the interop tier (`switchboard_testkit::interop_path`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    ModernHttp, binary_beside, interop_path, replace_file, spawn_gateway_http, write_config,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";
const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";
/// Longest wait for the fixture's ~40 tools to be embedded (debug build, busy machine).
const READY: Duration = Duration::from_secs(180);

/// Requests that share no word with the tool that answers them.
const PAUSE: &str = "pause for a moment";
const SUM: &str = "what is seven plus eleven";

fn servers(names: &[&str]) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    names
        .iter()
        .map(|name| format!("[servers.{name}]\ncommand = {fixture:?}\nargs = [\"stdio\"]\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn config(model: Option<&Path>, names: &[&str], extra: &str) -> String {
    let search = model.map_or_else(String::new, |dir| {
        // A low threshold: these tests are about what the ranking finds, not about
        // telling irrelevant requests apart (the benchmark sweeps that).
        format!(
            "[search]\nmodel = {:?}\nweight = 0.6\nthreshold = 0.1\n",
            dir.display().to_string()
        )
    });
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\nmeta_tools = [\"search_tools\"]\nmeta_tools_by_default = true\n\n{search}\n{}\n{extra}",
        servers(names)
    )
}

/// `/admin/tools/search`: the names found and the ranking used.
async fn admin_search(url: &str, query: &str) -> (Vec<String>, Option<String>) {
    let base = url.trim_end_matches("/mcp");
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{base}/admin/tools/search?q={}&limit=5",
            query.replace(' ', "%20")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tools = body["tools"].as_array().cloned().unwrap_or_default();
    let names = tools
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    let ranking = tools
        .first()
        .and_then(|t| t["ranking"].as_str())
        .map(str::to_owned);
    (names, ranking)
}

/// Searches until the answer is ranked hybrid and `want` is in it (the tools are being
/// embedded meanwhile); returns the names found.
async fn until_hybrid(url: &str, query: &str, want: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let (names, ranking) = admin_search(url, query).await;
        if ranking.as_deref() == Some("hybrid") && names.iter().any(|n| n == want) {
            return names;
        }
        assert!(
            started.elapsed() < READY,
            "no hybrid answer with {want} for {query:?} after {READY:?}: {names:?} ({ranking:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_finds_what_lexical_search_cannot_and_follows_hot_loads() {
    let Some(model) = interop_path("INTEROP_EMBED_MODEL", "the semantic search tier") else {
        return;
    };
    // Lexical only: the requests share no word with any tool.
    let lexical = spawn_gateway_http(GATEWAY, &config(None, &["fa"], ""))
        .await
        .unwrap();
    for query in [PAUSE, SUM] {
        let (names, ranking) = admin_search(&lexical.url, query).await;
        assert!(
            names.is_empty(),
            "lexical search found {names:?} for {query:?}"
        );
        assert_eq!(ranking, None);
    }
    drop(lexical);

    let (dir, path) = write_config(&config(Some(&model), &["fa"], ""));
    let gateway = switchboard_testkit::spawn_gateway_http_at(GATEWAY, &path, &[])
        .await
        .unwrap();
    let url = &gateway.url;
    let pause = until_hybrid(url, PAUSE, "fa__sleep").await;
    assert_eq!(pause[0], "fa__sleep", "{pause:?}");
    let sum = until_hybrid(url, SUM, "fa__add").await;
    assert!(sum.iter().take(3).any(|n| n == "fa__add"), "{sum:?}");

    // A server added by a hot-load: its tools are embedded and found, hybrid.
    replace_file(&path, &config(Some(&model), &["fa", "fb"], ""));
    let both = until_hybrid(url, PAUSE, "fb__sleep").await;
    assert!(both.iter().take(2).any(|n| n == "fa__sleep"), "{both:?}");

    // Metrics say how searches were ranked.
    let base = url.trim_end_matches("/mcp");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_search_rankings_total{ranking=\"hybrid\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_search_embedded_tools_total"));
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_search_never_returns_a_tool_outside_the_callers_view() {
    let Some(model) = interop_path("INTEROP_EMBED_MODEL", "the semantic search tier") else {
        return;
    };
    let tenants = format!(
        r#"[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[access.tenants.acme]
servers = {{ allow = ["fa"] }}

[access.tenants.globex]
servers = {{ allow = ["fb"] }}
tools = {{ deny = ["fb__sleep"] }}
"#
    );
    let gateway = spawn_gateway_http(GATEWAY, &config(Some(&model), &["fa", "fb"], &tenants))
        .await
        .unwrap();
    let url = &gateway.url;
    until_hybrid(url, PAUSE, "fb__sleep").await;

    let search = |query: &str| json!({ "name": "switchboard__search_tools", "arguments": { "query": query, "limit": 50 } });
    let acme = ModernHttp::with_headers(url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(url, &[("x-api-key", GLOBEX_KEY)]);
    let mut found = Vec::new();
    for query in [PAUSE, SUM, "wait", "echo some text"] {
        for (client, own, hidden) in [(&acme, "fa__", "fb__"), (&globex, "fb__", "fa__")] {
            let exchange = client.request("tools/call", search(query)).await;
            let result = &exchange.result()["structuredContent"];
            let names: Vec<String> = result["tools"]
                .as_array()
                .unwrap_or_else(|| panic!("a search result, got {result}"))
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect();
            if !names.is_empty() {
                assert_eq!(result["ranking"], "hybrid", "{result}");
            }
            for name in &names {
                assert!(
                    name.starts_with(own) && !name.starts_with(hidden),
                    "{query:?} found {name}"
                );
                assert_ne!(name, "fb__sleep", "a denied tool was found");
            }
            found.extend(names);
        }
    }
    // Each tenant still finds its own tools by meaning.
    assert!(found.contains(&"fa__sleep".to_owned()), "{found:?}");
    assert!(found.contains(&"fb__add".to_owned()), "{found:?}");
}
