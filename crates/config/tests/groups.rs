//! Failover groups (`group = "NAME"` on each member): names checked like server names,
//! never a server's name, and the shipped example parsed.

mod common;

use std::path::Path;

use common::{assert_invalid, native};
use switchboard_config::load;

#[test]
fn members_carry_their_group() {
    let config = native(
        "[servers.a]\ncommand = \"x\"\ngroup = \"search\"\n\n[servers.b]\nurl = \"http://127.0.0.1:1/mcp\"\ngroup = \"search\"\n\n[servers.c]\ncommand = \"y\"\n",
    )
    .unwrap();
    let groups: Vec<Option<&str>> = config
        .servers
        .values()
        .map(|spec| spec.group.as_deref())
        .collect();
    assert_eq!(groups, [Some("search"), Some("search"), None]);
}

#[test]
fn a_group_name_is_checked_like_a_server_name() {
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\ngroup = \"web__search\"\n"),
        "servers.a.group",
        "`__`",
    );
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\ngroup = \"\"\n"),
        "servers.a.group",
        "empty",
    );
}

#[test]
fn a_group_must_not_have_a_servers_name() {
    assert_invalid(
        native("[servers.a]\ncommand = \"x\"\ngroup = \"b\"\n\n[servers.b]\ncommand = \"y\"\n"),
        "servers.a.group",
        "name of a server",
    );
}

#[test]
fn the_failover_example_declares_one_group_of_two() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/failover.toml");
    let config = load(&path).unwrap_or_else(|error| panic!("{error}"));
    let members: Vec<&str> = config
        .servers
        .iter()
        .filter(|(_, spec)| spec.group.as_deref() == Some("search"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");
}
