//! The legacy session (2024-11-05 … 2025-11-25), once for both faces: what `initialize`
//! negotiated, the principal, the requests in flight (for `notifications/cancelled`), the
//! server→client request table, resource subscriptions and the log level. A face owns
//! the wire (stdin/stdout lines, or `Mcp-Session-Id` + POST/GET/DELETE); everything a
//! session *means* lives here.
//!
//! Sessions of the HTTP face live in a [`SessionStore`]: the seam where a store shared by
//! several replicas (the scale-out issue) replaces the in-process [`MemorySessions`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_protocol::{Era, Message, RequestId, RpcError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{PeerTable, apply_log_level, legacy_notification};
use crate::gateway::{Change, ClientCtx, Gateway, PeerRequest};
use crate::principal::Principal;

/// One legacy session.
pub(crate) struct LegacySession {
    id: String,
    pub(crate) version: String,
    pub(crate) capabilities: Value,
    client_info: Option<Value>,
    principal: Principal,
    /// Whether this client sees the meta-tools, and its tools mode (its choice when it
    /// connected).
    choice: crate::gateway::ClientChoice,
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    pub(crate) peers: PeerTable,
    subscribed: Mutex<HashSet<String>>,
    /// The level of the session's last `logging/setLevel`, carried to modern upstreams.
    log_level: Mutex<Option<String>>,
    last_seen: Mutex<Instant>,
    /// Cancelled when the session ends (DELETE, idle expiry, stdin closed).
    pub(crate) ended: CancellationToken,
}

impl LegacySession {
    /// The principal fixed when the session opened.
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Opens a session for an `initialize` request; returns it with the result to send.
    pub(crate) fn open(
        gateway: &Gateway,
        id: impl Into<String>,
        principal: Principal,
        choice: crate::gateway::ClientChoice,
        params: Option<&Value>,
    ) -> (Arc<LegacySession>, Value) {
        let requested = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let result = gateway.initialize_result(requested);
        let session = LegacySession {
            id: id.into(),
            version: result["protocolVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            capabilities: params
                .and_then(|p| p.get("capabilities"))
                .cloned()
                .unwrap_or_else(|| json!({})),
            client_info: params.and_then(|p| p.get("clientInfo")).cloned(),
            principal,
            choice,
            inflight: Mutex::new(HashMap::new()),
            peers: PeerTable::default(),
            subscribed: Mutex::new(HashSet::new()),
            log_level: Mutex::new(None),
            last_seen: Mutex::new(Instant::now()),
            ended: CancellationToken::new(),
        };
        (Arc::new(session), result)
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Starts one client request of this session: records it for cancellation, applies
    /// and records the log level, tracks resource subscriptions. The context's
    /// server→client requests go to `peer`; related notifications to `notify`.
    pub(crate) fn begin(
        &self,
        id: &RequestId,
        method: &str,
        params: &mut Option<Value>,
        notify: mpsc::Sender<Message>,
        peer: mpsc::Sender<PeerRequest>,
    ) -> ClientCtx {
        self.touch();
        apply_log_level(&self.log_level, method, params);
        let uri = params
            .as_ref()
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str);
        match (method, uri) {
            ("resources/subscribe", Some(uri)) => {
                self.subscribed.lock().insert(uri.to_owned());
            }
            ("resources/unsubscribe", Some(uri)) => {
                self.subscribed.lock().remove(uri);
            }
            _ => {}
        }
        let ctx = ClientCtx {
            era: Era::Legacy,
            protocol_version: self.version.clone(),
            capabilities: self.capabilities.clone(),
            client_info: self.client_info.clone(),
            principal: self.principal.clone(),
            notify: Some(notify),
            peer: Some(peer),
            cancel: CancellationToken::new(),
            meta_tools: self.choice.meta_tools,
            tools_mode: self.choice.tools_mode,
        };
        self.inflight.lock().insert(id.clone(), ctx.cancel.clone());
        ctx
    }

    /// A request of this session ended (answered or cancelled).
    pub(crate) fn finish(&self, id: &RequestId) {
        self.inflight.lock().remove(id);
    }

    /// `notifications/cancelled` from the client: cancels the request it names.
    pub(crate) fn cancel(&self, params: Option<&Value>) {
        let id = params
            .and_then(|p| p.get("requestId"))
            .and_then(RequestId::from_value);
        if let Some(token) = id.and_then(|id| self.inflight.lock().get(&id).cloned()) {
            token.cancel();
        }
    }

    /// The client answered one of our server→client requests.
    pub(crate) fn answer(&self, id: &RequestId, outcome: Result<Value, RpcError>) {
        self.peers.answer(id, outcome);
    }

    /// The notification this session gets for a change, if any (a list change only when
    /// the session's view of that list changed: `Gateway::sees`).
    pub(crate) fn notification(&self, gateway: &Gateway, change: &Change) -> Option<Message> {
        if !gateway.sees(&self.principal, change) {
            return None;
        }
        legacy_notification(change, &self.subscribed.lock(), self.principal.session())
    }

    pub(crate) fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.last_seen.lock().elapsed()
    }

    /// No request of the session is running (an open GET stream does not count).
    pub(crate) fn is_idle(&self) -> bool {
        self.inflight.lock().is_empty()
    }

    /// The address that opened the session (sessions are capped per address).
    fn client(&self) -> Option<std::net::IpAddr> {
        self.principal.peer().addr.map(|addr| addr.ip())
    }

    /// Ends the session: everything still running is cancelled.
    pub(crate) fn end(&self) {
        self.ended.cancel();
        for token in self.inflight.lock().values() {
            token.cancel();
        }
    }
}

/// How many sessions a store holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Capacity {
    pub(crate) total: usize,
    /// Per client address.
    pub(crate) per_client: usize,
}

/// Where a face keeps its legacy sessions.
pub(crate) trait SessionStore: Send + Sync {
    /// Adds a session. At a limit (the client address's, else the total), the least
    /// recently used idle session in that scope makes room and is returned for the caller
    /// to end; when none is idle the session is refused.
    fn insert(
        &self,
        session: Arc<LegacySession>,
        capacity: Capacity,
    ) -> Result<Option<Arc<LegacySession>>, Full>;
    fn get(&self, id: &str) -> Option<Arc<LegacySession>>;
    fn remove(&self, id: &str) -> Option<Arc<LegacySession>>;
    /// Removes and returns the sessions idle for `idle` or longer.
    fn expire(&self, idle: Duration) -> Vec<Arc<LegacySession>>;
}

/// The store is at capacity and no session in scope is idle.
#[derive(Debug)]
pub(crate) struct Full(pub(crate) &'static str);

/// Sessions in this process's memory.
#[derive(Default)]
pub(crate) struct MemorySessions {
    sessions: Mutex<HashMap<String, Arc<LegacySession>>>,
}

impl SessionStore for MemorySessions {
    fn insert(
        &self,
        session: Arc<LegacySession>,
        capacity: Capacity,
    ) -> Result<Option<Arc<LegacySession>>, Full> {
        let mut sessions = self.sessions.lock();
        let client = session.client();
        let own = sessions.values().filter(|s| s.client() == client).count();
        let scope = if own >= capacity.per_client {
            Some(client)
        } else if sessions.len() >= capacity.total {
            None
        } else {
            sessions.insert(session.id.clone(), session);
            return Ok(None);
        };
        let oldest_idle = sessions
            .iter()
            .filter(|(_, s)| scope.is_none_or(|c| s.client() == c) && s.is_idle())
            .min_by_key(|(_, s)| *s.last_seen.lock())
            .map(|(id, _)| id.clone());
        let Some(shed) = oldest_idle.and_then(|id| sessions.remove(&id)) else {
            return Err(Full(match scope {
                Some(_) => "too many sessions from this client address, none of them idle",
                None => "too many sessions, none of them idle",
            }));
        };
        sessions.insert(session.id.clone(), session);
        Ok(Some(shed))
    }

    fn get(&self, id: &str) -> Option<Arc<LegacySession>> {
        self.sessions.lock().get(id).cloned()
    }

    fn remove(&self, id: &str) -> Option<Arc<LegacySession>> {
        self.sessions.lock().remove(id)
    }

    fn expire(&self, idle: Duration) -> Vec<Arc<LegacySession>> {
        let mut expired = Vec::new();
        self.sessions.lock().retain(|_, session| {
            let keep = session.idle_for() < idle;
            if !keep {
                expired.push(session.clone());
            }
            keep
        });
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{Face, Peer};

    fn principal(session: &str) -> Principal {
        Principal::anonymous(Face::Http, session, Peer::default())
    }

    #[tokio::test]
    async fn a_session_records_what_its_requests_mean() {
        let gateway = Gateway::start(&switchboard_config::Config::default())
            .await
            .unwrap();
        let params = json!({ "protocolVersion": "2025-06-18", "capabilities": { "roots": {} } });
        let (session, result) = LegacySession::open(
            &gateway,
            "s1",
            principal("s1"),
            Default::default(),
            Some(&params),
        );
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(session.version, "2025-06-18");

        let (notify, _notify_rx) = mpsc::channel(1);
        let (peer, _peer_rx) = mpsc::channel(1);
        let id = RequestId::from(7);
        let mut subscribe = Some(json!({ "uri": "switchboard://fx/test://a" }));
        let ctx = session.begin(&id, "resources/subscribe", &mut subscribe, notify, peer);
        assert_eq!(ctx.principal.session(), "s1");
        assert_eq!(ctx.era, Era::Legacy);
        let update = Change::ResourceUpdated {
            uri: "switchboard://fx/test://a".into(),
            params: json!({ "uri": "switchboard://fx/test://a" }),
        };
        assert!(
            session.notification(&gateway, &update).is_some(),
            "subscribed"
        );

        session.cancel(Some(&json!({ "requestId": 7 })));
        assert!(
            ctx.cancel.is_cancelled(),
            "notifications/cancelled reaches the request"
        );
        session.finish(&id);
        session.end();
        assert!(session.ended.is_cancelled());
        gateway.shutdown().await;
    }

    #[tokio::test]
    async fn the_store_is_bounded_and_expires_idle_sessions() {
        let gateway = Gateway::start(&switchboard_config::Config::default())
            .await
            .unwrap();
        let store = MemorySessions::default();
        let capacity = Capacity {
            total: 2,
            per_client: 10,
        };
        let mut opened = Vec::new();
        for id in ["a", "b"] {
            let (session, _) =
                LegacySession::open(&gateway, id, principal(id), Default::default(), None);
            assert!(
                store
                    .insert(session.clone(), capacity)
                    .expect("room")
                    .is_none()
            );
            opened.push(session);
        }
        // "a" is busy: the idle "b" makes room for "c".
        let (notify, _n) = mpsc::channel(1);
        let (peer, _p) = mpsc::channel(1);
        let _busy = opened[0].begin(&RequestId::from(1), "ping", &mut None, notify, peer);
        let (third, _) =
            LegacySession::open(&gateway, "c", principal("c"), Default::default(), None);
        let shed = store.insert(third, capacity).expect("room made");
        assert_eq!(shed.map(|s| s.id().to_owned()), Some("b".to_owned()));
        let (fourth, _) =
            LegacySession::open(&gateway, "d", principal("d"), Default::default(), None);
        opened[0].finish(&RequestId::from(1));
        let (notify, _n) = mpsc::channel(1);
        let (peer, _p) = mpsc::channel(1);
        let _busy =
            store
                .get("c")
                .unwrap()
                .begin(&RequestId::from(2), "ping", &mut None, notify, peer);
        // "a" is idle again and oldest.
        assert_eq!(
            store
                .insert(fourth, capacity)
                .expect("room made")
                .map(|s| s.id().to_owned()),
            Some("a".to_owned())
        );
        assert!(store.expire(Duration::from_secs(60)).is_empty());
        let expired = store.expire(Duration::ZERO);
        assert_eq!(expired.len(), 2);
        assert!(store.get("c").is_none());
        gateway.shutdown().await;
    }
}
