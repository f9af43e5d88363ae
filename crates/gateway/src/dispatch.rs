//! Era-neutral request handling: the methods switchboard answers itself (handshake,
//! merged lists with pagination) and routing of everything else to the owning server.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use switchboard_protocol::{Era, RpcError, headers, meta};

use crate::bridge::Forward;
use crate::catalog::{Listing, PAGE_SIZE};
use crate::gateway::{ClientCtx, Gateway};
use crate::reply::{Page, Reply};

/// Methods whose complete results carry `ttlMs` and `cacheScope` (2026-07-28 caching).
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

impl Gateway {
    /// Handles one client request. Faces call this for every method except the legacy
    /// `initialize` handshake, which belongs to the session.
    pub async fn handle(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, RpcError> {
        self.handle_reply(ctx, method, params)
            .await
            .map(Reply::into_value)
    }

    /// [`Gateway::handle`], with list pages left pre-rendered for a face that writes bytes.
    pub async fn handle_reply(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, RpcError> {
        let params = match params {
            None | Some(Value::Null) => json!({}),
            Some(object @ Value::Object(_)) => object,
            Some(_) => return Err(RpcError::invalid_params("params must be an object")),
        };
        let reply = match method {
            "tools/list" => self.list_tools(ctx, &params)?,
            "prompts/list" => self.list_page(&params, Listing::Prompts)?,
            "resources/list" => self.list_page(&params, Listing::Resources)?,
            "resources/templates/list" => self.list_page(&params, Listing::Templates)?,
            _ => Reply::Value(match method {
                "ping" => Ok(json!({})),
                "server/discover" => Ok(self.discover_result()),
                "tools/call" => self.call_tool(ctx, params).await,
                "prompts/get" => self.get_prompt(ctx, params).await,
                "resources/read" => self.read_resource(ctx, params).await,
                "completion/complete" => self.complete(ctx, params).await,
                "logging/setLevel" => self.set_level(ctx, params).await,
                "resources/subscribe" | "resources/unsubscribe" => {
                    self.subscribe_resource(ctx, method, params).await
                }
                _ => Err(RpcError::method_not_found(method)),
            }?),
        };
        Ok(match reply {
            Reply::Value(result) => Reply::Value(self.finish_result(ctx, method, result)),
            Reply::Page(mut page) => {
                page.rest = self.finish_result(ctx, method, std::mem::take(&mut page.rest));
                Reply::Page(page)
            }
        })
    }

    /// Era-specific decoration of a result: modern results carry `resultType` and our
    /// `serverInfo`; legacy results carry neither.
    fn finish_result(&self, ctx: &ClientCtx, method: &str, mut result: Value) -> Value {
        let Some(object) = result.as_object_mut() else {
            return result;
        };
        match ctx.era {
            Era::Modern => {
                object
                    .entry("resultType")
                    .or_insert_with(|| Value::String("complete".into()));
                let meta = object
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(meta::SERVER_INFO.into(), self.server_info());
                }
                // Cacheable results carry caching hints. Lists are the gateway's own and
                // change with the roster (hot-loading, allow-lists): immediately stale and
                // private. A read keeps a modern upstream's hints.
                let complete = object.get("resultType").and_then(Value::as_str) == Some("complete");
                if complete && CACHEABLE.contains(&method) {
                    object.entry("ttlMs").or_insert_with(|| Value::from(0));
                    object
                        .entry("cacheScope")
                        .or_insert_with(|| Value::String("private".into()));
                }
            }
            Era::Legacy => {
                if object.get("resultType").and_then(Value::as_str) == Some("complete") {
                    object.remove("resultType");
                }
                // Modern-only caching hints mean nothing to a legacy client.
                object.remove("ttlMs");
                object.remove("cacheScope");
                // A modern upstream's identity stays behind the gateway on both faces.
                if let Some(meta) = object.get_mut("_meta").and_then(Value::as_object_mut)
                    && meta.contains_key(meta::SERVER_INFO)
                {
                    meta.insert(meta::SERVER_INFO.into(), self.server_info());
                }
            }
        }
        result
    }

    /// One page of a merged list, by cursor.
    fn list_page(&self, params: &Value, listing: Listing) -> Result<Reply, RpcError> {
        let catalog = self.catalog();
        let start = match params.get("cursor").and_then(Value::as_str) {
            None => 0,
            Some(cursor) => {
                decode_cursor(cursor).ok_or_else(|| RpcError::invalid_params("invalid cursor"))?
            }
        };
        // We only hand out cursors at page boundaries.
        if start % PAGE_SIZE != 0 {
            return Err(RpcError::invalid_params("invalid cursor"));
        }
        let total = catalog.entries(listing).len();
        let end = (start + PAGE_SIZE).min(total);
        let Some(mut page) = Page::of(catalog, listing, start / PAGE_SIZE) else {
            // An empty listing, or one that shrank under a client's cursor.
            return Ok(Reply::Value(json!({ listing.field(): [] })));
        };
        if end < total {
            page.rest = json!({ "nextCursor": encode_cursor(end) });
        }
        Ok(Reply::Page(page))
    }

    /// `tools/list`: the gateway's own meta-tools (when enabled for this client) first, then
    /// the catalog.
    fn list_tools(&self, ctx: &ClientCtx, params: &Value) -> Result<Reply, RpcError> {
        let page = self.list_page(params, Listing::Tools)?;
        let meta_tools = self.meta_tool_definitions(ctx);
        if meta_tools.is_empty() || params.get("cursor").is_some() {
            return Ok(page);
        }
        let mut result = page.into_value();
        if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
            tools.splice(0..0, meta_tools);
        }
        Ok(Reply::Value(result))
    }

    async fn call_tool(&self, ctx: &ClientCtx, mut params: Value) -> Result<Value, RpcError> {
        let exposed = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing tool name"))?;
        if let Some(outcome) = self.call_meta_tool(ctx, exposed, &params).await {
            return outcome;
        }
        let catalog = self.catalog();
        let target = catalog
            .resolve_tool(exposed)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown tool: {exposed}")))?
            .clone();
        let param_headers = headers::param_header_values(
            catalog.tool_param_headers(exposed),
            params.get("arguments"),
        );
        params["name"] = Value::String(target.name.clone());
        let call = Forward {
            server: &target.server,
            method: "tools/call",
            params,
            headers: param_headers,
        };
        let mut result = self.forward(ctx, call).await?;
        if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
            for block in content {
                self.expose_content_uri(&target.server, block);
            }
        }
        Ok(result)
    }

    /// Rewrites the URI of a `resource_link` or embedded `resource` content block to its
    /// exposed form, so a client can read it back through the gateway.
    fn expose_content_uri(&self, server: &str, block: &mut Value) {
        let catalog = self.catalog();
        if catalog.passthrough {
            return;
        }
        let slot = match block.get("type").and_then(Value::as_str) {
            Some("resource_link") => block.get_mut("uri"),
            Some("resource") => block.get_mut("resource").and_then(|r| r.get_mut("uri")),
            _ => None,
        };
        if let Some(uri) = slot
            && let Some(original) = uri.as_str()
        {
            *uri = Value::String(catalog.expose_uri(server, original));
        }
    }

    async fn get_prompt(&self, ctx: &ClientCtx, mut params: Value) -> Result<Value, RpcError> {
        let exposed = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing prompt name"))?;
        let target = self
            .catalog()
            .resolve_prompt(exposed)
            .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {exposed}")))?
            .clone();
        params["name"] = Value::String(target.name.clone());
        let mut result = self
            .forward(
                ctx,
                Forward {
                    server: &target.server,
                    method: "prompts/get",
                    params,
                    headers: Vec::new(),
                },
            )
            .await?;
        if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
            for message in messages {
                if let Some(block) = message.get_mut("content") {
                    self.expose_content_uri(&target.server, block);
                }
            }
        }
        Ok(result)
    }

    /// Resolves an exposed URI to its server and upstream URI.
    fn route_uri(&self, exposed: &str) -> Result<(String, String), RpcError> {
        let catalog = self.catalog();
        if let Some((server, original)) = catalog.resolve_uri(exposed)
            && self.server(&server).is_some()
        {
            return Ok((server, original.to_owned()));
        }
        // A raw upstream URI (from a client that kept one, or a server that put one in a
        // text): the one server that lists it, else the one whose template matches it,
        // else the only server offering resources.
        let servers = self.servers();
        let lists: Vec<_> = servers.iter().map(|s| (s, s.lists())).collect();
        let pick = |matches: &dyn Fn(&crate::catalog::ServerLists) -> bool| {
            let owners: Vec<_> = lists.iter().filter(|(_, l)| matches(l)).collect();
            match owners.as_slice() {
                [(owner, _)] => Some(owner.name.clone()),
                _ => None,
            }
        };
        let owner = pick(&|l| {
            l.resources
                .iter()
                .any(|r| r.get("uri").and_then(Value::as_str) == Some(exposed))
        })
        .or_else(|| {
            pick(&|l| {
                l.templates.iter().any(|t| {
                    t.get("uriTemplate")
                        .and_then(Value::as_str)
                        .is_some_and(|t| template_matches(t, exposed))
                })
            })
        })
        .or_else(|| pick(&|l| !l.resources.is_empty() || !l.templates.is_empty()));
        if let Some(owner) = owner {
            return Ok((owner, exposed.to_owned()));
        }
        Err(RpcError::new(
            switchboard_protocol::error::RESOURCE_NOT_FOUND,
            "Resource not found",
        )
        .with_data(json!({ "uri": exposed })))
    }

    async fn read_resource(&self, ctx: &ClientCtx, mut params: Value) -> Result<Value, RpcError> {
        let exposed = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing uri"))?
            .to_owned();
        let (server, original) = self
            .route_uri(&exposed)
            .map_err(|e| crate::bridge::error_for_client(ctx, "resources/read", e))?;
        params["uri"] = Value::String(original.clone());
        let mut result = self
            .forward(
                ctx,
                Forward {
                    server: &server,
                    method: "resources/read",
                    params,
                    headers: Vec::new(),
                },
            )
            .await?;
        let catalog = self.catalog();
        if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
            for content in contents {
                if let Some(uri) = content.get("uri").and_then(Value::as_str) {
                    content["uri"] = Value::String(catalog.expose_uri(&server, uri));
                }
            }
        }
        Ok(result)
    }

    async fn complete(&self, ctx: &ClientCtx, mut params: Value) -> Result<Value, RpcError> {
        let reference = params.get("ref").cloned().unwrap_or_default();
        let server = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let exposed = reference
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let target = self
                    .catalog()
                    .resolve_prompt(exposed)
                    .ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {exposed}")))?
                    .clone();
                params["ref"]["name"] = Value::String(target.name);
                target.server
            }
            Some("ref/resource") => {
                let exposed = reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let catalog = self.catalog();
                let (server, original) = catalog.resolve_uri(exposed).ok_or_else(|| {
                    RpcError::invalid_params(format!("Unknown resource template: {exposed}"))
                })?;
                params["ref"]["uri"] = Value::String(original.to_owned());
                server
            }
            _ => {
                return Err(RpcError::invalid_params(
                    "ref must be ref/prompt or ref/resource",
                ));
            }
        };
        self.forward(
            ctx,
            Forward {
                server: &server,
                method: "completion/complete",
                params,
                headers: Vec::new(),
            },
        )
        .await
    }

    /// Legacy `logging/setLevel`: applies to every legacy upstream that offers logging.
    async fn set_level(&self, ctx: &ClientCtx, params: Value) -> Result<Value, RpcError> {
        let level = params
            .get("level")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing level"))?;
        for server in self.servers() {
            let Ok(upstream) = server.upstream(&self.inner.era_cache).await else {
                continue;
            };
            if upstream.era() == Era::Legacy
                && upstream.handshake().capabilities.get("logging").is_some()
            {
                let call = Forward {
                    server: &server.name,
                    method: "logging/setLevel",
                    params: json!({ "level": level }),
                    headers: Vec::new(),
                };
                if let Err(error) = self.forward(ctx, call).await {
                    tracing::debug!(server = %server.name, %error, "setLevel not applied");
                }
            }
        }
        Ok(json!({}))
    }

    /// Legacy `resources/subscribe`: forwarded to a legacy owner; a modern owner already
    /// reports updates on our listen stream for it.
    async fn subscribe_resource(
        &self,
        ctx: &ClientCtx,
        method: &str,
        mut params: Value,
    ) -> Result<Value, RpcError> {
        let exposed = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing uri"))?
            .to_owned();
        let (server_name, original) = self.route_uri(&exposed)?;
        let server = self
            .server(&server_name)
            .ok_or_else(|| RpcError::invalid_params("unknown server"))?;
        let upstream = server.upstream(&self.inner.era_cache).await?;
        if upstream.era() == Era::Modern {
            server.watch_resource(&original, method == "resources/subscribe");
            return Ok(json!({}));
        }
        params["uri"] = Value::String(original);
        self.forward(
            ctx,
            Forward {
                server: &server_name,
                method,
                params,
                headers: Vec::new(),
            },
        )
        .await
    }
}

/// Whether `uri` fits an RFC 6570 template (literal parts in order; `{var}` matches a
/// non-empty run without `/`, `{+var}` / `{#var}` any non-empty run).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{').peekable();
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(after) = rest.strip_prefix(first) else {
        return false;
    };
    rest = after;
    while let Some(part) = parts.next() {
        let Some((expression, literal)) = part.split_once('}') else {
            return false;
        };
        let reserved = expression.starts_with('+') || expression.starts_with('#');
        let is_last = parts.peek().is_none();
        let end = if literal.is_empty() {
            if is_last { rest.len() } else { return false }
        } else {
            match rest.find(literal) {
                Some(at) => at,
                None => return false,
            }
        };
        let value = &rest[..end];
        if value.is_empty() || (!reserved && value.contains('/')) {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("sb:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("sb:")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_uri_templates() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/42/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/4/2/data"
        ));
        assert!(template_matches(
            "demo://resource/dynamic/text/{id}",
            "demo://resource/dynamic/text/1"
        ));
        assert!(template_matches("file:///{+path}", "file:///a/b/c"));
        assert!(!template_matches("file:///{path}", "file:///a/b"));
        assert!(!template_matches("test://{id}", "other://x"));
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(1000)), Some(1000));
        assert_eq!(decode_cursor("garbage"), None);
    }
}
