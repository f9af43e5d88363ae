//! `[rollouts.NAME]`: two definitions of one logical server (each a normal
//! `[servers.X]`) exposed to clients under the rollout's name, with a rule that says
//! which tenants get the candidate: an explicit tenant list and/or a percentage of
//! tenants chosen by a stable hash. Raw shape, validation and the validated model live
//! together here, like `registry.rs`; the routing is the gateway's (`rollouts.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::model::ServerSpec;
use crate::name::ServerName;

/// At most this many rollouts (each one is a bit of a caller's arm set).
pub const MAX_ROLLOUTS: usize = 64;

/// One validated rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// The logical server's name: the prefix its tools are listed under.
    pub name: ServerName,
    /// The server every caller gets unless the rule picks it for the candidate (and
    /// every caller without a tenant).
    pub stable: ServerName,
    /// The new version.
    pub candidate: ServerName,
    /// Tenants that get the candidate whatever the percentage says.
    pub tenants: BTreeSet<String>,
    /// Share of tenants on the candidate, in hundredths of a percent (0..=10,000),
    /// chosen by a stable hash of the rollout's name and the tenant.
    pub basis_points: u32,
}

impl Rollout {
    /// The percentage as written (hundredths kept).
    pub fn percent(&self) -> f64 {
        f64::from(self.basis_points) / 100.0
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollout {
    stable: Option<String>,
    candidate: Option<String>,
    tenants: Option<Vec<String>>,
    percent: Option<f64>,
}

/// Validates every `[rollouts.NAME]` against the servers (and the declared tenants,
/// when `[access.tenants]` declares any).
pub(crate) fn validate(
    raw: BTreeMap<String, RawRollout>,
    path: &KeyPath,
    servers: &BTreeMap<ServerName, ServerSpec>,
    declared_tenants: Option<&BTreeSet<String>>,
) -> Result<BTreeMap<ServerName, Rollout>, Problem> {
    if raw.len() > MAX_ROLLOUTS {
        return Err(Problem::new(
            path.clone(),
            format!("at most {MAX_ROLLOUTS} rollouts"),
        ));
    }
    let mut rollouts = BTreeMap::new();
    // Member server → the rollout that claimed it first.
    let mut claimed: BTreeMap<ServerName, ServerName> = BTreeMap::new();
    for (name, raw) in raw {
        let at = path.key(&name);
        let name =
            ServerName::new(name).map_err(|error| Problem::new(at.clone(), error.to_string()))?;
        if servers.contains_key(&name) {
            return Err(Problem::new(
                at,
                format!(
                    "rollout `{name}` has the name of a server: rollout and server names share one namespace"
                ),
            ));
        }
        if servers
            .values()
            .any(|spec| spec.group.as_deref() == Some(name.as_str()))
        {
            return Err(Problem::new(
                at,
                format!("rollout `{name}` has the name of a failover group"),
            ));
        }
        let member = |key: &str, value: Option<String>| -> Result<ServerName, Problem> {
            let value = value.ok_or_else(|| {
                Problem::new(at.key(key), "missing: the server this version runs on")
            })?;
            let member = ServerName::new(value)
                .map_err(|error| Problem::new(at.key(key), error.to_string()))?;
            let Some(spec) = servers.get(&member) else {
                return Err(Problem::new(
                    at.key(key),
                    format!("unknown server `{member}` (not in servers)"),
                ));
            };
            if spec.group.is_some() {
                return Err(Problem::new(
                    at.key(key),
                    format!(
                        "server `{member}` is in a failover group: it cannot be a rollout version"
                    ),
                ));
            }
            Ok(member)
        };
        let stable = member("stable", raw.stable)?;
        let candidate = member("candidate", raw.candidate)?;
        if stable == candidate {
            return Err(Problem::new(
                at.key("candidate"),
                "must name another server than `stable`",
            ));
        }
        for (key, server) in [("stable", &stable), ("candidate", &candidate)] {
            if let Some(other) = claimed.insert(server.clone(), name.clone()) {
                return Err(Problem::new(
                    at.key(key),
                    format!(
                        "overlapping rollouts: server `{server}` is already in rollout `{other}`"
                    ),
                ));
            }
        }
        let basis_points = match raw.percent {
            None => 0,
            Some(percent) if percent.is_finite() && (0.0..=100.0).contains(&percent) => {
                // Hundredths of a percent; the value is in range, so the cast is exact.
                (percent * 100.0).round() as u32
            }
            Some(_) => {
                return Err(Problem::new(
                    at.key("percent"),
                    "must be a number from 0 to 100",
                ));
            }
        };
        let mut tenants = BTreeSet::new();
        for (index, tenant) in raw.tenants.unwrap_or_default().into_iter().enumerate() {
            let tenant_path = at.key("tenants").index(index);
            if tenant.trim().is_empty() {
                return Err(Problem::new(tenant_path, "must not be empty"));
            }
            if let Some(declared) = declared_tenants
                && !declared.is_empty()
                && !declared.contains(&tenant)
            {
                return Err(Problem::new(
                    tenant_path,
                    format!("unknown tenant `{tenant}` (not in access.tenants)"),
                ));
            }
            tenants.insert(tenant);
        }
        rollouts.insert(
            name.clone(),
            Rollout {
                name,
                stable,
                candidate,
                tenants,
                basis_points,
            },
        );
    }
    Ok(rollouts)
}
