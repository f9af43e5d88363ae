//! Who is calling. Every request carries a [`Principal`]: an anonymous one per face and
//! client session, or an authenticated one (an API key, a JWT subject, the configured
//! stdio principal) with its tenant and roles, plus whatever the transport knows about
//! the peer. Nothing in the gateway may assume one identity per face.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// The face a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Face {
    Stdio,
    Http,
    /// JSON-RPC over a WebSocket on the HTTP listener (`GET /ws`).
    WebSocket,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Stdio => "stdio",
            Face::Http => "http",
            Face::WebSocket => "ws",
        }
    }
}

/// What the transport knows about the peer, for policies and audit records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote address of an HTTP client's connection.
    pub addr: Option<SocketAddr>,
    /// The local user running the gateway for a stdio client (the client spawned us).
    pub user: Option<String>,
}

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Stable name of the caller: what policies match and audit records show.
    id: Arc<str>,
    /// The client session the request belongs to: a legacy session id, the one stdio
    /// client, or a modern HTTP client's connection. Per-session server instances and
    /// sealed request state are bound to it.
    session: Arc<str>,
    face: Face,
    authenticated: bool,
    peer: Peer,
    /// The tenant the caller belongs to (from its key entry or token claims).
    tenant: Option<Arc<str>>,
    /// The caller's roles, sorted and without duplicates.
    roles: Arc<[String]>,
    /// What sealed request state is bound to (see [`Principal::binding`]).
    binding: Arc<str>,
}

/// Who a credential proved the caller to be: what the faces learn at their edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// Stable name, e.g. `key:ci` or `jwt:alice`.
    pub id: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
}

/// A principal as another replica of the cluster resolved it (`cluster::wire`).
pub(crate) struct Relayed {
    pub(crate) id: Arc<str>,
    pub(crate) session: Arc<str>,
    pub(crate) face: Face,
    pub(crate) authenticated: bool,
    pub(crate) peer: Peer,
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) roles: Vec<String>,
    pub(crate) binding: Arc<str>,
}

impl Principal {
    /// The principal a replica of the cluster forwarded a call for: exactly as it was
    /// there (the internal channel is authenticated; the calling replica checked the
    /// credential).
    pub(crate) fn relayed(relayed: Relayed) -> Principal {
        let mut roles = relayed.roles;
        roles.sort_unstable();
        roles.dedup();
        Principal {
            id: relayed.id,
            session: relayed.session,
            face: relayed.face,
            authenticated: relayed.authenticated,
            peer: relayed.peer,
            tenant: relayed.tenant,
            roles: roles.into(),
            binding: relayed.binding,
        }
    }

    /// An unauthenticated caller, named after its face and session.
    pub fn anonymous(face: Face, session: impl Into<Arc<str>>, peer: Peer) -> Principal {
        let session = session.into();
        let id: Arc<str> = format!("anonymous:{}:{session}", face.as_str()).into();
        Principal {
            binding: id.clone(),
            id,
            session,
            face,
            authenticated: false,
            peer,
            tenant: None,
            roles: Arc::new([]),
        }
    }

    /// An unauthenticated stateless (2026-07-28) client: nothing names it across requests,
    /// so all such clients share one name; `session` (its connection) still keeps their
    /// per-session server instances apart.
    pub fn anonymous_stateless(face: Face, session: impl Into<Arc<str>>, peer: Peer) -> Principal {
        let id = format!("anonymous:{}", face.as_str());
        // Nothing else tells anonymous stateless clients apart across connections: their
        // sealed state is at least bound to the address they send from.
        let binding = match peer.addr {
            Some(addr) => format!("{id}@{}", addr.ip()),
            None => id.clone(),
        };
        Principal {
            binding: binding.into(),
            id: id.into(),
            session: session.into(),
            face,
            authenticated: false,
            peer,
            tenant: None,
            roles: Arc::new([]),
        }
    }

    /// A caller whose credential proved `identity`.
    pub fn authenticated(
        face: Face,
        session: impl Into<Arc<str>>,
        peer: Peer,
        identity: &Identity,
    ) -> Principal {
        let mut roles = identity.roles.clone();
        roles.sort_unstable();
        roles.dedup();
        Principal {
            binding: identity.id.as_str().into(),
            id: identity.id.as_str().into(),
            session: session.into(),
            face,
            authenticated: true,
            peer,
            tenant: identity.tenant.as_deref().map(Arc::from),
            roles: roles.into(),
        }
    }

    /// Whether this principal is the one `identity` proves (`None`: an anonymous one).
    pub fn is(&self, identity: Option<&Identity>) -> bool {
        match identity {
            None => !self.authenticated,
            Some(identity) => {
                let mut roles = identity.roles.clone();
                roles.sort_unstable();
                roles.dedup();
                self.authenticated
                    && *self.id == *identity.id
                    && self.tenant.as_deref() == identity.tenant.as_deref()
                    && *self.roles == *roles
            }
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn face(&self) -> Face {
        self.face
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The key sealed request state (MRTR `requestState`) is bound to: the caller. Not
    /// the session: a stateless client may retry on another connection. An anonymous
    /// stateless caller is bound to its address (another host cannot resume its call even
    /// holding the state); an authenticated caller must be the same principal.
    pub fn binding(&self) -> &str {
        &self.binding
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_principals_differ_by_face_and_session() {
        let a = Principal::anonymous(Face::Http, "conn:127.0.0.1:1000", Peer::default());
        let b = Principal::anonymous(Face::Http, "conn:127.0.0.1:1001", Peer::default());
        let c = Principal::anonymous(Face::Stdio, "conn:127.0.0.1:1000", Peer::default());
        assert_ne!(a.binding(), b.binding());
        assert_ne!(a.binding(), c.binding());
        let d = Principal::anonymous_stateless(Face::Http, "conn:127.0.0.1:1000", Peer::default());
        let e = Principal::anonymous_stateless(Face::Http, "conn:127.0.0.1:1001", Peer::default());
        assert_eq!(
            d.binding(),
            e.binding(),
            "a retry may come on another connection"
        );
        assert_ne!(d.session(), e.session(), "per-session instances stay apart");
        assert_eq!(a.session(), "conn:127.0.0.1:1000");
        assert!(!a.is_authenticated());
        assert_eq!(a.to_string(), "anonymous:http:conn:127.0.0.1:1000");
    }

    #[test]
    fn authenticated_principals_carry_tenant_and_sorted_roles() {
        let identity = Identity {
            id: "key:ci".into(),
            tenant: Some("acme".into()),
            roles: vec!["b".into(), "a".into(), "b".into()],
        };
        let p = Principal::authenticated(Face::Http, "s1", Peer::default(), &identity);
        assert!(p.is_authenticated());
        assert_eq!(p.id(), "key:ci");
        assert_eq!(p.tenant(), Some("acme"));
        assert_eq!(p.roles(), ["a", "b"]);
    }

    #[test]
    fn anonymous_stateless_state_is_bound_to_the_address() {
        let at = |addr: &str| Peer {
            addr: Some(addr.parse().unwrap()),
            user: None,
        };
        let a = Principal::anonymous_stateless(Face::Http, "conn:a", at("10.0.0.1:1000"));
        let b = Principal::anonymous_stateless(Face::Http, "conn:b", at("10.0.0.1:2000"));
        let c = Principal::anonymous_stateless(Face::Http, "conn:c", at("10.0.0.2:1000"));
        assert_eq!(a.binding(), b.binding(), "same host, another connection");
        assert_ne!(a.binding(), c.binding(), "another host");
        assert_eq!(a.id(), c.id());
    }
}
