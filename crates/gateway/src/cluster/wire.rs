//! What replicas say to each other on the internal channel (`POST /cluster/call`,
//! `POST /cluster/answer`): the forwarded call with the caller as the calling replica
//! resolved it, and the frames of the owner's answer — one JSON object per line
//! (`application/x-ndjson`), streamed while the call runs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_protocol::{Era, RpcError};

use crate::principal::{Face, Peer, Principal};

/// The caller of a forwarded call, as the calling replica knows it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Caller {
    pub(crate) era: String,
    pub(crate) protocol_version: String,
    pub(crate) capabilities: Value,
    pub(crate) client_info: Option<Value>,
    /// Whether the caller can answer server→client requests (a legacy client's stream).
    pub(crate) peer: bool,
    pub(crate) id: String,
    pub(crate) session: String,
    pub(crate) face: String,
    pub(crate) authenticated: bool,
    pub(crate) tenant: Option<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) binding: String,
}

impl Caller {
    pub(crate) fn of(ctx: &crate::gateway::ClientCtx) -> Caller {
        let principal = &ctx.principal;
        Caller {
            era: ctx.era.as_str().to_owned(),
            protocol_version: ctx.protocol_version.clone(),
            capabilities: ctx.capabilities.clone(),
            client_info: ctx.client_info.clone(),
            peer: ctx.peer.is_some(),
            id: principal.id().to_owned(),
            session: principal.session().to_owned(),
            face: principal.face().as_str().to_owned(),
            authenticated: principal.is_authenticated(),
            tenant: principal.tenant().map(str::to_owned),
            roles: principal.roles().to_vec(),
            binding: principal.binding().to_owned(),
        }
    }

    pub(crate) fn era(&self) -> Era {
        match self.era.as_str() {
            "modern" => Era::Modern,
            _ => Era::Legacy,
        }
    }

    /// The same principal on the owner: same name, session, tenant, roles and binding
    /// (so sealed state and per-caller instances behave as on the calling replica).
    pub(crate) fn principal(&self) -> Principal {
        let face = match self.face.as_str() {
            "stdio" => Face::Stdio,
            "ws" => Face::WebSocket,
            _ => Face::Http,
        };
        Principal::relayed(crate::principal::Relayed {
            id: Arc::from(self.id.as_str()),
            session: Arc::from(self.session.as_str()),
            face,
            authenticated: self.authenticated,
            peer: Peer::default(),
            tenant: self.tenant.as_deref().map(Arc::from),
            roles: self.roles.clone(),
            binding: Arc::from(self.binding.as_str()),
        })
    }
}

/// One forwarded call.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub(crate) server: String,
    /// The epoch of the lease the calling replica routed by (the fencing token).
    pub(crate) epoch: u64,
    pub(crate) method: String,
    pub(crate) params: Value,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) caller: Caller,
}

/// A server→client request travelling back to the calling replica.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ask {
    pub(crate) id: u64,
    pub(crate) method: String,
    pub(crate) params: Option<Value>,
}

/// One line of the owner's answer stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Frame {
    /// First: the call's id on the owner (for answers to `Ask`s).
    Call(String),
    /// A notification related to the call (progress, logging), as the client gets it.
    Notify(Value),
    /// A server→client request for the caller.
    Ask(Ask),
    /// Nothing happened for a while; the owner is alive.
    Ping,
    /// The call's result; last.
    Result(Value),
    /// The call's error; last.
    Error(RpcError),
}

impl Frame {
    pub(crate) fn line(&self) -> bytes::Bytes {
        let mut bytes = serde_json::to_vec(self).expect("a frame serializes");
        bytes.push(b'\n');
        bytes.into()
    }
}

/// The calling replica's answer to an `Ask`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) call: String,
    pub(crate) id: u64,
    pub(crate) outcome: Result<Value, RpcError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Identity;

    #[test]
    fn frames_are_lines() {
        let frame = Frame::Ask(Ask {
            id: 3,
            method: "elicitation/create".into(),
            params: None,
        });
        let line = frame.line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back: Frame = serde_json::from_slice(&line).unwrap();
        assert!(matches!(back, Frame::Ask(Ask { id: 3, .. })));
        let back: Frame = serde_json::from_slice(&Frame::Ping.line()).unwrap();
        assert!(matches!(back, Frame::Ping));
    }

    #[test]
    fn the_principal_crosses_unchanged() {
        let identity = Identity {
            id: "key:alice".into(),
            tenant: Some("acme".into()),
            roles: vec!["dev".into(), "admin".into()],
        };
        let principal = Principal::authenticated(Face::Http, "s-1", Peer::default(), &identity);
        let ctx = crate::gateway::ClientCtx {
            era: Era::Modern,
            protocol_version: "2026-07-28".into(),
            capabilities: serde_json::json!({ "sampling": {} }),
            client_info: None,
            principal: principal.clone(),
            notify: None,
            peer: None,
            cancel: Default::default(),
            meta_tools: false,
            tools_mode: Default::default(),
        };
        let caller: Caller =
            serde_json::from_value(serde_json::to_value(Caller::of(&ctx)).unwrap()).unwrap();
        assert_eq!(caller.era(), Era::Modern);
        assert!(!caller.peer);
        let relayed = caller.principal();
        assert_eq!(relayed.id(), principal.id());
        assert_eq!(relayed.session(), principal.session());
        assert_eq!(relayed.binding(), principal.binding());
        assert_eq!(relayed.tenant(), Some("acme"));
        assert_eq!(relayed.roles(), principal.roles());
        assert!(relayed.is(Some(&identity)));
    }
}
