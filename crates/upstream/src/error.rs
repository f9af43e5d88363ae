//! Typed errors of upstream connections and calls.

use std::time::Duration;

use switchboard_protocol::RpcError;

/// Why connecting to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("failed to start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("upstream did not finish its handshake within {0:?}")]
    Timeout(Duration),
    #[error("upstream refused the handshake: {0}")]
    Refused(RpcError),
    #[error("upstream handshake failed: {0}")]
    Handshake(String),
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("upstream closed during the handshake: {0}")]
    Closed(String),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(
        "failed to start `{command}` in its sandbox: {source} (joining its cgroups, setting \
         its rlimits, entering its network namespace, no_new_privs or Landlock was refused; \
         with a file system policy, the program, its interpreter and its libraries must be \
         beneath `read_only` or `writable`)"
    )]
    SandboxedSpawn {
        command: String,
        source: std::io::Error,
    },
}

/// Why a call did not produce the upstream's result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The upstream answered with a JSON-RPC error: forwarded as it is.
    #[error("{0}")]
    Rpc(RpcError),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("call cancelled")]
    Cancelled,
    #[error("upstream unavailable: {0}")]
    Closed(String),
    #[error("upstream message exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("upstream protocol violation: {0}")]
    Protocol(String),
    #[error("upstream HTTP error: {0}")]
    Http(String),
    /// The server's process was ended by a limit of its sandbox.
    #[error("upstream {0}")]
    SandboxLimit(crate::sandbox::LimitHit),
}

impl CallError {
    /// Whether the failure says something about the upstream's health (transport failure
    /// or timeout), as opposed to an answer or the caller's own cancellation.
    pub fn is_transport_failure(&self) -> bool {
        matches!(
            self,
            CallError::Timeout(_)
                | CallError::Closed(_)
                | CallError::Protocol(_)
                | CallError::Http(_)
                | CallError::SandboxLimit(_)
        )
    }

    /// The JSON-RPC error a client sees for this failure: the one mapping of upstream call
    /// failures to the wire.
    pub fn to_rpc_error(&self, server: &str) -> RpcError {
        use switchboard_protocol::error::gateway;
        match self {
            CallError::Rpc(error) => error.clone(),
            CallError::Timeout(_) => RpcError::new(
                gateway::UPSTREAM_TIMEOUT,
                format!("server `{server}`: {self}"),
            ),
            CallError::Cancelled => RpcError::new(
                gateway::UPSTREAM_UNAVAILABLE,
                format!("server `{server}`: {self}"),
            ),
            CallError::Closed(_) | CallError::Http(_) => RpcError::new(
                gateway::UPSTREAM_UNAVAILABLE,
                format!("server `{server}`: {self}"),
            ),
            CallError::TooLarge { .. } => RpcError::new(
                gateway::MESSAGE_TOO_LARGE,
                format!("server `{server}`: {self}"),
            ),
            CallError::Protocol(_) => RpcError::new(
                gateway::UPSTREAM_PROTOCOL,
                format!("server `{server}`: {self}"),
            ),
            CallError::SandboxLimit(hit) => {
                RpcError::new(gateway::SANDBOX_LIMIT, format!("server `{server}`: {self}"))
                    .with_data(serde_json::json!({
                        "server": server,
                        "sandboxLimit": hit.control.as_str(),
                        "limit": hit.limit,
                        "evidence": hit.evidence,
                    }))
            }
        }
    }
}
