//! Tokenized tools, kept per server list. A catalog snapshot is rebuilt whole when any
//! server's lists change, but a server whose lists did not change keeps the same
//! `Arc<ServerLists>` (and instructions), so its documents are reused: a hot-load
//! tokenizes only the tools of the servers it touched.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use switchboard_search::{Document, Tokenizer, ToolText};

use crate::catalog::ServerLists;

/// A server's tools' documents, by upstream tool name.
pub(crate) type ServerDocuments = Arc<HashMap<String, Arc<Document>>>;

struct Entry {
    lists: Arc<ServerLists>,
    instructions: Option<String>,
    documents: ServerDocuments,
}

/// Documents per server, for the lists last seen of it.
pub(crate) struct Memo {
    pub(crate) tokenizer: Arc<Tokenizer>,
    servers: Mutex<HashMap<String, Entry>>,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            tokenizer: Arc::new(Tokenizer::default()),
            servers: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("servers", &self.servers.lock().len())
            .finish()
    }
}

impl Memo {
    /// The documents of `server`'s `lists`: the memoised ones when the lists (the same
    /// `Arc`) and instructions are those seen last, else tokenized now.
    pub(crate) fn documents(
        &self,
        server: &str,
        lists: &Arc<ServerLists>,
        instructions: Option<String>,
    ) -> ServerDocuments {
        if let Some(entry) = self.servers.lock().get(server)
            && Arc::ptr_eq(&entry.lists, lists)
            && entry.instructions == instructions
        {
            return entry.documents.clone();
        }
        // Tokenized outside the lock: another search may read other servers meanwhile.
        let documents: HashMap<String, Arc<Document>> = lists
            .tools
            .iter()
            .filter_map(|tool| {
                let name = tool.get("name").and_then(Value::as_str)?;
                let text = ToolText::of_tool(tool, server, instructions.as_deref());
                Some((
                    name.to_owned(),
                    Arc::new(Document::new(&text, &self.tokenizer)),
                ))
            })
            .collect();
        let documents = Arc::new(documents);
        self.servers.lock().insert(
            server.to_owned(),
            Entry {
                lists: lists.clone(),
                instructions,
                documents: documents.clone(),
            },
        );
        documents
    }

    /// Forgets servers that are gone (not in `present`).
    pub(crate) fn retain(&self, present: impl Fn(&str) -> bool) {
        self.servers.lock().retain(|server, _| present(server));
    }

    /// How many servers have documents (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.servers.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reuses_documents_of_unchanged_lists() {
        let memo = Memo::default();
        let lists = Arc::new(ServerLists {
            tools: vec![json!({ "name": "echo", "description": "Echo text back" })],
            ..ServerLists::default()
        });
        let first = memo.documents("a", &lists, None);
        let again = memo.documents("a", &lists, None);
        assert!(Arc::ptr_eq(&first, &again));
        let changed = Arc::new((*lists).clone());
        assert!(!Arc::ptr_eq(&first, &memo.documents("a", &changed, None)));
        let instructed = memo.documents("a", &changed, Some("Say hi".into()));
        assert!(!Arc::ptr_eq(&first, &instructed));
        memo.retain(|server| server != "a");
        assert_eq!(memo.len(), 0);
    }
}
