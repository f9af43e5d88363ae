//! Failover groups: servers declared as alternatives for the same tools
//! (`group = "NAME"` on each member). The catalog lists a group once, under the group's
//! name as if it were one server (`NAME__tool`), with the entries every listed member
//! offers ([`fold`]); a call to a group goes to its best member first and, on a retryable
//! error, to the next ([`Group::order`]; the loop is in `dispatch.rs`, the only caller of
//! `forward`).
//!
//! Rules: a group routes tools and prompts; a member's resources and templates stay
//! listed under the member's own name (they are one server's data). A member that lists
//! no tools and no prompts yet (never started, lazy without a known catalog) does not
//! narrow the group; a tool or prompt is listed when every other member lists one of the
//! same name, described as the first member by name describes it; a member offering
//! tools the group does not list is warned about and counted
//! (`switchboard_group_unlisted_tools`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::catalog::ServerLists;
use crate::server::{BreakerState, Server, State};

/// One group in a catalog snapshot.
#[derive(Debug)]
pub struct Group {
    /// Member server names, sorted.
    pub members: Vec<String>,
    /// Turns taken, so that equally good members share the calls.
    turn: AtomicUsize,
}

impl Group {
    pub fn new(members: Vec<String>) -> Group {
        Group {
            members,
            turn: AtomicUsize::new(0),
        }
    }

    /// The live members in the order a call should try them: usable before degraded
    /// before failed before breaker-open, fewer calls in flight first, and equals taken
    /// in turns. `lookup` finds a member's live server (`None`: removed meanwhile).
    pub fn order(&self, lookup: impl Fn(&str) -> Option<Arc<Server>>) -> Vec<Arc<Server>> {
        let live: Vec<Arc<Server>> = self.members.iter().filter_map(|m| lookup(m)).collect();
        if live.len() < 2 {
            return live;
        }
        let count = live.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        let mut ranked: Vec<(u8, usize, usize, Arc<Server>)> = live
            .into_iter()
            .enumerate()
            .map(|(index, server)| {
                let rotation = (index + count - start) % count;
                (
                    rank(server.breaker_state(), server.state()),
                    server.inflight(),
                    rotation,
                    server,
                )
            })
            .collect();
        ranked.sort_by_key(|(rank, inflight, rotation, _)| (*rank, *inflight, *rotation));
        ranked.into_iter().map(|(.., server)| server).collect()
    }
}

/// How much a member is to be preferred: lower first.
pub(crate) fn rank(breaker: BreakerState, state: State) -> u8 {
    match (breaker, state) {
        (BreakerState::Open, _) => 4,
        (_, State::Failed) => 3,
        (BreakerState::HalfOpen, _) | (_, State::Degraded) => 2,
        // Dormant, stopped and starting members start on their first call.
        (_, State::Dormant | State::Stopped | State::Starting) => 1,
        (_, State::Ready) => 0,
    }
}

/// The groups of a roster: group name → member names (sorted), for groups whose name is
/// not also a live server's (a runtime registration may take it; the server wins).
pub(crate) fn of_servers<'a>(
    servers: impl Iterator<Item = (&'a String, &'a Arc<Server>)> + Clone,
) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, server) in servers.clone() {
        if let Some(group) = &server.spec().group {
            groups.entry(group.clone()).or_default().push(name.clone());
        }
    }
    groups.retain(|group, _| {
        let taken = servers.clone().any(|(name, _)| name == group);
        if taken {
            tracing::warn!(group, "failover group not formed: a server has its name");
        }
        !taken
    });
    for members in groups.values_mut() {
        members.sort();
    }
    groups
}

/// What folding found: the lists with every group in place of its members, and per
/// member the number of its tools the group does not list.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    pub lists: BTreeMap<String, Arc<ServerLists>>,
    pub unlisted: Vec<(String, usize)>,
}

/// Replaces the members of each group by one entry under the group's name holding what
/// every listed member offers.
pub(crate) fn fold(
    lists: &BTreeMap<String, Arc<ServerLists>>,
    groups: &BTreeMap<String, Vec<String>>,
) -> Folded {
    let mut folded = Folded {
        lists: lists.clone(),
        ..Folded::default()
    };
    for (group, members) in groups {
        let listed: Vec<(&String, &Arc<ServerLists>)> = members
            .iter()
            .filter_map(|member| Some((member, lists.get(member)?)))
            .filter(|(_, l)| !l.tools.is_empty() || !l.prompts.is_empty())
            .collect();
        let common = ServerLists {
            tools: common(&listed, |l| &l.tools, "name"),
            prompts: common(&listed, |l| &l.prompts, "name"),
            ..ServerLists::default()
        };
        for member in members {
            // A member keeps its resources and templates under its own name.
            if let Some(own) = folded.lists.get_mut(member) {
                let own = Arc::make_mut(own);
                own.tools.clear();
                own.prompts.clear();
                if own.resources.is_empty() && own.templates.is_empty() {
                    folded.lists.remove(member);
                }
            }
        }
        for (member, l) in &listed {
            let extra = l.tools.len().saturating_sub(common.tools.len());
            if extra > 0 {
                tracing::warn!(
                    group,
                    server = %member,
                    unlisted = extra,
                    "failover group member offers tools other members lack: only the common tools are listed"
                );
            }
            folded.unlisted.push(((*member).clone(), extra));
        }
        folded.lists.insert(group.clone(), Arc::new(common));
    }
    folded
}

/// The entries of the first member that every other member also names.
fn common(
    listed: &[(&String, &Arc<ServerLists>)],
    pick: fn(&ServerLists) -> &Vec<Value>,
    key: &str,
) -> Vec<Value> {
    let Some(((_, first), rest)) = listed.split_first() else {
        return Vec::new();
    };
    let names = |l: &ServerLists| -> BTreeSet<String> {
        pick(l)
            .iter()
            .filter_map(|e| e.get(key).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let others: Vec<BTreeSet<String>> = rest.iter().map(|(_, l)| names(l)).collect();
    pick(first)
        .iter()
        .filter(|entry| {
            let name = entry.get(key).and_then(Value::as_str).unwrap_or_default();
            others.iter().all(|set| set.contains(name))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(names: &[&str]) -> Arc<ServerLists> {
        Arc::new(ServerLists {
            tools: names
                .iter()
                .map(|n| json!({ "name": n, "inputSchema": { "type": "object" } }))
                .collect(),
            ..ServerLists::default()
        })
    }

    fn names(lists: &ServerLists) -> Vec<&str> {
        lists
            .tools
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_group_lists_the_common_tools_once_under_its_name() {
        let lists = BTreeMap::from([
            ("a".to_owned(), tools(&["search", "fetch", "only_a"])),
            ("b".to_owned(), tools(&["fetch", "search"])),
            ("c".to_owned(), tools(&["other"])),
        ]);
        let groups = BTreeMap::from([("web".to_owned(), vec!["a".to_owned(), "b".to_owned()])]);
        let folded = fold(&lists, &groups);
        assert_eq!(
            folded.lists.keys().collect::<Vec<_>>(),
            ["c", "web"],
            "members replaced by the group"
        );
        assert_eq!(names(&folded.lists["web"]), ["search", "fetch"]);
        assert_eq!(
            folded.unlisted,
            [("a".to_owned(), 1), ("b".to_owned(), 0)],
            "a's extra tool is reported"
        );
    }

    #[test]
    fn a_member_not_yet_listed_does_not_narrow_the_group() {
        let lists = BTreeMap::from([
            ("a".to_owned(), tools(&["search"])),
            ("b".to_owned(), Arc::new(ServerLists::default())),
        ]);
        let groups = BTreeMap::from([("web".to_owned(), vec!["a".to_owned(), "b".to_owned()])]);
        let folded = fold(&lists, &groups);
        assert_eq!(names(&folded.lists["web"]), ["search"]);
        assert!(!folded.lists.contains_key("b"));
    }

    #[test]
    fn healthier_members_rank_first() {
        assert!(
            rank(BreakerState::Closed, State::Ready) < rank(BreakerState::Closed, State::Starting)
        );
        assert!(
            rank(BreakerState::Closed, State::Starting)
                < rank(BreakerState::Closed, State::Degraded)
        );
        assert!(
            rank(BreakerState::Closed, State::Degraded) < rank(BreakerState::Closed, State::Failed)
        );
        assert!(rank(BreakerState::Closed, State::Failed) < rank(BreakerState::Open, State::Ready));
        assert_eq!(
            rank(BreakerState::HalfOpen, State::Ready),
            rank(BreakerState::Closed, State::Degraded)
        );
    }
}
