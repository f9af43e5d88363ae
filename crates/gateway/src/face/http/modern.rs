//! Modern (2026-07-28) requests on the HTTP face: mirrored-header validation, the
//! stateless principal, one request's answer, and `subscriptions/listen` streams.

use super::*;

/// Validates the mirrored headers of a modern request against its body.
pub(super) fn validate_mirrors(
    state: &FaceState,
    request_headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<(), RpcError> {
    // A repeated mirror header is ambiguous: intermediaries may read either copy.
    for name in [headers::PROTOCOL_VERSION, headers::METHOD, headers::NAME] {
        if request_headers.get_all(name).iter().count() > 1 {
            return Err(RpcError::header_mismatch(format!(
                "duplicate {name} header"
            )));
        }
    }
    let body_version = declared_version(params).unwrap_or_default();
    match header_str(request_headers, headers::PROTOCOL_VERSION) {
        None => {
            return Err(RpcError::header_mismatch(
                "missing MCP-Protocol-Version header",
            ));
        }
        Some(v) if v != body_version => {
            return Err(RpcError::header_mismatch(format!(
                "MCP-Protocol-Version header `{v}` does not match body `{body_version}`"
            )));
        }
        Some(_) => {}
    }
    match header_str(request_headers, headers::METHOD) {
        None => return Err(RpcError::header_mismatch("missing Mcp-Method header")),
        Some(m) if m != method => {
            return Err(RpcError::header_mismatch(format!(
                "Mcp-Method header `{m}` does not match body `{method}`"
            )));
        }
        Some(_) => {}
    }
    if let Some(field) = headers::name_field(method) {
        let body_name = params.and_then(|p| p.get(field)).and_then(Value::as_str);
        let raw = request_headers.get(headers::NAME).map(|v| v.as_bytes());
        let header_name = match raw {
            None => return Err(RpcError::header_mismatch("missing Mcp-Name header")),
            Some(raw) => headers::decode_value(raw)
                .ok_or_else(|| RpcError::header_mismatch("invalid Mcp-Name header"))?,
        };
        if Some(header_name.as_str()) != body_name {
            return Err(RpcError::header_mismatch(format!(
                "Mcp-Name header value '{header_name}' does not match body value '{}'",
                body_name.unwrap_or_default()
            )));
        }
    }
    if method == "tools/call" {
        let tool = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let catalog = state.gateway.catalog();
        let expected = headers::param_header_values(
            catalog.tool_param_headers(tool),
            params.and_then(|p| p.get("arguments")),
        );
        for (name, encoded) in expected {
            let decoded_expected = headers::decode_value(encoded.as_bytes()).unwrap_or_default();
            let got = request_headers
                .get(name.as_str())
                .map(|v| headers::decode_value(v.as_bytes()));
            match got {
                None => return Err(RpcError::header_mismatch(format!("missing {name} header"))),
                Some(None) => {
                    return Err(RpcError::header_mismatch(format!(
                        "invalid characters in {name} header"
                    )));
                }
                Some(Some(value)) if !values_match(&value, &decoded_expected) => {
                    return Err(RpcError::header_mismatch(format!(
                        "{name} header does not match the body"
                    )));
                }
                Some(Some(_)) => {}
            }
        }
    }
    Ok(())
}

/// Header/body comparison; integers compare numerically (`42.0` equals `42`).
pub(super) fn values_match(header_value: &str, body_value: &str) -> bool {
    if header_value == body_value {
        return true;
    }
    matches!((header_value.parse::<f64>(), body_value.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// A modern (stateless) client's principal. Until clients authenticate, its session is
/// the TCP connection it sends on: two clients never share one `per_session` instance.
pub(super) fn modern_principal(peer: Option<SocketAddr>, identity: Option<&Identity>) -> Principal {
    let session = match peer {
        Some(addr) => format!("conn:{addr}"),
        None => "conn:unknown".to_owned(),
    };
    let peer = Peer {
        addr: peer,
        user: None,
    };
    match identity {
        Some(identity) => Principal::authenticated(Face::Http, session, peer, identity),
        None => Principal::anonymous_stateless(Face::Http, session, peer),
    }
}

pub(super) async fn modern_post(
    state: &Arc<FaceState>,
    request_headers: &HeaderMap,
    message: Message,
    choice: crate::gateway::ClientChoice,
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
) -> Response {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (Some(id), method, params),
        Message::Notification { method, params } => (None, method, params),
        _ => {
            return reject(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::invalid_request("clients must not send responses"),
            );
        }
    };
    // A request whose body names no version is malformed (-32602) whatever its headers
    // say; only then can the header be compared with the body (-32020).
    if id.is_some() && declared_version(params.as_ref()).is_none() {
        let error = modern_meta(params.as_ref())
            .err()
            .unwrap_or_else(|| RpcError::invalid_params("missing _meta"));
        return reject(StatusCode::BAD_REQUEST, id, error);
    }
    if let Err(error) = validate_mirrors(state, request_headers, &method, params.as_ref()) {
        return reject(StatusCode::BAD_REQUEST, id, error);
    }
    let meta = match modern_meta(params.as_ref()) {
        Ok(meta) => meta,
        Err(error) => return reject(StatusCode::BAD_REQUEST, id, error),
    };
    let Some(id) = id else {
        // Modern notifications carry nothing we act on (cancellation is closing a stream).
        return StatusCode::ACCEPTED.into_response();
    };
    if !is_modern_method(&method) {
        return reject(
            StatusCode::NOT_FOUND,
            Some(id),
            RpcError::method_not_found(&method),
        );
    }
    let (notify_tx, notify_rx) = mpsc::channel(64);
    let ctx = ClientCtx {
        era: Era::Modern,
        protocol_version: meta.version,
        capabilities: meta.capabilities,
        client_info: meta.client_info,
        principal: modern_principal(peer, identity.as_ref()),
        notify: Some(notify_tx),
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: choice.meta_tools,
        tools_mode: choice.tools_mode,
    };
    if method == "subscriptions/listen" {
        // The subscription itself passes the pipeline (who may listen) before its stream opens.
        if let Err(error) = state
            .gateway
            .handle(&ctx, "subscriptions/listen", params.clone())
            .await
        {
            return reject(StatusCode::OK, Some(id), error);
        }
        return listen_stream(state, ctx, id, params);
    }
    respond(
        state.gateway.clone(),
        ctx,
        id,
        method,
        params,
        notify_rx,
        None,
        None,
    )
    .await
}

/// Modern `subscriptions/listen`: an SSE stream of acknowledged, filtered notifications.
pub(super) fn listen_stream(
    state: &Arc<FaceState>,
    ctx: ClientCtx,
    id: RequestId,
    params: Option<Value>,
) -> Response {
    let mut filter = ListenFilter::parse(params.as_ref());
    let gateway = state.gateway.clone();
    let (tx, rx) = mpsc::channel(64);
    let guard = ctx.cancel.clone().drop_guard();
    tokio::spawn(async move {
        let mut changes = gateway.subscribe();
        let _relay = filter.resolve_tasks(&gateway, &ctx);
        let holder = format!("listen-{}", uuid::Uuid::new_v4().simple());
        gateway.watch_resources(&holder, filter.uris(), true).await;
        let mut open = tx
            .send(sse_frame(&filter.acknowledgement(&id)))
            .await
            .is_ok();
        while open {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    open = tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_ok();
                    continue;
                }
                () = ctx.cancel.cancelled() => break,
            };
            match change {
                Ok(change) => {
                    if gateway.sees(&ctx.principal, &change)
                        && let Some(message) = filter.render(&change, &id, ctx.principal.session())
                    {
                        open = tx.send(sse_frame(&message)).await.is_ok();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(sse_frame(&ListenFilter::completion(&id))).await;
                    break;
                }
            }
        }
        gateway.watch_resources(&holder, filter.uris(), false).await;
    });
    sse_response(rx, Some(guard))
}
