//! The snapshot store's bounds and pins, and the call check, on real catalogs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::RegistrySettings;

use super::*;
use crate::catalog::ServerLists;
use crate::pipeline::Route;

fn catalog(tools: Vec<Value>) -> Arc<Catalog> {
    let lists = ServerLists {
        tools,
        ..ServerLists::default()
    };
    let lists = BTreeMap::from([("fx".to_owned(), Arc::new(lists))]);
    Arc::new(Catalog::build(&lists, false))
}

fn add(required: &[&str]) -> Value {
    json!({
        "name": "add",
        "description": "Adds.",
        "inputSchema": {
            "type": "object",
            "properties": { "a": { "type": "number" }, "b": { "type": "number" }, "c": { "type": "number" } },
            "required": required,
        }
    })
}

fn store(max: usize, age: Duration) -> Snapshots {
    Snapshots::new(&RegistrySettings {
        max_snapshots: max,
        snapshot_max_age: age,
        ..RegistrySettings::default()
    })
}

fn call(exposed: &str) -> Result<Target, Error> {
    Ok(Target::Upstream(Route {
        server: "fx".into(),
        name: exposed.trim_start_matches("fx__").into(),
        exposed: exposed.into(),
        kind: Kind::Tool,
    }))
}

fn refusal(error: Error) -> Refusal {
    match error {
        Error::Snapshot(refusal) => (*refusal).clone(),
        other => panic!("not a snapshot refusal: {other:?}"),
    }
}

#[test]
fn sessions_pinned_to_the_same_catalog_share_one_snapshot() {
    let snapshots = store(4, Duration::from_secs(60));
    let live = catalog(vec![add(&["a"])]);
    let one = snapshots
        .for_request(Some(Ask::Pin), Some("s1"), false, &live)
        .unwrap()
        .unwrap();
    let two = snapshots
        .for_request(None, Some("s2"), true, &live)
        .unwrap()
        .unwrap();
    assert_eq!(one.id, two.id);
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots.session_pinned("s1") && snapshots.session_pinned("s2"));
    // An unpinned, unconfigured session is not pinned.
    assert!(
        snapshots
            .for_request(None, Some("s3"), false, &live)
            .unwrap()
            .is_none()
    );
    assert!(!snapshots.session_pinned("s3"));
}

#[test]
fn a_pinned_session_keeps_its_catalog_until_it_refreshes_or_goes_live() {
    let snapshots = store(4, Duration::from_secs(60));
    let old = catalog(vec![add(&["a"])]);
    let new = catalog(vec![add(&["a", "b"])]);
    let first = snapshots
        .for_request(Some(Ask::Pin), Some("s"), false, &old)
        .unwrap()
        .unwrap();
    let again = snapshots
        .for_request(None, Some("s"), false, &new)
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&again.catalog, &old));
    assert_eq!(again.id, first.id);
    let refreshed = snapshots
        .for_request(Some(Ask::Refresh), Some("s"), false, &new)
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&refreshed.catalog, &new));
    assert_ne!(refreshed.id, first.id);
    assert!(
        snapshots
            .for_request(Some(Ask::Live), Some("s"), false, &new)
            .unwrap()
            .is_none()
    );
    assert!(!snapshots.session_pinned("s"));
    snapshots.forget("s");
}

#[test]
fn a_stateless_request_is_pinned_by_the_id_it_sends() {
    let snapshots = store(4, Duration::from_secs(60));
    let old = catalog(vec![add(&["a"])]);
    let new = catalog(vec![add(&["a", "b"])]);
    let taken = snapshots
        .for_request(Some(Ask::Pin), None, false, &old)
        .unwrap()
        .unwrap();
    let again = snapshots
        .for_request(Some(Ask::Id(&taken.id)), None, false, &new)
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&again.catalog, &old));
    // Without an id (and no configuration), a stateless request is live.
    assert!(
        snapshots
            .for_request(None, None, false, &new)
            .unwrap()
            .is_none()
    );
    // Configured: a list gets the live catalog's snapshot, to send back.
    let configured = snapshots
        .for_request(None, None, true, &new)
        .unwrap()
        .unwrap();
    assert!(Arc::ptr_eq(&configured.catalog, &new));
}

#[test]
fn the_count_bound_drops_the_least_recently_used_snapshot() {
    let snapshots = store(2, Duration::from_secs(60));
    let catalogs: Vec<_> = (0..3).map(|_| catalog(vec![add(&["a"])])).collect();
    let first = snapshots
        .for_request(Some(Ask::Pin), None, false, &catalogs[0])
        .unwrap()
        .unwrap();
    let second = snapshots
        .for_request(Some(Ask::Pin), None, false, &catalogs[1])
        .unwrap()
        .unwrap();
    // Using the first makes the second the least recently used.
    snapshots
        .for_request(Some(Ask::Id(&first.id)), None, false, &catalogs[2])
        .unwrap();
    snapshots
        .for_request(Some(Ask::Pin), None, false, &catalogs[2])
        .unwrap();
    assert_eq!(snapshots.len(), 2);
    assert!(
        snapshots
            .for_request(Some(Ask::Id(&first.id)), None, false, &catalogs[2])
            .is_ok()
    );
    let gone = snapshots
        .for_request(Some(Ask::Id(&second.id)), None, false, &catalogs[2])
        .unwrap_err();
    assert!(matches!(refusal(gone), Refusal::Expired { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_past_its_age_expires_with_a_clear_error() {
    let snapshots = store(4, Duration::from_secs(10));
    let live = catalog(vec![add(&["a"])]);
    let taken = snapshots
        .for_request(Some(Ask::Pin), Some("s"), false, &live)
        .unwrap()
        .unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    let expired = snapshots
        .for_request(None, Some("s"), false, &live)
        .unwrap_err();
    let rpc = expired.to_rpc(switchboard_protocol::Era::Legacy);
    assert_eq!(rpc.code, switchboard_protocol::error::gateway::DENIED);
    assert!(rpc.message.contains("expired"), "{}", rpc.message);
    assert!(rpc.message.contains("refresh"), "{}", rpc.message);
    let data = rpc.data.unwrap();
    assert_eq!(data["reason"], "expired");
    assert_eq!(data["snapshot"], json!(&*taken.id));
    // A refresh pins the live catalog again.
    assert!(
        snapshots
            .for_request(Some(Ask::Refresh), Some("s"), false, &live)
            .unwrap()
            .is_some()
    );
    // Ids of another process (or garbage) are unknown, answered the same way.
    let foreign = snapshots
        .for_request(Some(Ask::Id("00000000-1")), None, false, &live)
        .unwrap_err();
    assert!(matches!(refusal(foreign), Refusal::Expired { .. }));
}

#[test]
fn calls_are_checked_against_the_snapshot() {
    let snapshots = store(4, Duration::from_secs(60));
    let old = catalog(vec![
        add(&["a"]),
        json!({ "name": "gone", "inputSchema": { "type": "object" } }),
    ]);
    let pinned = snapshots
        .for_request(Some(Ask::Pin), None, false, &old)
        .unwrap()
        .unwrap();
    // Unchanged (the same lists): passes without comparing.
    assert!(check_call(&pinned, &old, None, call("fx__add")).is_ok());
    // A description change and a relaxed requirement: compatible.
    let mut described = add(&[]);
    described["description"] = json!("Adds, differently.");
    let compatible = catalog(vec![described]);
    assert!(check_call(&pinned, &compatible, None, call("fx__add")).is_ok());
    // A newly required property: refused, naming it.
    let stricter = catalog(vec![add(&["a", "c"])]);
    let refused = refusal(check_call(&pinned, &stricter, None, call("fx__add")).unwrap_err());
    assert_eq!(
        refused,
        Refusal::Incompatible {
            snapshot: pinned.id.to_string(),
            tool: "fx__add".into(),
            changes: vec!["inputSchema/required: `c` is now required".into()],
        }
    );
    // Removed upstream: live resolution says unknown, the snapshot knows better.
    let unknown = Err(Error::unknown(Kind::Tool, "fx__gone"));
    assert_eq!(
        refusal(check_call(&pinned, &stricter, None, unknown).unwrap_err()),
        Refusal::Removed {
            snapshot: pinned.id.to_string(),
            tool: "fx__gone".into()
        }
    );
    // A name the snapshot never had stays unknown.
    let never = Err(Error::unknown(Kind::Tool, "fx__never"));
    assert!(matches!(
        check_call(&pinned, &stricter, None, never),
        Err(Error::Unknown { .. })
    ));
}

#[test]
fn the_header_becomes_the_meta_ask_and_is_stripped_before_forwarding() {
    let mut params = None;
    carry_header(" refresh ", &mut params);
    let mut params = params.unwrap();
    assert_eq!(Ask::of(&params), Some(Ask::Refresh));
    // The body's own ask wins over the header.
    let mut body = Some(json!({ "_meta": { META_KEY: "live" } }));
    carry_header("pin", &mut body);
    assert_eq!(Ask::of(body.as_ref().unwrap()), Some(Ask::Live));
    strip(&mut params);
    assert_eq!(Ask::of(&params), None);
}
