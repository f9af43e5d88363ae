//! Version rollouts (`[rollouts.NAME]`): two server definitions under one logical name,
//! with a tenant list and/or a percentage; bad rules are refused with their key path.

mod common;

use std::path::Path;

use common::{assert_invalid, native};
use switchboard_config::load;

const SERVERS: &str = r#"
[access.tenants.acme]
[access.tenants.globex]

[servers.crm-v20]
command = "crm"
args = ["--version", "2.0"]

[servers.crm-v21]
command = "crm"
args = ["--version", "2.1"]

[servers.other]
command = "other"
"#;

fn with(rollouts: &str) -> String {
    format!("{SERVERS}\n{rollouts}")
}

#[test]
fn a_rollout_names_its_versions_tenants_and_percentage() {
    let config = native(&with(
        "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\ntenants = [\"acme\"]\npercent = 5\n",
    ))
    .unwrap();
    let rollout = &config.rollouts["crm"];
    assert_eq!(rollout.stable.as_str(), "crm-v20");
    assert_eq!(rollout.candidate.as_str(), "crm-v21");
    assert_eq!(rollout.tenants.iter().collect::<Vec<_>>(), ["acme"]);
    assert_eq!(rollout.basis_points, 500);
    assert_eq!(rollout.percent(), 5.0);
    // Fractions keep hundredths; no rule means nobody is on the candidate.
    let config = native(&with(
        "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\npercent = 0.25\n",
    ))
    .unwrap();
    assert_eq!(config.rollouts["crm"].basis_points, 25);
    let config = native(&with(
        "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\n",
    ))
    .unwrap();
    assert_eq!(config.rollouts["crm"].basis_points, 0);
    assert!(config.rollouts["crm"].tenants.is_empty());
    assert!(native(SERVERS).unwrap().rollouts.is_empty());
}

#[test]
fn unknown_servers_are_refused() {
    assert_invalid(
        native(&with(
            "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v22\"\n",
        )),
        "rollouts.crm.candidate",
        "unknown server `crm-v22`",
    );
    assert_invalid(
        native(&with("[rollouts.crm]\ncandidate = \"crm-v21\"\n")),
        "rollouts.crm.stable",
        "missing",
    );
    assert_invalid(
        native(&with(
            "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v20\"\n",
        )),
        "rollouts.crm.candidate",
        "another server",
    );
}

#[test]
fn percentages_outside_0_to_100_are_refused() {
    for percent in ["-1", "100.5", "1000", "nan", "inf"] {
        assert_invalid(
            native(&with(&format!(
                "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\npercent = {percent}\n"
            ))),
            "rollouts.crm.percent",
            "from 0 to 100",
        );
    }
    let config = native(&with(
        "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\npercent = 100\n",
    ))
    .unwrap();
    assert_eq!(config.rollouts["crm"].basis_points, 10_000);
}

#[test]
fn overlapping_rollouts_are_refused() {
    assert_invalid(
        native(&with(
            "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\n\n\
             [rollouts.crm2]\nstable = \"other\"\ncandidate = \"crm-v21\"\n",
        )),
        "rollouts.crm2.candidate",
        "overlapping rollouts: server `crm-v21` is already in rollout `crm`",
    );
}

#[test]
fn names_and_tenants_are_checked() {
    assert_invalid(
        native(&with(
            "[rollouts.other]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\n",
        )),
        "rollouts.other",
        "name of a server",
    );
    assert_invalid(
        native(&with(
            "[rollouts.\"crm__x\"]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\n",
        )),
        "rollouts.crm__x",
        "`__`",
    );
    assert_invalid(
        native(&with(
            "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\ntenants = [\"acme\", \"initech\"]\n",
        )),
        "rollouts.crm.tenants[1]",
        "unknown tenant `initech`",
    );
    assert_invalid(
        native(&with(
            "[rollouts.crm]\nstable = \"crm-v20\"\ncandidate = \"crm-v21\"\nweight = 3\n",
        )),
        "rollouts.crm.weight",
        "unknown field",
    );
}

#[test]
fn a_group_member_cannot_be_a_version() {
    assert_invalid(
        native(
            "[servers.a]\ncommand = \"x\"\ngroup = \"g\"\n\n[servers.b]\ncommand = \"y\"\n\n\
             [rollouts.r]\nstable = \"a\"\ncandidate = \"b\"\n",
        ),
        "rollouts.r.stable",
        "failover group",
    );
    assert_invalid(
        native(
            "[servers.a]\ncommand = \"x\"\ngroup = \"g\"\n\n[servers.b]\ncommand = \"y\"\n\n\
             [servers.c]\ncommand = \"z\"\n\n[rollouts.g]\nstable = \"b\"\ncandidate = \"c\"\n",
        ),
        "rollouts.g",
        "failover group",
    );
}

#[test]
fn the_registry_example_declares_a_rollout() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/registry.toml");
    let config = load(&path).unwrap_or_else(|error| panic!("{error}"));
    let rollout = config.rollouts.values().next().expect("a rollout");
    assert!(config.servers.contains_key(&rollout.stable));
    assert!(config.servers.contains_key(&rollout.candidate));
}
