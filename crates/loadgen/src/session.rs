//! Calls and the slots they run on. A `Slot` is one client: a kept-alive connection plus,
//! in the legacy era, its own MCP session (`initialize` once, then `Mcp-Session-Id` on every
//! call). The `Pool` lends slots to whoever drives the load, so `--connections` can be
//! smaller than `--concurrency`. The `Caller` is the immutable description of what one call
//! is: target, era, request templates, and the shared id counter.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{Connection, Reply, Target};
use crate::mcp::{self, Answer, CallError, Era, Template};

const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const METHOD: HeaderName = HeaderName::from_static("mcp-method");
const NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Bound on opening one slot (connect + legacy handshake) and on closing the sessions.
const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What each call does.
#[derive(Clone, Debug)]
pub enum Workload {
    /// `tools/call`, rotating over the given tools.
    ToolCall(Vec<Template>),
    /// `tools/list`; with `all_pages` one call walks every page (following `nextCursor`).
    ToolsList { first: Template, all_pages: bool },
}

/// A legacy session as the server granted it. Servers that run legacy HTTP statelessly may
/// grant no session id; calls then carry none.
#[derive(Clone, Debug)]
struct Session {
    id: Option<HeaderValue>,
    version: HeaderValue,
}

/// One client of the target.
#[derive(Default)]
pub struct Slot {
    connection: Option<Connection>,
    session: Option<Session>,
    /// Set while a request is on the wire: a call abandoned halfway (timeout) leaves the
    /// connection mid-exchange, so the next user must open a fresh one.
    busy: bool,
}

/// The successful part of one call.
#[derive(Debug, Default)]
pub struct CallInfo {
    /// `tools/list`: how many tools the call saw (all pages when walking them).
    pub tools: Option<usize>,
}

pub struct Caller {
    pub target: Target,
    pub era: Era,
    workload: Workload,
    ids: AtomicU64,
    turn: AtomicUsize,
}

impl Caller {
    pub fn new(target: Target, era: Era, workload: Workload) -> Caller {
        Caller {
            target,
            era,
            workload,
            ids: AtomicU64::new(1),
            turn: AtomicUsize::new(0),
        }
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens the connection and, in the legacy era, the session, if the slot lacks them.
    pub async fn prepare(&self, slot: &mut Slot) -> Result<(), CallError> {
        if slot.busy {
            slot.connection = None;
            slot.busy = false;
        }
        if slot.connection.is_none() {
            slot.connection = Some(Connection::open(&self.target).await?);
        }
        if self.era == Era::Legacy && slot.session.is_none() {
            slot.session = Some(self.initialize(slot).await?);
        }
        Ok(())
    }

    async fn initialize(&self, slot: &mut Slot) -> Result<Session, CallError> {
        let id = self.next_id();
        let reply = self.exchange(slot, &[], mcp::initialize_body(id)).await?;
        let answer = expect_answer(&reply, id)?;
        let version = answer
            .protocol_version
            .ok_or_else(|| CallError::BadResponse("initialize without protocolVersion".into()))?;
        let session = Session {
            id: reply.headers.get(&SESSION_ID).cloned(),
            version: HeaderValue::from_str(&version)
                .map_err(|_| CallError::BadResponse("unprintable protocolVersion".into()))?,
        };
        let reply = self
            .exchange(slot, &session_headers(&session), mcp::initialized_body())
            .await?;
        if !reply.status.is_success() {
            return Err(CallError::Http(reply.status.as_u16(), reply.excerpt()));
        }
        Ok(session)
    }

    /// Sends one POST on the slot's connection, marking the slot busy while it is out.
    async fn exchange(
        &self,
        slot: &mut Slot,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let connection = slot
            .connection
            .as_mut()
            .ok_or_else(|| CallError::Transport("no connection".into()))?;
        slot.busy = true;
        let outcome = connection.post(&self.target, headers, body).await;
        slot.busy = false;
        if outcome.is_err() {
            slot.connection = None;
        }
        outcome
    }

    fn call_headers(&self, slot: &Slot, template: &Template) -> Vec<(HeaderName, HeaderValue)> {
        match self.era {
            Era::Legacy => slot
                .session
                .as_ref()
                .map(session_headers)
                .unwrap_or_default(),
            Era::Modern => {
                let mut headers = vec![
                    (
                        PROTOCOL_VERSION,
                        HeaderValue::from_static(mcp::MODERN_VERSION),
                    ),
                    (METHOD, HeaderValue::from_static(template.method)),
                ];
                if let Some(name) = &template.name {
                    headers.push((NAME, name.clone()));
                }
                headers
            }
        }
    }

    /// One call, as the workload defines it. Errors leave the slot ready to recover: a
    /// broken connection is dropped, a lost legacy session is forgotten.
    pub async fn call(&self, slot: &mut Slot) -> Result<CallInfo, CallError> {
        self.prepare(slot).await?;
        let outcome = match &self.workload {
            Workload::ToolCall(templates) => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed) % templates.len();
                let template = &templates[turn];
                let id = self.next_id();
                let headers = self.call_headers(slot, template);
                let reply = self.exchange(slot, &headers, template.body(id)).await?;
                expect_answer(&reply, id).map(|_| CallInfo::default())
            }
            Workload::ToolsList { first, all_pages } => {
                self.list_tools(slot, first, *all_pages).await
            }
        };
        if let Err(CallError::Http(404, _)) = &outcome
            && self.era == Era::Legacy
        {
            // The server forgot the session (expired or restarted): start a new one.
            slot.session = None;
        }
        outcome
    }

    async fn list_tools(
        &self,
        slot: &mut Slot,
        first: &Template,
        all_pages: bool,
    ) -> Result<CallInfo, CallError> {
        let headers = self.call_headers(slot, first);
        let id = self.next_id();
        let reply = self.exchange(slot, &headers, first.body(id)).await?;
        let mut answer = expect_answer(&reply, id)?;
        let mut tools = answer.tools.unwrap_or(0);
        while all_pages && let Some(cursor) = answer.next_cursor.take() {
            let id = self.next_id();
            let body = mcp::tools_list_page(self.era, id, &cursor);
            let reply = self.exchange(slot, &headers, body).await?;
            answer = expect_answer(&reply, id)?;
            tools += answer.tools.unwrap_or(0);
        }
        Ok(CallInfo { tools: Some(tools) })
    }

    /// Ends a legacy session politely (DELETE is optional for servers; errors are ignored).
    pub async fn close(&self, slot: &mut Slot) {
        if let (Some(session), Some(connection)) = (slot.session.take(), slot.connection.as_mut())
            && let Some(id) = session.id
        {
            let _ = connection.delete(&self.target, &[(SESSION_ID, id)]).await;
        }
    }
}

fn session_headers(session: &Session) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![(PROTOCOL_VERSION, session.version.clone())];
    if let Some(id) = &session.id {
        headers.push((SESSION_ID, id.clone()));
    }
    headers
}

fn expect_answer(reply: &Reply, id: u64) -> Result<Answer, CallError> {
    if reply.status != StatusCode::OK {
        return Err(CallError::Http(reply.status.as_u16(), reply.excerpt()));
    }
    mcp::check_reply(reply.content_type(), &reply.body, id)
}

/// The slots a run may use, lent out one at a time.
pub struct Pool {
    idle: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl Pool {
    /// Opens `size` slots up front (connections and legacy sessions are not part of the
    /// measured calls), at most 32 handshakes at a time.
    pub async fn open(caller: &Caller, size: usize) -> Result<Arc<Pool>, CallError> {
        let size = size.max(1);
        let opened: Vec<Result<Slot, CallError>> = futures::stream::iter(0..size)
            .map(|_| async {
                let mut slot = Slot::default();
                match tokio::time::timeout(SETUP_TIMEOUT, caller.prepare(&mut slot)).await {
                    Ok(outcome) => outcome.map(|()| slot),
                    Err(_) => Err(CallError::Timeout),
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let slots = opened.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Pool {
            idle: Mutex::new(slots),
            permits: Arc::new(Semaphore::new(size)),
            size,
        }))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub async fn checkout(self: &Arc<Self>) -> Lease {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool semaphore is never closed");
        // A permit guarantees an idle slot: permits and slots are returned together.
        let slot = self
            .idle
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_default();
        Lease {
            pool: self.clone(),
            slot: Some(slot),
            _permit: permit,
        }
    }

    /// Closes every legacy session (call when no lease is out).
    pub async fn close(&self, caller: &Caller) {
        let slots: Vec<Slot> = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        let closing = slots.into_iter().map(|mut slot| async move {
            caller.close(&mut slot).await;
        });
        // Best effort, and bounded: a server that does not answer DELETE is not waited for.
        let _ = tokio::time::timeout(SETUP_TIMEOUT, futures::future::join_all(closing)).await;
    }
}

/// A borrowed slot; dropping it returns the slot before the permit, so the next borrower
/// always finds one.
pub struct Lease {
    pool: Arc<Pool>,
    slot: Option<Slot>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Lease {
    type Target = Slot;
    fn deref(&self) -> &Slot {
        self.slot.as_ref().expect("slot present until drop")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Slot {
        self.slot.as_mut().expect("slot present until drop")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.pool.idle.lock().expect("pool lock").push(slot);
        }
    }
}
