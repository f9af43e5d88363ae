//! One tool as the index sees it: the terms of each field, counted. Built once per tool
//! version (the gateway keeps them per server list and rebuilds only a changed server's).

use serde_json::Value;

use crate::tokenize::Tokenizer;

/// The fields of a tool, weighted separately when ranking (BM25F).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The tool's own name and its title.
    Name = 0,
    /// Its description.
    Description = 1,
    /// Parameter names, their descriptions and enumerated values.
    Parameters = 2,
    /// The server's name and instructions.
    Server = 3,
}

pub const FIELDS: usize = 4;

/// Nested schema levels read for parameters (a schema can nest without end).
const MAX_DEPTH: usize = 6;
/// Text read per field; a tool that writes a book in its description gets no more say.
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// A tool's terms per field, each with its count.
#[derive(Clone, Debug, Default)]
pub struct Document {
    pub(crate) fields: [Vec<(Box<str>, u32)>; FIELDS],
    pub(crate) lengths: [u32; FIELDS],
}

/// The text of a tool that is searched.
#[derive(Debug, Default)]
pub struct ToolText<'a> {
    pub name: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The tool's `inputSchema`.
    pub schema: Option<&'a Value>,
    pub server: &'a str,
    pub instructions: Option<&'a str>,
}

impl<'a> ToolText<'a> {
    /// The searchable text of an MCP tool definition (`name`, `title`, `annotations.title`,
    /// `description`, `inputSchema`) offered by `server`.
    pub fn of_tool(tool: &'a Value, server: &'a str, instructions: Option<&'a str>) -> Self {
        let text = |value: Option<&'a Value>| value.and_then(Value::as_str);
        ToolText {
            name: text(tool.get("name")).unwrap_or_default(),
            title: text(tool.get("title")).or_else(|| text(tool.pointer("/annotations/title"))),
            description: text(tool.get("description")),
            schema: tool.get("inputSchema"),
            server,
            instructions,
        }
    }
}

impl Document {
    pub fn new(text: &ToolText<'_>, tokenizer: &Tokenizer) -> Document {
        let mut fields: [Vec<String>; FIELDS] = Default::default();
        let mut add = |field: Field, text: &str| {
            let text = cut(text, MAX_FIELD_BYTES);
            tokenizer.terms(text, |term| fields[field as usize].push(term));
        };
        add(Field::Name, text.name);
        if let Some(title) = text.title {
            add(Field::Name, title);
        }
        if let Some(description) = text.description {
            add(Field::Description, description);
        }
        if let Some(schema) = text.schema {
            let mut parameters = String::new();
            schema_text(schema, 0, &mut parameters);
            add(Field::Parameters, &parameters);
        }
        add(Field::Server, text.server);
        if let Some(instructions) = text.instructions {
            add(Field::Server, instructions);
        }
        let mut document = Document::default();
        for (slot, terms) in fields.into_iter().enumerate() {
            document.lengths[slot] = u32::try_from(terms.len()).unwrap_or(u32::MAX);
            let mut counted: Vec<(Box<str>, u32)> = Vec::new();
            let mut sorted = terms;
            sorted.sort_unstable();
            for term in sorted {
                match counted.last_mut() {
                    Some((last, count)) if **last == *term => *count += 1,
                    _ => counted.push((term.into_boxed_str(), 1)),
                }
            }
            document.fields[slot] = counted;
        }
        document
    }

    /// How many terms a field holds.
    pub fn len(&self, field: Field) -> u32 {
        self.lengths[field as usize]
    }
}

/// Property names, descriptions, titles and enumerated string values of a schema, nested
/// objects and array items included, up to `MAX_DEPTH` levels.
fn schema_text(schema: &Value, depth: usize, out: &mut String) {
    if depth > MAX_DEPTH || out.len() > MAX_FIELD_BYTES {
        return;
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            out.push_str(name);
            out.push(' ');
            for key in ["title", "description"] {
                if let Some(text) = property.get(key).and_then(Value::as_str) {
                    out.push_str(text);
                    out.push(' ');
                }
            }
            if let Some(values) = property.get("enum").and_then(Value::as_array) {
                for value in values.iter().filter_map(Value::as_str) {
                    out.push_str(value);
                    out.push(' ');
                }
            }
            schema_text(property, depth + 1, out);
        }
    }
    if let Some(items) = schema.get("items") {
        schema_text(items, depth + 1, out);
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_field() {
        let tool = json!({
            "name": "get_weather", "description": "Current weather for a city",
            "inputSchema": { "type": "object", "properties": {
                "city": { "type": "string", "description": "City name" },
                "units": { "enum": ["celsius", "fahrenheit"] },
                "where": { "type": "object", "properties": { "zip": { "type": "string" } } }
            } }
        });
        let text = ToolText::of_tool(&tool, "weather-server", Some("Forecasts"));
        let document = Document::new(&text, &Tokenizer::default());
        let terms = |field: Field| -> Vec<&str> {
            document.fields[field as usize]
                .iter()
                .map(|(term, _)| &**term)
                .collect()
        };
        assert_eq!(terms(Field::Name), ["get", "weather"]);
        assert_eq!(terms(Field::Description), ["citi", "current", "weather"]);
        assert!(terms(Field::Parameters).contains(&"celsius"));
        assert!(terms(Field::Parameters).contains(&"zip"));
        assert_eq!(terms(Field::Server), ["forecast", "server", "weather"]);
        assert_eq!(document.len(Field::Parameters), 7);
    }

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }
}
