//! `allow`: what a caller's tenant and roles let it see (`[access.tenants.*]`,
//! `[access.roles.*]`). What a caller may not see does not exist for it: its list view
//! leaves it out (so resolution answers a call to it exactly like an unknown name), and
//! the meta-tools that name servers and tools answer as they do for a nonexistent one.
//!
//! A caller's rule sets are its tenant's and each of its roles'. An entry is visible when
//! no set denies it (by server or by name) and, for each of server and name, either no set
//! has an allow-list or some set's allow-list matches. A caller with no rule set (no
//! configured tenant or role) is not restricted here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::{Glob, Globs, Visibility};

use super::{Call, Filter, Flow, Hooks, Step, StepFuture, Target};
use crate::catalog::Listing;
use crate::principal::Principal;
use crate::reply::Reply;

/// Most distinct (tenant, roles) filters kept; the cache restarts beyond it.
const MAX_FILTERS: usize = 1024;

/// One caller's rule sets.
struct Rules {
    sets: Vec<Visibility>,
}

fn any_allows(sets: &[Visibility], pick: fn(&Visibility) -> &Globs, text: &str) -> bool {
    let matches = |globs: &[Glob]| globs.iter().any(|g| g.matches(text));
    if sets.iter().any(|set| matches(&pick(set).deny)) {
        return false;
    }
    let mut lists = sets
        .iter()
        .filter_map(|set| pick(set).allow.as_deref())
        .peekable();
    lists.peek().is_none() || lists.any(matches)
}

impl Rules {
    fn server_visible(&self, server: &str) -> bool {
        any_allows(&self.sets, |v| &v.servers, server)
    }

    fn admits(&self, listing: Listing, server: &str, name: &str) -> bool {
        let pick: fn(&Visibility) -> &Globs = match listing {
            Listing::Tools => |v| &v.tools,
            Listing::Prompts => |v| &v.prompts,
            Listing::Resources | Listing::Templates => |v| &v.resources,
        };
        self.server_visible(server) && any_allows(&self.sets, pick, name)
    }
}

/// A caller's list filter and the rules behind it; `None`: unrestricted.
type CallerRules = Option<(Filter, Arc<Rules>)>;

pub struct Allow {
    tenants: BTreeMap<String, Visibility>,
    roles: BTreeMap<String, Visibility>,
    filters: Mutex<HashMap<String, CallerRules>>,
}

impl Allow {
    pub fn new(
        tenants: BTreeMap<String, Visibility>,
        roles: BTreeMap<String, Visibility>,
    ) -> Allow {
        Allow {
            tenants,
            roles,
            filters: Mutex::new(HashMap::new()),
        }
    }

    /// Whether any tenant or role rules exist (else the step is not needed).
    pub fn is_needed(&self) -> bool {
        !self.tenants.is_empty() || !self.roles.is_empty()
    }

    fn key(principal: &Principal) -> String {
        format!(
            "allow:{}\u{1f}{}",
            principal.tenant().unwrap_or_default(),
            principal.roles().join("\u{1e}")
        )
    }

    /// The caller's filter and rules; `None`: unrestricted.
    fn rules(&self, principal: &Principal) -> CallerRules {
        let key = Allow::key(principal);
        if let Some(found) = self.filters.lock().get(&key) {
            return found.clone();
        }
        let sets: Vec<Visibility> = principal
            .tenant()
            .and_then(|tenant| self.tenants.get(tenant))
            .into_iter()
            .chain(principal.roles().iter().filter_map(|r| self.roles.get(r)))
            .cloned()
            .collect();
        let built = (!sets.is_empty()).then(|| {
            let rules = Arc::new(Rules { sets });
            let admit = rules.clone();
            let filter = Filter::new(key.clone(), move |listing, server, name| {
                admit.admits(listing, server, name)
            });
            (filter, rules)
        });
        let mut filters = self.filters.lock();
        if filters.len() >= MAX_FILTERS {
            filters.clear();
        }
        filters.insert(key, built.clone());
        built
    }
}

/// The answer the meta-tools give for a server or tool that does not exist.
fn nonexistent(text: String) -> Flow {
    Flow::Respond(Reply::Value(
        json!({ "content": [{ "type": "text", "text": text }], "isError": true }),
    ))
}

fn arg<'a>(call: &'a Call<'_>, name: &str) -> Option<&'a str> {
    call.arguments()?.get(name)?.as_str()
}

impl Step for Allow {
    fn name(&self) -> &'static str {
        "allow"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }

    fn filter(&self, principal: &Principal) -> Option<Filter> {
        self.rules(principal).map(|(filter, _)| filter)
    }

    /// Upstream targets were resolved through the view already; meta-tools name servers
    /// and tools in their arguments and are checked here.
    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let flow = (|| {
            let Target::Meta(short) = &call.target else {
                return Flow::Continue;
            };
            let Some((_, rules)) = self.rules(&call.ctx.principal) else {
                return Flow::Continue;
            };
            match short.as_str() {
                "call" => {
                    let (Some(server), Some(tool)) = (arg(call, "server"), arg(call, "tool"))
                    else {
                        return Flow::Continue;
                    };
                    if !rules.server_visible(server) {
                        return nonexistent(format!("unknown server `{server}`"));
                    }
                    match call.catalog.exposed_tool(server, tool) {
                        Some(exposed) if !rules.admits(Listing::Tools, server, &exposed) => {
                            nonexistent(format!("unknown tool `{tool}` on server `{server}`"))
                        }
                        _ => Flow::Continue,
                    }
                }
                "load_server" | "reload_server" | "unload_server" | "install_server" => {
                    match arg(call, "name") {
                        Some(name) if !rules.server_visible(name) => {
                            nonexistent(format!("unknown server `{name}`"))
                        }
                        _ => Flow::Continue,
                    }
                }
                _ => Flow::Continue,
            }
        })();
        if let Flow::Respond(_) = flow {
            // Answered as nonexistent; the audit records what it was.
            call.notes.decide(crate::audit::Decision::Denied {
                step: "allow",
                rule: Some("hidden".into()),
            });
        }
        Box::pin(std::future::ready(Ok(flow)))
    }

    /// `list_servers` shows only the servers the caller sees.
    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, crate::error::Error>,
    ) -> StepFuture<'a, ()> {
        if matches!(&call.target, Target::Meta(short) if short == "list_servers")
            && let Some((_, rules)) = self.rules(&call.ctx.principal)
            && let Ok(Reply::Value(result)) = outcome
            && let Some(Value::Array(servers)) = result
                .get_mut("structuredContent")
                .and_then(|s| s.get_mut("servers"))
        {
            servers.retain(|server| {
                server
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| rules.server_visible(name))
            });
            let text = result["structuredContent"].to_string();
            result["content"] = json!([{ "type": "text", "text": text }]);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(allow: Option<&[&str]>, deny: &[&str]) -> Globs {
        Globs {
            allow: allow.map(|a| a.iter().map(|g| Glob::new(*g)).collect()),
            deny: deny.iter().map(|g| Glob::new(*g)).collect(),
        }
    }

    fn rules(sets: Vec<Visibility>) -> Rules {
        Rules { sets }
    }

    #[test]
    fn allow_lists_and_deny_wins() {
        let tenant = Visibility {
            servers: globs(Some(&["fx"]), &[]),
            tools: globs(Some(&["fx__*"]), &["fx__delete*"]),
            ..Visibility::default()
        };
        let r = rules(vec![tenant.clone()]);
        assert!(r.admits(Listing::Tools, "fx", "fx__echo"));
        assert!(!r.admits(Listing::Tools, "fx", "fx__delete_all"));
        assert!(!r.admits(Listing::Tools, "other", "other__echo"));
        // Prompts are not restricted by name, only by server.
        assert!(r.admits(Listing::Prompts, "fx", "fx__greet"));
        assert!(!r.admits(Listing::Prompts, "other", "other__greet"));

        // A role adds what it allows; a deny anywhere wins.
        let role = Visibility {
            tools: globs(Some(&["fx__delete_one"]), &[]),
            ..Visibility::default()
        };
        let r = rules(vec![tenant.clone(), role]);
        assert!(!r.admits(Listing::Tools, "fx", "fx__delete_one"));
        let role = Visibility {
            tools: globs(None, &["fx__echo"]),
            ..Visibility::default()
        };
        let r = rules(vec![tenant, role]);
        assert!(!r.admits(Listing::Tools, "fx", "fx__echo"));
        assert!(r.admits(Listing::Tools, "fx", "fx__add"));
    }

    #[test]
    fn filters_are_shared_per_tenant_and_roles() {
        let mut tenants = BTreeMap::new();
        tenants.insert("a".to_owned(), Visibility::default());
        let allow = Allow::new(tenants, BTreeMap::new());
        let identity = |tenant: &str| crate::principal::Identity {
            id: "x".into(),
            tenant: Some(tenant.into()),
            roles: vec![],
        };
        let peer = crate::principal::Peer::default();
        let a = Principal::authenticated(
            crate::principal::Face::Http,
            "s",
            peer.clone(),
            &identity("a"),
        );
        let b = Principal::authenticated(crate::principal::Face::Http, "s", peer, &identity("b"));
        assert!(allow.rules(&a).is_some());
        assert!(
            allow.rules(&b).is_none(),
            "an unconfigured tenant has no rule set"
        );
        assert_eq!(allow.filters.lock().len(), 2);
    }
}
