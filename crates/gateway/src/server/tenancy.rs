//! Whose instance a request runs on ([`Borrower`]), and what is per tenant on a
//! `per_tenant` server: the credentials an instance starts with (the tenant's
//! `[servers.NAME.tenants.TENANT]` laid over the server's own), its restart backoff, and
//! its idle stop. A tenant's instance serves that tenant only; callers without a tenant
//! and the gateway's own requests (lists, subscriptions, probes) share one instance on the
//! server's own credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_config::Sharing;
use switchboard_upstream::ConnectOptions;
use tokio::time::Instant;

use super::instance::Instance;
use super::{Server, backoff};
use crate::principal::Principal;

/// The tenant a `per_tenant` instance serves; `None` inside: callers without a tenant and
/// the gateway's own requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TenantKey(pub(crate) Option<Arc<str>>);

impl TenantKey {
    pub(crate) fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Whose instance a request may run on, by the server's sharing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Borrower {
    /// Any instance: shared and pool servers, and the gateway's own requests to a
    /// `per_session` one.
    Any,
    /// The session's own instance (`per_session`).
    Session(String),
    /// The tenant's own instance (`per_tenant`).
    Tenant(TenantKey),
}

impl Borrower {
    pub(crate) fn session(&self) -> Option<&str> {
        match self {
            Borrower::Session(session) => Some(session),
            _ => None,
        }
    }

    pub(crate) fn tenant(&self) -> Option<&TenantKey> {
        match self {
            Borrower::Tenant(key) => Some(key),
            _ => None,
        }
    }
}

/// Tenants whose restart backoff is remembered before expired ones are forgotten.
const MAX_TENANT_BACKOFFS: usize = 1024;

/// Restart backoff of one tenant's instance, apart from the server's: a tenant whose
/// credentials are refused does not hold back the other tenants.
#[derive(Debug, Default)]
pub(super) struct TenantBackoff {
    failures: u32,
    next_start: Option<Instant>,
}

impl Server {
    /// Whose instance a call of `principal` runs on.
    pub(crate) fn borrower_for(&self, principal: &Principal) -> Borrower {
        match self.policy().sharing {
            Sharing::PerSession => Borrower::Session(principal.session().to_owned()),
            Sharing::PerTenant => Borrower::Tenant(TenantKey(principal.tenant().map(Arc::from))),
            Sharing::Shared | Sharing::Pool => Borrower::Any,
        }
    }

    /// Whose instance the gateway's own requests run on: never a tenant's, since what one
    /// tenant's credentials show is that tenant's.
    pub(crate) fn own_borrower(&self) -> Borrower {
        match self.policy().sharing {
            Sharing::PerTenant => Borrower::Tenant(TenantKey(None)),
            _ => Borrower::Any,
        }
    }

    /// How to connect an instance for `borrower`: with its tenant's credentials, and the
    /// stored secrets its `env` and `headers` reference as they are now (`vault`).
    pub(super) fn options_for(
        &self,
        borrower: &Borrower,
    ) -> Result<ConnectOptions, crate::vault::VaultError> {
        let mut options = self.options.clone();
        if let Some(tenant) = borrower.tenant().and_then(TenantKey::name) {
            options.spec.transport = self.options.spec.transport_for(Some(tenant)).into_owned();
            options.tenant = Some(tenant.to_owned());
        }
        if crate::vault::references_secrets(&options.spec.transport) {
            options.spec.transport =
                crate::vault::resolve_transport(self.vault.as_deref(), &options.spec.transport)?;
        }
        Ok(options)
    }

    /// A tenant's instance may not start before this (its own restart backoff).
    pub(super) fn tenant_next_start(&self, tenant: &str) -> Option<Instant> {
        self.tenant_backoff.lock().get(tenant)?.next_start
    }

    /// A tenant's instance failed to start: its next start waits, doubling.
    pub(super) fn tenant_start_failed(&self, tenant: &str) {
        let policy = self.policy();
        let mut backoffs = self.tenant_backoff.lock();
        if backoffs.len() >= MAX_TENANT_BACKOFFS {
            // Bounded: forget the backoffs that have run out (their next start is free).
            let now = Instant::now();
            backoffs.retain(|_, backoff| backoff.next_start.is_some_and(|next| next > now));
        }
        let entry = backoffs.entry(tenant.to_owned()).or_default();
        entry.failures += 1;
        entry.next_start = Some(
            Instant::now()
                + backoff::delay(
                    policy.restart_backoff,
                    policy.restart_backoff_max,
                    entry.failures,
                    backoff::jitter(),
                ),
        );
    }

    pub(super) fn tenant_started(&self, tenant: &str) {
        self.tenant_backoff.lock().remove(tenant);
    }

    /// Tenants with a live instance (`per_tenant`), for operators: names, never
    /// credentials.
    pub(crate) fn tenants_served(&self) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .instances
            .lock()
            .iter()
            .filter(|i| i.is_alive())
            .filter_map(|i| i.tenant().and_then(TenantKey::name).map(str::to_owned))
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// Stops the tenants' instances nobody has called for `limit` (`idle_timeout_ms` on a
    /// `per_tenant` server): each tenant's instance idles out on its own, while the server
    /// stays up for the others. The one on the server's own credentials stays (it answers
    /// the gateway's lists) until the whole server idles out.
    pub(crate) async fn stop_idle_tenants(&self, limit: Duration) {
        if self.policy().sharing != Sharing::PerTenant {
            return;
        }
        let idle: Vec<Arc<Instance>> = {
            let mut instances = self.instances.lock();
            let (idle, kept): (Vec<_>, Vec<_>) = instances.drain(..).partition(|i| {
                i.tenant().and_then(TenantKey::name).is_some()
                    && i.inflight() == 0
                    && i.idle_for() >= limit
            });
            *instances = kept;
            idle
        };
        for instance in idle {
            tracing::info!(server = %self.name, instance = instance.id, tenant = instance.tenant().and_then(TenantKey::name), "tenant instance idle: stopping");
            instance.shutdown().await;
        }
    }
}

/// Per-tenant restart backoffs, by tenant name.
pub(super) type TenantBackoffs = parking_lot::Mutex<HashMap<String, TenantBackoff>>;

#[cfg(test)]
mod tests {
    use switchboard_config::TransportSpec;
    use switchboard_upstream::EraCache;

    use super::*;
    use crate::principal::{Face, Identity, Peer};
    use crate::server::BreakerState;

    /// A `per_tenant` server whose command cannot start, with a fixed 1 s restart backoff.
    fn per_tenant(command: &str) -> Arc<Server> {
        let text = format!(
            "[servers.s]\ncommand = \"{command}\"\nsharing = \"per_tenant\"\n\
             env = {{ KEY = \"server-own\", REGION = \"eu\" }}\n\
             restart_backoff_ms = 1000\nrestart_backoff_max_ms = 1000\n\
             [servers.s.breaker]\nfailures = 2\n\
             [servers.s.tenants.acme]\nenv = {{ KEY = \"acme-secret\" }}\n"
        );
        super::super::test_server(&text)
    }

    fn caller(tenant: Option<&str>) -> Principal {
        let identity = Identity {
            id: "key:k".into(),
            tenant: tenant.map(str::to_owned),
            roles: Vec::new(),
        };
        Principal::authenticated(Face::Http, "session-1", Peer::default(), &identity)
    }

    fn env_of(options: &ConnectOptions) -> Vec<(String, String)> {
        let TransportSpec::Stdio { env, .. } = &options.spec.transport else {
            panic!("stdio")
        };
        env.iter()
            .map(|(k, v)| (k.clone(), v.expose().clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_tenants_instance_starts_with_its_credentials() {
        let server = per_tenant("/nonexistent/switchboard-test-command");
        let acme = server.borrower_for(&caller(Some("acme")));
        assert_eq!(acme, Borrower::Tenant(TenantKey(Some("acme".into()))));
        let options = server.options_for(&acme).unwrap();
        assert_eq!(options.tenant.as_deref(), Some("acme"));
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            env_of(&options),
            [pair("KEY", "acme-secret"), pair("REGION", "eu")]
        );
        // Neither the gateway's own requests nor a caller without a tenant get a tenant's.
        for borrower in [server.own_borrower(), server.borrower_for(&caller(None))] {
            assert_eq!(borrower, Borrower::Tenant(TenantKey(None)));
            let options = server.options_for(&borrower).unwrap();
            assert_eq!(options.tenant, None);
            assert_eq!(
                env_of(&options),
                [pair("KEY", "server-own"), pair("REGION", "eu")]
            );
        }
        // A tenant without credentials of its own: its own instance, the server's env.
        let initech = server
            .options_for(&server.borrower_for(&caller(Some("initech"))))
            .unwrap();
        assert_eq!(initech.tenant.as_deref(), Some("initech"));
        assert_eq!(env_of(&initech)[0], pair("KEY", "server-own"));
        // The options' Debug (what a log line would show) has names, not values.
        let debug = format!("{options:?}");
        assert!(
            !debug.contains("acme-secret") && debug.contains("KEY"),
            "{debug}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_failing_to_start_holds_back_no_one_else() {
        let server = per_tenant("/nonexistent/switchboard-test-command");
        let cache = EraCache::new();
        let acme = || server.borrower_for(&caller(Some("acme")));
        for _ in 0..3 {
            let _ = server.acquire(&cache, acme()).await;
        }
        let waiting = server.acquire(&cache, acme()).await.err().expect("fails");
        assert!(waiting.message.contains("backoff"), "{}", waiting.message);
        // Its failures neither open the breaker (2 failures would) nor delay the others.
        assert_eq!(server.breaker_state(), BreakerState::Closed);
        let globex = server
            .acquire(&cache, server.borrower_for(&caller(Some("globex"))))
            .await
            .err()
            .expect("fails");
        assert!(
            globex
                .message
                .contains("failed to start for tenant `globex`"),
            "{}",
            globex.message
        );
        let own = server
            .acquire(&cache, server.own_borrower())
            .await
            .err()
            .expect("fails");
        assert!(own.message.contains("failed to start:"), "{}", own.message);
        // The tenant's backoff passes on tokio's clock.
        tokio::time::advance(Duration::from_millis(1001)).await;
        let again = server.acquire(&cache, acme()).await.err().expect("fails");
        assert!(
            again.message.contains("failed to start for tenant `acme`"),
            "{}",
            again.message
        );
    }
}
