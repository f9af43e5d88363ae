//! Answering one request: JSON when nothing precedes the result, an SSE stream the moment a
//! related notification or a server→client request must go first; frames and statuses.

use super::*;

pub(super) fn sse_frame(message: &Message) -> Bytes {
    sse_frame_of(&message.to_bytes())
}

pub(super) fn sse_frame_of(json: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(json.len() + 24);
    frame.extend_from_slice(b"event: message\ndata: ");
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// A finished request's answer: a message, or a list page's response already rendered.
pub(super) enum Answer {
    Message(Message),
    Rendered(Vec<u8>),
}

impl Answer {
    fn into_response(self, era: Era) -> Response {
        match self {
            Answer::Message(message) => json_response(status_for(era, &message), &message),
            Answer::Rendered(body) => json_body(StatusCode::OK, body),
        }
    }

    fn sse_frame(&self) -> Bytes {
        match self {
            Answer::Message(message) => sse_frame(message),
            Answer::Rendered(body) => sse_frame_of(body),
        }
    }
}

pub(super) fn sse_response(
    rx: mpsc::Receiver<Bytes>,
    guard: Option<tokio_util::sync::DropGuard>,
) -> Response {
    // The guard lives as long as the body: the client going away cancels the work.
    let stream = ReceiverStream::new(rx).map(move |frame| {
        let _keep = &guard;
        Ok::<_, Infallible>(frame)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// Runs a request and answers with JSON, or with SSE once something must precede the
/// result (a notification, or a server→client request for a legacy client).
///
/// The request runs inside this handler until it answers (the common case: no task is
/// spawned); only when a stream is needed does the rest move to a task that feeds it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn respond(
    gateway: Gateway,
    ctx: ClientCtx,
    id: RequestId,
    method: String,
    params: Option<Value>,
    mut notify_rx: mpsc::Receiver<Message>,
    mut peer_rx: Option<mpsc::Receiver<PeerRequest>>,
    session: Option<Arc<LegacySession>>,
) -> Response {
    let era = ctx.era;
    // Dropped with this future (or later, with the stream): the client going away cancels
    // the work.
    let guard = ctx.cancel.clone().drop_guard();
    // Cancelled by the client's `notifications/cancelled` (or the session's end): the
    // request gets no answer, as on stdio.
    let cancelled = ctx.cancel.clone();
    let entry = InflightEntry {
        session: session.clone(),
        id: id.clone(),
    };
    let mut work = Box::pin(async move {
        let _entry = entry; // however the work ends
        match gateway.handle_reply(&ctx, &method, params).await {
            Ok(Reply::Page(page)) => Answer::Rendered(page.response_bytes(&id)),
            outcome => Answer::Message(Message::reply(id, outcome.map(Reply::into_value))),
        }
    });
    // Until the result, or the first thing that forces a stream.
    let mut frames = Vec::new();
    let finished = match next_progress(&mut work, &mut notify_rx, &mut peer_rx).await {
        Progress::Done(_) if cancelled.is_cancelled() => {
            // The POST must be closed with something: a stream that ends without any
            // message (see ARCHITECTURE.md, "Cancellation").
            let _disarmed = guard.disarm();
            let (_, empty) = mpsc::channel::<Bytes>(1);
            return sse_response(empty, None);
        }
        Progress::Done(answer) => {
            // Anything queued before the result goes first, on a stream.
            if notify_rx.is_empty() {
                let _disarmed = guard.disarm();
                return answer.into_response(era);
            }
            frames.extend(closing_frames(answer, &mut notify_rx));
            true
        }
        progress => {
            frames.extend(progress_frame(progress, session.as_deref()));
            false
        }
    };
    let (frames_tx, frames_rx) = mpsc::channel::<Bytes>(64);
    // Owned by the stream: ends with the result or when the client goes away.
    tokio::spawn(async move {
        let mut finished = finished;
        loop {
            for frame in frames.drain(..) {
                if frames_tx.send(frame).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
            match next_progress(&mut work, &mut notify_rx, &mut peer_rx).await {
                // Cancelled: the stream ends without the answer.
                Progress::Done(_) if cancelled.is_cancelled() => return,
                Progress::Done(answer) => {
                    frames.extend(closing_frames(answer, &mut notify_rx));
                    finished = true;
                }
                progress => frames.extend(progress_frame(progress, session.as_deref())),
            }
        }
    });
    sse_response(frames_rx, Some(guard))
}

/// What happens next while a request runs.
pub(super) enum Progress {
    /// A notification related to the request.
    Note(Message),
    /// A server→client request for a legacy client.
    Peer(PeerRequest),
    /// The answer.
    Done(Answer),
}

/// Waits for the next thing a running request produces; notifications sent before the
/// answer come first.
pub(super) async fn next_progress(
    work: &mut (impl Future<Output = Answer> + Unpin),
    notify_rx: &mut mpsc::Receiver<Message>,
    peer_rx: &mut Option<mpsc::Receiver<PeerRequest>>,
) -> Progress {
    tokio::select! {
        biased;
        Some(note) = notify_rx.recv() => Progress::Note(note),
        answer = work => Progress::Done(answer),
        Some(request) = recv_peer(peer_rx) => Progress::Peer(request),
    }
}

/// The stream frame of a notification or a server→client request (legacy sessions only).
pub(super) fn progress_frame(progress: Progress, session: Option<&LegacySession>) -> Option<Bytes> {
    match progress {
        Progress::Note(note) => Some(sse_frame(&note)),
        Progress::Peer(request) => Some(sse_frame(&session?.peers.request(request))),
        Progress::Done(answer) => Some(answer.sse_frame()),
    }
}

/// The last frames of a stream: whatever was queued before the answer, then the answer.
pub(super) fn closing_frames(
    answer: Answer,
    notify_rx: &mut mpsc::Receiver<Message>,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while let Ok(note) = notify_rx.try_recv() {
        frames.push(sse_frame(&note));
    }
    frames.push(answer.sse_frame());
    frames
}

/// A legacy session's record of one request in flight (for `notifications/cancelled`),
/// removed when the request ends however it ends.
pub(super) struct InflightEntry {
    session: Option<Arc<LegacySession>>,
    id: RequestId,
}

impl Drop for InflightEntry {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.finish(&self.id);
        }
    }
}

pub(super) async fn recv_peer(
    peer_rx: &mut Option<mpsc::Receiver<PeerRequest>>,
) -> Option<PeerRequest> {
    match peer_rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The HTTP status of a JSON answer. Legacy errors travel in 200 responses; the modern
/// transport gives some errors their own status (2026-07-28 streamable-http "Request
/// Metadata" and basic "_meta"): unknown methods 404, header mismatch, missing client
/// capability and unsupported version 400 — also when the error came from upstream.
pub(super) fn status_for(era: Era, message: &Message) -> StatusCode {
    use switchboard_protocol::error::{
        HEADER_MISMATCH, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
    };
    match (era, message) {
        (Era::Modern, Message::Error { error, .. }) => match error.code {
            METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    }
}

pub(super) fn json_response(status: StatusCode, message: &Message) -> Response {
    json_body(status, message.to_bytes())
}

pub(super) fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
