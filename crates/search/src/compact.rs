//! What meta mode shows an agent: the three tools it sees instead of the catalog, and the
//! compact form of each tool a search finds (name, one line of description, argument
//! schema). Shared by the gateway and the token-count benchmark, so the benchmark counts
//! exactly what a client receives.

use serde_json::{Value, json};

/// Longest one-line description kept in a search result.
const LINE_MAX: usize = 160;

/// The three tools a meta-mode client sees, as `tools/list` entries.
pub fn meta_tools() -> Vec<Value> {
    vec![
        json!({
            "name": "search_tools",
            "description": "Find tools for a task. Returns matching tools with their argument schemas; call one with call_tool, or add it to your tool list with select_tools.",
            "inputSchema": { "type": "object", "properties": {
                "query": { "type": "string", "description": "What you want to do, in plain words" },
                "limit": { "type": "integer", "minimum": 1, "maximum": 50, "description": "Most tools to return (default 5)" }
            }, "required": ["query"] }
        }),
        json!({
            "name": "call_tool",
            "description": "Call a tool found with search_tools by its name.",
            "inputSchema": { "type": "object", "properties": {
                "name": { "type": "string" },
                "arguments": { "type": "object" }
            }, "required": ["name"] }
        }),
        json!({
            "name": "select_tools",
            "description": "Add tools found with search_tools to your tool list, to call them directly.",
            "inputSchema": { "type": "object", "properties": {
                "names": { "type": "array", "items": { "type": "string" }, "maxItems": 64 }
            }, "required": ["names"] }
        }),
    ]
}

/// The names of the meta-mode tools.
pub const META_TOOL_NAMES: [&str; 3] = ["search_tools", "call_tool", "select_tools"];

/// A tool as a search result: its (exposed) name, the first line of its description
/// (first sentence, at most 160 characters) and its argument schema.
pub fn compact(tool: &Value) -> Value {
    let mut entry = json!({ "name": tool.get("name").cloned().unwrap_or(Value::Null) });
    if let Some(description) = tool.get("description").and_then(Value::as_str) {
        entry["description"] = Value::String(one_line(description));
    }
    if let Some(schema) = tool.get("inputSchema") {
        entry["inputSchema"] = schema.clone();
    }
    entry
}

/// The first sentence or line of `text`, at most `LINE_MAX` characters.
pub fn one_line(text: &str) -> String {
    let text = text.trim();
    let mut end = text.find('\n').unwrap_or(text.len());
    if let Some(stop) = text[..end].find(". ") {
        end = stop + 1;
    }
    let line = &text[..end];
    if line.chars().count() <= LINE_MAX {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(LINE_MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_takes_the_first_sentence() {
        assert_eq!(
            one_line("Gets weather. Also more.\nDetails"),
            "Gets weather."
        );
        assert_eq!(one_line("  Line one\nline two"), "Line one");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), LINE_MAX);
    }

    #[test]
    fn compact_keeps_name_line_and_schema() {
        let tool = json!({ "name": "a__b", "title": "T", "description": "Does b. More.",
                           "inputSchema": { "type": "object" }, "annotations": {} });
        assert_eq!(
            compact(&tool),
            json!({ "name": "a__b", "description": "Does b.", "inputSchema": { "type": "object" } })
        );
    }
}
