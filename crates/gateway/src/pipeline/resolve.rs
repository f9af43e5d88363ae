//! Resolution: what a request addresses, looked up once in the request's snapshot and
//! through the caller's view (what a caller cannot see does not exist for it).

use serde_json::Value;

use crate::catalog::{Catalog, Listing, View};
use crate::error::{Error, Kind};
use crate::gateway::{ClientCtx, Gateway};

/// What a request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The gateway answers itself (`ping`, `server/discover`, `logging/setLevel`,
    /// `subscriptions/listen`).
    Gateway,
    /// A merged listing, through the caller's view.
    List(Listing),
    /// One of the gateway's meta-tools (its short name, e.g. `call`).
    Meta(String),
    /// A server's tool, prompt or resource.
    Upstream(Route),
}

/// Where an upstream-bound request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub server: String,
    /// The upstream's own name (tool, prompt) or URI (resource, template).
    pub name: String,
    /// The name or URI the client used.
    pub exposed: String,
    pub kind: Kind,
}

fn required<'a>(params: &'a Value, key: &str, what: &str) -> Result<&'a str, Error> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid_params(format!("missing {what}")))
}

impl Gateway {
    pub(super) fn resolve(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: &Value,
        catalog: &Catalog,
        view: Option<&View>,
    ) -> Result<Target, Error> {
        let visible = |listing: Listing, route: &Route| {
            view.is_none_or(|view| view.admits(listing, &route.server, &route.exposed))
        };
        Ok(match method {
            "tools/list" => Target::List(Listing::Tools),
            "prompts/list" => Target::List(Listing::Prompts),
            "resources/list" => Target::List(Listing::Resources),
            "resources/templates/list" => Target::List(Listing::Templates),
            "ping" | "server/discover" | "logging/setLevel" | "subscriptions/listen" => {
                Target::Gateway
            }
            "tools/call" => {
                let exposed = required(params, "name", "tool name")?;
                if let Some(short) = self.meta_tool_for(ctx, exposed) {
                    return Ok(Target::Meta(short.to_owned()));
                }
                if let Some(held) = catalog.quarantined(exposed)
                    && view.is_none_or(|view| view.admits(Listing::Tools, &held.server, exposed))
                {
                    return Err(Error::Quarantined(held.clone()));
                }
                let route = self
                    .tool_route(catalog, exposed)
                    .filter(|route| visible(Listing::Tools, route))
                    .ok_or_else(|| {
                        let suggestions = self.tool_suggestions(ctx, catalog, view, exposed);
                        Error::unknown_with(Kind::Tool, exposed, suggestions)
                    })?;
                Target::Upstream(route)
            }
            "prompts/get" => {
                let exposed = required(params, "name", "prompt name")?;
                let route = prompt_route(catalog, exposed)
                    .filter(|route| visible(Listing::Prompts, route))
                    .ok_or_else(|| Error::unknown(Kind::Prompt, exposed))?;
                Target::Upstream(route)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let exposed = required(params, "uri", "uri")?;
                let route = self
                    .resource_route(catalog, exposed)
                    .filter(|route| visible(Listing::Resources, route))
                    .ok_or_else(|| Error::unknown(Kind::Resource, exposed))?;
                Target::Upstream(route)
            }
            "completion/complete" => {
                let reference = params.get("ref").unwrap_or(&Value::Null);
                match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let exposed = reference
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let route = prompt_route(catalog, exposed)
                            .filter(|route| visible(Listing::Prompts, route))
                            .ok_or_else(|| Error::unknown(Kind::Prompt, exposed))?;
                        Target::Upstream(route)
                    }
                    Some("ref/resource") => {
                        let exposed = reference
                            .get("uri")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let route = catalog
                            .resolve_uri(exposed)
                            .map(|(server, original)| Route {
                                server,
                                name: original.to_owned(),
                                exposed: exposed.to_owned(),
                                kind: Kind::ResourceTemplate,
                            })
                            .filter(|route| visible(Listing::Templates, route))
                            .ok_or_else(|| Error::unknown(Kind::ResourceTemplate, exposed))?;
                        Target::Upstream(route)
                    }
                    _ => {
                        return Err(Error::invalid_params(
                            "ref must be ref/prompt or ref/resource",
                        ));
                    }
                }
            }
            method if crate::task_ext::METHODS.contains(&method) => {
                // The tasks extension: negotiated per request; the id names its server.
                if !crate::task_ext::declared(ctx) {
                    return Err(crate::task_ext::missing_extension());
                }
                let exposed = params
                    .get("taskId")
                    .and_then(Value::as_str)
                    .ok_or_else(crate::task_ext::not_found)?;
                match self.open_task_id(ctx, exposed)? {
                    crate::task_ext::TaskRoute::Upstream {
                        server,
                        upstream_id,
                    } => Target::Upstream(Route {
                        server,
                        name: upstream_id,
                        exposed: exposed.to_owned(),
                        kind: Kind::Tool,
                    }),
                    // Gateway-made: the terminal answers from the store.
                    crate::task_ext::TaskRoute::Owned { .. } => Target::Gateway,
                }
            }
            other => return Err(Error::MethodNotFound(other.to_owned())),
        })
    }

    /// The tool names closest to an unknown one, among those the caller sees (its view
    /// of the snapshot and its meta-tools) only: what is hidden from a caller is never
    /// suggested, so a hidden name and a nonexistent one get the same answer. A name is
    /// compared whole and by its part after the server prefix (`echo` finds
    /// `fixture__echo`).
    fn tool_suggestions(
        &self,
        ctx: &ClientCtx,
        catalog: &Catalog,
        view: Option<&View>,
        spelling: &str,
    ) -> Vec<String> {
        let Some(mut suggester) = crate::suggest::Suggester::new(spelling) else {
            return Vec::new();
        };
        let meta_tools = self.meta_tool_definitions(ctx);
        let entries: Box<dyn Iterator<Item = &crate::catalog::Entry>> = match view {
            None => Box::new(catalog.tools.iter()),
            Some(view) => Box::new(view.entries(catalog, Listing::Tools, 0..usize::MAX)),
        };
        for name in entries.map(crate::catalog::Entry::name).chain(
            meta_tools
                .iter()
                .filter_map(|entry| entry.get("name").and_then(Value::as_str)),
        ) {
            let tail = name.split_once("__").map(|(_, tail)| tail);
            suggester.offer(name, tail.as_slice());
        }
        suggester.finish()
    }

    fn tool_route(&self, catalog: &Catalog, exposed: &str) -> Option<Route> {
        let target = catalog.resolve_tool(exposed)?;
        Some(Route {
            server: target.server.clone(),
            name: target.name.clone(),
            exposed: exposed.to_owned(),
            kind: Kind::Tool,
        })
    }

    /// An exposed URI's server and upstream URI; a raw upstream URI (from a client that
    /// kept one, or a server that put one in a text) goes to the one server that lists
    /// it, else the one whose template matches it, else the only server with resources.
    fn resource_route(&self, catalog: &Catalog, exposed: &str) -> Option<Route> {
        let route = |server: String, name: &str| Route {
            server,
            name: name.to_owned(),
            exposed: exposed.to_owned(),
            kind: Kind::Resource,
        };
        if let Some((server, original)) = catalog.resolve_uri(exposed)
            && self.server(&server).is_some()
        {
            return Some(route(server, original));
        }
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
        .or_else(|| pick(&|l| !l.resources.is_empty() || !l.templates.is_empty()))?;
        Some(route(owner, exposed))
    }
}

fn prompt_route(catalog: &Catalog, exposed: &str) -> Option<Route> {
    let target = catalog.resolve_prompt(exposed)?;
    Some(Route {
        server: target.server.clone(),
        name: target.name.clone(),
        exposed: exposed.to_owned(),
        kind: Kind::Prompt,
    })
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
}
