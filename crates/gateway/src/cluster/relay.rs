//! The calling replica's side of a call to a `cluster = "owned"` server that runs on
//! another replica: the call goes to the owner (`POST /cluster/call`, bearer secret),
//! whose answer is a stream of frames (`wire::Frame`). Progress and logging
//! notifications reach the caller as they come; a server→client request is put to the
//! caller (`bridge::ask_peer`) and its answer posted back (`/cluster/answer`);
//! cancelling the call closes the stream, which cancels it on the owner (and upstream).
//!
//! Nothing waits unbounded: connecting has a deadline, the owner sends a frame at least
//! every [`KEEPALIVE`] (so a silent owner is given up after [`SILENCE`]), and an owner
//! that dies mid-call ends the stream at once — each a retryable `-31001` that names the
//! server and says why.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use switchboard_protocol::error::gateway as codes;
use switchboard_protocol::{Message, RpcError};

use super::lease::Record;
use super::owned::Ownership;
use super::wire::{Answer, Ask, CallRequest, Caller, Frame};
use crate::bridge::Forward;
use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway};

/// How often the owner shows it is alive on a quiet call.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(2);
/// How long the calling replica waits for any frame before giving the owner up.
pub(crate) const SILENCE: Duration = Duration::from_secs(10);

/// A retryable error for a call that could not reach, or lost, the owner.
pub(crate) fn unavailable(server: &str, why: impl std::fmt::Display) -> Error {
    Error::Rpc(
        RpcError::new(
            codes::UPSTREAM_UNAVAILABLE,
            format!("server `{server}` runs on another replica of the cluster, and {why}"),
        )
        .with_data(json!({ "retryable": true, "server": server })),
    )
}

/// Why a relay attempt failed before the owner took the call.
enum Refused {
    /// The owner no longer holds the lease under that epoch (or never did): ask Redis.
    Stale,
    Failed(Error),
}

impl Gateway {
    /// Forwards `forward` to the replica that owns its server, once more after learning
    /// a new owner if the first one refused as stale.
    pub(crate) async fn relay_to_owner(
        &self,
        ownership: &Ownership,
        ctx: &ClientCtx,
        forward: Forward<'_>,
    ) -> Result<Value, Error> {
        let server = forward.server;
        let request = CallRequest {
            server: server.to_owned(),
            epoch: 0,
            method: forward.method.to_owned(),
            params: forward.params,
            headers: forward.headers,
            caller: Caller::of(ctx),
        };
        let mut request = request;
        for attempt in 0..2 {
            let owner = match ownership.owner(server) {
                Some(owner) if attempt == 0 => Some(owner),
                _ => ownership.refresh(server).await,
            };
            let Some(owner) = owner else {
                ownership.wake.notify_one();
                return Err(unavailable(
                    server,
                    "no replica owns it right now (its owner stopped; another takes over within the lease time)",
                ));
            };
            request.epoch = owner.epoch;
            match self.relay_once(ownership, ctx, &owner, &request).await {
                Ok(outcome) => return outcome,
                Err(Refused::Stale) => continue,
                Err(Refused::Failed(error)) => {
                    ownership.forget(server);
                    return Err(error);
                }
            }
        }
        Err(unavailable(server, "its owner keeps changing"))
    }

    async fn relay_once(
        &self,
        ownership: &Ownership,
        ctx: &ClientCtx,
        owner: &Record,
        request: &CallRequest,
    ) -> Result<Result<Value, Error>, Refused> {
        let server = request.server.as_str();
        let secret = ownership
            .secret
            .as_ref()
            .ok_or_else(|| Refused::Failed(unavailable(server, "no [cluster] secret is set")))?;
        let base = format!("http://{}", owner.address);
        let sent = ownership
            .http
            .post(format!("{base}/cluster/call"))
            .bearer_auth(secret.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(request).expect("a call serializes"))
            .send();
        let response = tokio::select! {
            response = tokio::time::timeout(SILENCE, sent) => response,
            () = ctx.cancel.cancelled() => return Ok(Err(Error::Cancelled)),
        };
        let response = match response {
            Err(_) => {
                return Err(Refused::Failed(unavailable(
                    server,
                    format!("its owner ({}) did not answer", owner.address),
                )));
            }
            Ok(Err(error)) => {
                return Err(Refused::Failed(unavailable(
                    server,
                    format!(
                        "its owner ({}) is unreachable: {}",
                        owner.address,
                        without_url(&error)
                    ),
                )));
            }
            Ok(Ok(response)) => response,
        };
        match response.status().as_u16() {
            200 => {}
            409 => return Err(Refused::Stale),
            status => {
                return Err(Refused::Failed(unavailable(
                    server,
                    format!("its owner refused the call (HTTP {status})"),
                )));
            }
        }
        let max_line = self.inner.settings.max_message_bytes.saturating_add(1024);
        let mut body = response.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut call_id = String::new();
        let mut answers = FuturesUnordered::new();
        loop {
            let chunk = tokio::select! {
                chunk = tokio::time::timeout(SILENCE, body.next()) => chunk,
                Some(answer) = answers.next(), if !answers.is_empty() => {
                    self.post_answer(ownership, &base, answer).await;
                    continue;
                }
                // Dropping the stream closes the connection: the owner cancels the call.
                () = ctx.cancel.cancelled() => return Ok(Err(Error::Cancelled)),
            };
            let chunk = match chunk {
                Err(_) => {
                    return Ok(Err(unavailable(
                        server,
                        format!("its owner ({}) went silent mid-call", owner.address),
                    )));
                }
                Ok(None) | Ok(Some(Err(_))) => {
                    ownership.forget(server);
                    return Ok(Err(unavailable(
                        server,
                        format!(
                            "its owner ({}) went away mid-call; the call may or may not have run",
                            owner.address
                        ),
                    )));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let frame: Frame = match serde_json::from_slice(&line) {
                    Ok(frame) => frame,
                    Err(error) => {
                        return Ok(Err(unavailable(
                            server,
                            format!("its owner sent an unreadable frame: {error}"),
                        )));
                    }
                };
                match frame {
                    Frame::Call(id) => call_id = id,
                    Frame::Ping => {}
                    Frame::Notify(message) => {
                        if let (Some(notify), Ok(message)) =
                            (&ctx.notify, Message::parse(message.to_string().as_bytes()))
                        {
                            let _ = notify.try_send(message);
                        }
                    }
                    Frame::Ask(Ask { id, method, params }) => {
                        let call = call_id.clone();
                        answers.push(async move {
                            let outcome = crate::bridge::ask_peer(ctx, method, params).await;
                            Answer { call, id, outcome }
                        });
                    }
                    Frame::Result(result) => return Ok(Ok(result)),
                    Frame::Error(error) => return Ok(Err(Error::Rpc(error))),
                }
            }
            if buffer.len() > max_line {
                return Ok(Err(unavailable(
                    server,
                    "its owner sent a frame over the message size limit",
                )));
            }
        }
    }

    /// Posts a caller's answer to a server→client request back to the owner (bounded by
    /// the keep-alive silence; a lost answer ends that request on the owner as its call
    /// ends).
    async fn post_answer(&self, ownership: &Ownership, base: &str, answer: Answer) {
        let Some(secret) = ownership.secret.as_ref() else {
            return;
        };
        let sent = ownership
            .http
            .post(format!("{base}/cluster/answer"))
            .bearer_auth(secret.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&answer).expect("an answer serializes"))
            .timeout(SILENCE)
            .send()
            .await;
        if let Err(error) = sent {
            tracing::warn!(error = %without_url(&error), "cluster: answer to the owner not delivered");
        }
    }
}

/// A reqwest error without its URL (addresses are fine; this keeps messages short).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
