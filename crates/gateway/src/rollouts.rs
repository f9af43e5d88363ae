//! Version rollouts (`[rollouts.NAME]`): two server definitions of one logical server,
//! listed to clients under the rollout's name, each tenant on the version its rule picks.
//!
//! The rule ([`Rule::candidate_for`]): a tenant in the explicit list gets the candidate;
//! any other tenant gets it when its bucket — SHA-256 of the rollout's name, a NUL and
//! the tenant, read as a number modulo 10,000 — is below the percentage in hundredths.
//! The bucket depends on nothing else, so a tenant gets the same answer on every call,
//! on every replica and after a restart, and raising the percentage keeps every tenant
//! that was in. A caller without a tenant gets the stable version.
//!
//! Where it acts: a catalog snapshot is built for the stable arm of every rollout, and
//! carries the [`Variants`] that build (lazily, once per snapshot) the snapshot of any
//! other combination of arms ([`Arms`]); `Gateway::run` picks the caller's before
//! resolving (`Catalog::for_tenant`), and the terminal (`dispatch.rs`) forwards a call
//! addressed to the rollout's name to the member its snapshot routes to. A gateway
//! without rollouts has no `Variants`: each request pays one branch.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Buckets a tenant can fall in: percentages have hundredths.
pub const BUCKETS: u32 = 10_000;

/// Tenants whose arms are remembered (and counted in `/admin/rollouts`); further
/// tenants are evaluated on each request and counted as `unremembered`.
pub const MAX_SEEN: usize = 100_000;

/// Arm combinations built per snapshot before the cache starts over.
const MAX_VARIANTS: usize = 64;

/// Which version of a rollout a caller is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Stable,
    Candidate,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Stable => "stable",
            Version::Candidate => "candidate",
        }
    }
}

/// A caller's arms: bit `i` set when rollout `i` (in name order) gives it the candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Arms(u64);

impl Arms {
    /// Every rollout on its stable version.
    pub const STABLE: Arms = Arms(0);

    pub fn is_stable(self) -> bool {
        self.0 == 0
    }

    pub fn version(self, rollout: usize) -> Version {
        if self.0 & (1 << rollout) != 0 {
            Version::Candidate
        } else {
            Version::Stable
        }
    }

    fn with_candidate(self, rollout: usize) -> Arms {
        Arms(self.0 | (1 << rollout))
    }
}

/// The bucket of `tenant` in `rollout` (0..BUCKETS): stable across calls, processes and
/// percentages.
pub fn bucket(rollout: &str, tenant: &str) -> u32 {
    let mut digest = Sha256::new();
    digest.update(rollout.as_bytes());
    digest.update([0]);
    digest.update(tenant.as_bytes());
    let digest = digest.finalize();
    let number = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    u32::try_from(number % u64::from(BUCKETS)).expect("below BUCKETS")
}

/// One rollout's rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub stable: String,
    pub candidate: String,
    pub tenants: BTreeSet<String>,
    pub basis_points: u32,
}

impl Rule {
    pub fn from_config(rollout: &switchboard_config::Rollout) -> Rule {
        Rule {
            name: rollout.name.to_string(),
            stable: rollout.stable.to_string(),
            candidate: rollout.candidate.to_string(),
            tenants: rollout.tenants.clone(),
            basis_points: rollout.basis_points,
        }
    }

    /// The version `tenant` gets (`None`: a caller without a tenant).
    pub fn version_for(&self, tenant: Option<&str>) -> Version {
        match tenant {
            Some(tenant) if self.candidate_for(tenant) => Version::Candidate,
            _ => Version::Stable,
        }
    }

    /// Whether `tenant` gets the candidate: named, or in the first `percent` of buckets.
    pub fn candidate_for(&self, tenant: &str) -> bool {
        self.tenants.contains(tenant)
            || (self.basis_points > 0 && bucket(&self.name, tenant) < self.basis_points)
    }

    /// The member server of `version`.
    pub fn member(&self, version: Version) -> &str {
        match version {
            Version::Stable => &self.stable,
            Version::Candidate => &self.candidate,
        }
    }
}

/// The rollouts in force: their rules (index = bit of [`Arms`]) and the tenants seen.
/// Shared by every snapshot built while they are in force; a reload that changes a rule
/// makes a new one (the tenants seen carry over, re-evaluated).
#[derive(Debug)]
pub struct Rollouts {
    rules: Vec<Rule>,
    /// Tenant → its arms, for tenants seen (at most [`MAX_SEEN`]).
    seen: RwLock<HashMap<Arc<str>, Arms>>,
    /// Requests from tenants beyond [`MAX_SEEN`] (evaluated each time).
    unremembered: AtomicU64,
}

impl Rollouts {
    /// The rollouts of a config; `None` without any.
    pub fn from_config(config: &switchboard_config::Config) -> Option<Arc<Rollouts>> {
        if config.rollouts.is_empty() {
            return None;
        }
        Some(Arc::new(Rollouts::new(
            config.rollouts.values().map(Rule::from_config).collect(),
        )))
    }

    /// Rules in order (at most 64: `switchboard_config::MAX_ROLLOUTS`).
    pub fn new(rules: Vec<Rule>) -> Rollouts {
        assert!(rules.len() <= 64, "at most 64 rollouts");
        Rollouts {
            rules,
            seen: RwLock::new(HashMap::new()),
            unremembered: AtomicU64::new(0),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether these are the same rules as `other` (a reload that changes none keeps
    /// the rollouts in force).
    pub fn same_rules(&self, other: &[Rule]) -> bool {
        self.rules == other
    }

    /// The arms of a caller: remembered per tenant, so a request pays a map lookup.
    pub fn arms(&self, tenant: Option<&str>) -> Arms {
        let Some(tenant) = tenant else {
            return Arms::STABLE;
        };
        if let Some(arms) = self.seen.read().get(tenant) {
            return *arms;
        }
        let arms = self.evaluate(tenant);
        let mut seen = self.seen.write();
        if seen.len() < MAX_SEEN {
            seen.insert(Arc::from(tenant), arms);
        } else {
            self.unremembered.fetch_add(1, Ordering::Relaxed);
        }
        arms
    }

    /// The arms of `tenant` by the rules, not remembered.
    pub fn evaluate(&self, tenant: &str) -> Arms {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.candidate_for(tenant))
            .fold(Arms::STABLE, |arms, (index, _)| arms.with_candidate(index))
    }

    /// Takes over the tenants `previous` saw, on these rules.
    pub fn carry_seen(&self, previous: &Rollouts) {
        let tenants: Vec<Arc<str>> = previous.seen.read().keys().cloned().collect();
        let mut seen = self.seen.write();
        for tenant in tenants {
            let arms = self.evaluate(&tenant);
            seen.insert(tenant, arms);
        }
    }

    /// The logical name a member server is listed under, if it is a version of one.
    pub fn logical_name(&self, member: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| rule.stable == member || rule.candidate == member)
            .map(|rule| rule.name.as_str())
    }

    /// Tenants seen per rule: (on stable, on candidate).
    pub fn tenants_seen(&self) -> Vec<(u64, u64)> {
        let mut counts = vec![(0u64, 0u64); self.rules.len()];
        for arms in self.seen.read().values() {
            for (index, count) in counts.iter_mut().enumerate() {
                match arms.version(index) {
                    Version::Stable => count.0 += 1,
                    Version::Candidate => count.1 += 1,
                }
            }
        }
        counts
    }

    /// What `/admin/rollouts` shows, with the calls counted per version.
    pub fn describe(&self, calls: impl Fn(&str, &str) -> u64) -> Value {
        let seen = self.tenants_seen();
        let rollouts: Vec<Value> = self
            .rules
            .iter()
            .zip(seen)
            .map(|(rule, (stable, candidate))| {
                json!({
                    "name": rule.name,
                    "versions": {
                        "stable": { "server": rule.stable, "tenants_seen": stable, "calls": calls(&rule.name, &rule.stable) },
                        "candidate": { "server": rule.candidate, "tenants_seen": candidate, "calls": calls(&rule.name, &rule.candidate) },
                    },
                    "rule": {
                        "tenants": rule.tenants,
                        "percent": f64::from(rule.basis_points) / 100.0,
                        "without_tenant": "stable",
                    },
                })
            })
            .collect();
        json!({
            "rollouts": rollouts,
            "tenants_remembered": self.seen.read().len(),
            "unremembered_requests": self.unremembered.load(Ordering::Relaxed),
        })
    }
}

impl crate::gateway::Gateway {
    /// What `/admin/rollouts` shows: `{"rollouts": [...]}`, empty without rollouts.
    pub fn rollouts_status(&self) -> Value {
        match self.inner.rollouts.load_full() {
            None => json!({ "rollouts": [] }),
            Some(rollouts) => {
                let calls = self.inner.metrics.rollout_calls();
                rollouts.describe(|rollout, member| calls.get(rollout, member))
            }
        }
    }
}

/// Where a snapshot routes a rollout's name: the member of its arm.
#[derive(Clone, Debug)]
pub struct Routed {
    /// The member server calls go to.
    pub member: String,
    pub version: Version,
    /// `switchboard_rollout_calls_total` of this rollout and member, resolved at build.
    pub calls: prometheus_client::metrics::counter::Counter,
}

/// Builds one snapshot for a combination of arms.
pub(crate) type Build = dyn Fn(Arms) -> crate::catalog::Catalog + Send + Sync;

/// A base snapshot's rollouts: the rules it was built with and its other arms'
/// snapshots, each built on first need from the same inputs (so a snapshot and its
/// variants agree on everything but the rollouts).
pub struct Variants {
    pub rollouts: Arc<Rollouts>,
    build: Box<Build>,
    built: Mutex<HashMap<Arms, Arc<crate::catalog::Catalog>>>,
}

impl std::fmt::Debug for Variants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variants")
            .field("rollouts", &self.rollouts.rules.len())
            .finish()
    }
}

impl Variants {
    pub(crate) fn new(rollouts: Arc<Rollouts>, build: Box<Build>) -> Variants {
        Variants {
            rollouts,
            build,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The snapshot of `arms` (not the stable one: the base is).
    pub(crate) fn get(&self, arms: Arms) -> Arc<crate::catalog::Catalog> {
        if let Some(catalog) = self.built.lock().get(&arms) {
            return catalog.clone();
        }
        // Built outside the lock; two callers racing build twice and keep the first.
        let catalog = Arc::new((self.build)(arms));
        let mut built = self.built.lock();
        if built.len() >= MAX_VARIANTS {
            built.clear();
        }
        built.entry(arms).or_insert(catalog).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(percent_bp: u32, tenants: &[&str]) -> Rule {
        Rule {
            name: "crm".into(),
            stable: "crm-v20".into(),
            candidate: "crm-v21".into(),
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
            basis_points: percent_bp,
        }
    }

    fn tenants(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("tenant-{i:04}")).collect()
    }

    #[test]
    fn five_percent_of_a_thousand_tenants_get_the_candidate() {
        let rule = rule(500, &[]);
        let all = tenants(1000);
        let on: Vec<&String> = all.iter().filter(|t| rule.candidate_for(t)).collect();
        let share = on.len() as f64 / 1000.0;
        assert!(
            (0.035..=0.065).contains(&share),
            "{} of 1000 tenants on the candidate",
            on.len()
        );
    }

    #[test]
    fn the_share_holds_for_other_populations_and_rollout_names() {
        // Property over 50 rollout names × 1,000 distinct tenants each. A fair 5 % draw of
        // 1,000 has a standard deviation of 6.9 tenants, so ±15 holds for about 97 % of
        // populations, not all: the bucket must behave like that draw — nearly every
        // population within 5 % ± 1.5 %, and the 50,000 tenants together within ± 0.3 %
        // (three standard deviations of their mean).
        let mut within = 0;
        let mut total = 0;
        for seed in 0..50 {
            let mut rule = rule(500, &[]);
            rule.name = format!("rollout-{seed}");
            let on = (0..1000)
                .filter(|i| rule.candidate_for(&format!("org-{seed}-{i}")))
                .count();
            if (35..=65).contains(&on) {
                within += 1;
            }
            total += on;
        }
        assert!(
            within >= 45,
            "{within} of 50 populations within 5 % ± 1.5 %"
        );
        let share = total as f64 / 50_000.0;
        assert!((0.047..=0.053).contains(&share), "{share}");
    }

    #[test]
    fn each_tenant_gets_the_same_answer_every_time_and_across_a_restart() {
        let all = tenants(1000);
        let first = Rollouts::new(vec![rule(500, &[])]);
        let answers: Vec<Arms> = all.iter().map(|t| first.arms(Some(t))).collect();
        // Asked again (remembered), and evaluated afresh by new rules objects (a
        // restart: nothing remembered, the same hash).
        let restarted = Rollouts::new(vec![rule(500, &[])]);
        for (tenant, arms) in all.iter().zip(&answers) {
            assert_eq!(first.arms(Some(tenant)), *arms);
            assert_eq!(restarted.arms(Some(tenant)), *arms);
            assert_eq!(restarted.evaluate(tenant), *arms);
        }
        // The bucket is the documented function of the rollout's name and the tenant
        // only (a change to it would move tenants between versions on upgrade).
        assert_eq!(bucket("crm", "acme"), bucket("crm", "acme"));
        assert_ne!(bucket("crm", "acme"), bucket("crm2", "acme"));
        let pinned: Vec<u32> = ["acme", "globex", "initech"]
            .iter()
            .map(|t| bucket("crm", t))
            .collect();
        assert_eq!(pinned, documented_buckets());
    }

    /// SHA-256("crm\0acme") etc., first 8 bytes big-endian, modulo 10,000.
    fn documented_buckets() -> Vec<u32> {
        ["acme", "globex", "initech"]
            .iter()
            .map(|tenant| {
                let digest = Sha256::digest(format!("crm\0{tenant}").as_bytes());
                let n = u64::from_be_bytes(digest[..8].try_into().unwrap());
                (n % 10_000) as u32
            })
            .collect()
    }

    #[test]
    fn raising_the_percentage_keeps_the_tenants_that_were_in() {
        let all = tenants(1000);
        let five = rule(500, &[]);
        let ten = rule(1000, &[]);
        let in_five: BTreeSet<&String> = all.iter().filter(|t| five.candidate_for(t)).collect();
        let in_ten: BTreeSet<&String> = all.iter().filter(|t| ten.candidate_for(t)).collect();
        assert!(in_five.is_subset(&in_ten));
        assert!(in_ten.len() > in_five.len());
        assert!(all.iter().all(|t| rule(10_000, &[]).candidate_for(t)));
        assert!(all.iter().all(|t| !rule(0, &[]).candidate_for(t)));
    }

    #[test]
    fn named_tenants_and_tenantless_callers() {
        let rule = rule(0, &["acme"]);
        assert_eq!(rule.version_for(Some("acme")), Version::Candidate);
        assert_eq!(rule.version_for(Some("globex")), Version::Stable);
        assert_eq!(rule.version_for(None), Version::Stable);
        let full = super::tests::rule(10_000, &[]);
        assert_eq!(
            full.version_for(None),
            Version::Stable,
            "no tenant: stable even at 100 %"
        );
    }

    #[test]
    fn arms_combine_rollouts_and_tenants_are_counted() {
        let mut second = rule(0, &["globex"]);
        second.name = "tickets".into();
        second.stable = "t1".into();
        second.candidate = "t2".into();
        let rollouts = Rollouts::new(vec![rule(0, &["acme"]), second]);
        let acme = rollouts.arms(Some("acme"));
        assert_eq!(acme.version(0), Version::Candidate);
        assert_eq!(acme.version(1), Version::Stable);
        let globex = rollouts.arms(Some("globex"));
        assert_eq!(
            (globex.version(0), globex.version(1)),
            (Version::Stable, Version::Candidate)
        );
        assert!(rollouts.arms(None).is_stable());
        assert_eq!(rollouts.tenants_seen(), [(1, 1), (1, 1)]);
        assert_eq!(rollouts.logical_name("t2"), Some("tickets"));
        assert_eq!(rollouts.logical_name("crm-v20"), Some("crm"));
        assert_eq!(rollouts.logical_name("other"), None);
        // New rules (acme moved back) re-evaluate the tenants seen.
        let moved = Rollouts::new(vec![rule(0, &[]), rollouts.rules()[1].clone()]);
        moved.carry_seen(&rollouts);
        assert_eq!(moved.tenants_seen(), [(2, 0), (1, 1)]);
    }
}
