//! `validate`: a `tools/call`'s arguments are checked against the tool's exposed
//! `inputSchema` before the call reaches its server. A call that does not fit is answered
//! by the gateway as a tool execution error (`isError: true`, as the MCP spec asks for
//! input validation errors, so the model can correct itself): one line per error with its
//! JSON path and what was expected, the closest valid property name for a misspelled one,
//! and the same errors structured in `_meta["dev.switchboard/validation"]`. The upstream
//! never sees the call.
//!
//! Schemas are compiled with `jsonschema` (2020-12 unless `$schema` says otherwise,
//! `format` as annotation only) and a retriever that refuses everything: a `$ref` to a
//! URL or a file is never fetched or read. A schema that does not compile (such a
//! `$ref`, an unknown dialect, a broken schema, one over [`MAX_SCHEMA_BYTES`]) is not
//! checked: its calls pass through, and it is logged once.
//!
//! Cost: compiled validators are kept by SHA-256 of the schema (at most [`MAX_CACHED`],
//! least recently used out), so a catalog rebuild reuses them; each snapshot keeps, per
//! tool, the check its first call found (`Catalog::tool_check`), so a call pays one map
//! lookup and `is_valid`, never a hash or a compile. Errors are collected only for a call
//! that fails, at most [`MAX_ERRORS`].

use std::collections::HashMap;
use std::sync::Arc;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{PatternOptions, Retrieve, Uri, ValidationError, Validator};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use switchboard_protocol::meta;

use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::catalog::Catalog;
use crate::metrics::{Metrics, ServerCounter};
use crate::reply::Reply;
use crate::suggest::Suggester;

/// Most compiled schemas kept across snapshots; the least recently used goes first.
pub const MAX_CACHED: usize = 4096;
/// Largest schema compiled, as JSON bytes; a larger one is not checked.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Most errors reported for one call.
pub const MAX_ERRORS: usize = 16;
/// Longest text quoted from a schema or a property name in a message.
const MAX_QUOTE: usize = 120;
/// Backtracking steps one `pattern` match may take (then the match fails).
const BACKTRACK_LIMIT: usize = 100_000;
/// Property names listed as the valid ones when none is close to an unknown name.
const MAX_LISTED: usize = 12;
/// How deep `allOf` / `anyOf` / `oneOf` / local `$ref` are followed to find the
/// properties an object schema names.
const MAX_SCHEMA_WALK: usize = 4;

/// A tool's compiled `inputSchema`.
pub struct Checker {
    validator: Validator,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checker")
    }
}

/// Refuses every external resource: no `$ref` to a URL or file is ever fetched or read
/// (the crate's own HTTP and file retrieval are not even compiled in).
struct Refuse;

impl Retrieve for Refuse {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("external $ref not fetched: {uri}").into())
    }
}

type Digest = [u8; 32];

/// Compiled schemas by digest, least recently used out beyond [`MAX_CACHED`]. `None`: the
/// schema does not compile (kept too, so it is not retried or logged again).
#[derive(Default)]
struct Cache {
    entries: HashMap<Digest, (Option<Arc<Checker>>, u64)>,
    clock: u64,
}

impl Cache {
    fn get(&mut self, digest: &Digest) -> Option<Option<Arc<Checker>>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|(checker, used)| {
            *used = clock;
            checker.clone()
        })
    }

    fn insert(&mut self, digest: Digest, checker: Option<Arc<Checker>>) {
        if self.entries.len() >= MAX_CACHED
            && !self.entries.contains_key(&digest)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(digest, _)| *digest)
        {
            // A scan, but only when a schema is compiled, which costs far more.
            self.entries.remove(&oldest);
        }
        self.clock += 1;
        self.entries.insert(digest, (checker, self.clock));
    }
}

/// The argument validation step.
pub struct Validate {
    cache: Mutex<Cache>,
    invalid: ServerCounter,
}

impl Validate {
    pub fn new(metrics: &Metrics) -> Validate {
        Validate {
            cache: Mutex::default(),
            invalid: metrics.invalid_arguments(),
        }
    }

    /// Checks the arguments of a call to the tool `exposed` of `catalog` (a server's):
    /// `None` when they fit its schema or it is not checked; otherwise the tool error
    /// result that answers the call.
    pub fn check(
        &self,
        catalog: &Catalog,
        server: &str,
        exposed: &str,
        arguments: Option<&Value>,
    ) -> Option<Value> {
        let (index, entry) = catalog.tool(exposed)?;
        let schema = entry.get("inputSchema")?;
        let checker = catalog
            .tool_check(index)
            .get_or_init(|| self.compiled(server, exposed, schema))
            .as_ref()?;
        let empty;
        let arguments = match arguments {
            None | Some(Value::Null) => {
                empty = Value::Object(Map::new());
                &empty
            }
            Some(arguments) => arguments,
        };
        if checker.validator.is_valid(arguments) {
            return None;
        }
        // A property given as `null` counts as not given: MCP's convention for optional
        // parameters (`x-mcp-header` omits the header for null or absent alike), and what
        // clients and models send. The call goes through unchanged if that makes it fit.
        let without_nulls;
        let arguments = match without_null_members(arguments) {
            Some(stripped) if checker.validator.is_valid(&stripped) => return None,
            Some(stripped) => {
                without_nulls = stripped;
                &without_nulls
            }
            None => arguments,
        };
        self.invalid.inc(server);
        let (problems, truncated) = problems(checker, schema, arguments);
        Some(rejection(exposed, &problems, truncated))
    }

    /// The compiled schema, from the cache when the same schema was compiled before.
    fn compiled(&self, server: &str, tool: &str, schema: &Value) -> Option<Arc<Checker>> {
        let bytes = serde_json::to_vec(schema).ok()?;
        let digest: Digest = Sha256::digest(&bytes).into();
        if let Some(found) = self.cache.lock().get(&digest) {
            return found;
        }
        let checker = if bytes.len() > MAX_SCHEMA_BYTES {
            tracing::warn!(
                server,
                tool,
                bytes = bytes.len(),
                limit = MAX_SCHEMA_BYTES,
                "inputSchema too large to check: calls to this tool are not validated"
            );
            None
        } else {
            match compile(schema) {
                Ok(validator) => Some(Arc::new(Checker { validator })),
                Err(error) => {
                    tracing::warn!(
                        server,
                        tool,
                        %error,
                        "inputSchema does not compile: calls to this tool are not validated"
                    );
                    None
                }
            }
        };
        self.cache.lock().insert(digest, checker.clone());
        checker
    }
}

/// `value` without the object members whose value is `null` (at any depth, array items
/// kept), or `None` when it has none.
fn without_null_members(value: &Value) -> Option<Value> {
    fn has_null_member(value: &Value) -> bool {
        match value {
            Value::Object(object) => object.values().any(|v| v.is_null() || has_null_member(v)),
            Value::Array(items) => items.iter().any(has_null_member),
            _ => false,
        }
    }
    fn strip(value: &Value) -> Value {
        match value {
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    has_null_member(value).then(|| strip(value))
}

/// Compiles a schema with nothing fetched from outside.
fn compile(schema: &Value) -> Result<Validator, ValidationError<'static>> {
    jsonschema::options()
        .with_retriever(Refuse)
        .should_validate_formats(false)
        .with_pattern_options(PatternOptions::fancy_regex().backtrack_limit(BACKTRACK_LIMIT))
        .build(schema)
}

impl Step for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let flow = match (&call.target, call.method) {
            (Target::Upstream(route), "tools/call") => {
                match self.check(
                    &call.catalog,
                    &route.server,
                    &route.exposed,
                    call.arguments(),
                ) {
                    Some(result) => Flow::Respond(Reply::Value(result)),
                    None => Flow::Continue,
                }
            }
            _ => Flow::Continue,
        };
        Box::pin(std::future::ready(Ok(flow)))
    }
}

/// One thing wrong with the arguments.
#[derive(Debug, PartialEq)]
struct Problem {
    /// JSON Pointer into the arguments (`""`: the arguments themselves).
    path: String,
    keyword: String,
    message: String,
    /// The valid property name closest to the one given.
    suggestion: Option<String>,
    /// For a missing required property: the unknown property given instead.
    given: Option<String>,
}

impl Problem {
    fn new(path: String, keyword: &str, message: String) -> Problem {
        Problem {
            path,
            keyword: keyword.to_owned(),
            message,
            suggestion: None,
            given: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut object = json!({
            "path": self.path,
            "keyword": self.keyword,
            "message": self.message,
        });
        if let Some(suggestion) = &self.suggestion {
            object["suggestion"] = Value::String(suggestion.clone());
        }
        if let Some(given) = &self.given {
            object["given"] = Value::String(given.clone());
        }
        object
    }
}

/// The tool error result for arguments that do not fit.
fn rejection(exposed: &str, problems: &[Problem], truncated: bool) -> Value {
    let mut text = format!(
        "Invalid arguments for tool `{exposed}` (checked against its inputSchema; the tool was not called):"
    );
    for problem in problems {
        let path = if problem.path.is_empty() {
            "(arguments)"
        } else {
            problem.path.as_str()
        };
        text.push_str(&format!("\n- {path}: {}", problem.message));
    }
    if truncated {
        text.push_str(&format!("\n(only the first {MAX_ERRORS} errors are shown)"));
    }
    let errors: Vec<Value> = problems.iter().map(Problem::to_json).collect();
    json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": {
            meta::VALIDATION: { "tool": exposed, "errors": errors, "truncated": truncated },
        },
    })
}

/// What is wrong with `arguments`, at most [`MAX_ERRORS`], and whether more was left out.
fn problems(checker: &Checker, schema: &Value, arguments: &Value) -> (Vec<Problem>, bool) {
    let mut problems = Vec::new();
    let mut truncated = false;
    for error in checker.validator.iter_errors(arguments) {
        if problems.len() >= MAX_ERRORS {
            truncated = true;
            break;
        }
        let at = error.instance_path().as_str();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                let valid = object_properties(schema, error.schema_path().as_str());
                for name in unexpected {
                    let mut problem = Problem::new(
                        child(at, name),
                        error.kind().keyword(),
                        format!("unknown property {}", quote_name(name)),
                    );
                    let closest = crate::suggest::closest(name, valid.iter().map(String::as_str));
                    match closest.first() {
                        Some(suggestion) => {
                            problem
                                .message
                                .push_str(&format!("; did you mean {}?", quote_name(suggestion)));
                            problem.suggestion = Some(suggestion.clone());
                        }
                        None if !valid.is_empty() => {
                            problem
                                .message
                                .push_str(&format!("; valid properties: {}", listed(&valid)));
                        }
                        None => problem
                            .message
                            .push_str(" (no properties are allowed here)"),
                    }
                    problems.push(problem);
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let mut problem = Problem::new(
                    child(at, name),
                    "required",
                    format!("missing required property {}", quote_name(name)),
                );
                let valid = object_properties(schema, error.schema_path().as_str());
                if let Some(given) = unknown_close_to(name, error.instance(), &valid) {
                    problem.message.push_str(&format!(
                        " ({} was given: did you mean {}?)",
                        quote_name(&given),
                        quote_name(name)
                    ));
                    problem.suggestion = Some(name.to_owned());
                    problem.given = Some(given);
                }
                problems.push(problem);
            }
            kind => problems.push(Problem::new(
                at.to_owned(),
                kind.keyword(),
                expected(&error),
            )),
        }
    }
    if problems.len() > MAX_ERRORS {
        problems.truncate(MAX_ERRORS);
        truncated = true;
    }
    // By path, so the answer does not depend on the order the schema's keywords ran in.
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    drop_repeated_hints(&mut problems);
    (problems, truncated)
}

/// A missing required property whose hint repeats what the unknown property's own error
/// already says keeps only its plain message.
fn drop_repeated_hints(problems: &mut [Problem]) {
    let said: Vec<(String, String)> = problems
        .iter()
        .filter(|p| p.given.is_none())
        .filter_map(|p| Some((p.path.clone(), p.suggestion.clone()?)))
        .collect();
    for problem in problems.iter_mut() {
        let Some(given) = &problem.given else {
            continue;
        };
        let parent = problem
            .path
            .rsplit_once('/')
            .map_or("", |(parent, _)| parent);
        let unknown_path = child(parent, given);
        if said.iter().any(|(path, suggestion)| {
            *path == unknown_path && Some(suggestion) == problem.suggestion.as_ref()
        }) {
            let name = problem.suggestion.take().unwrap_or_default();
            problem.given = None;
            problem.message = format!("missing required property {}", quote_name(&name));
        }
    }
}

/// The property of `object` that the schema does not name and that is closest to `name`.
fn unknown_close_to(name: &str, object: &Value, valid: &[String]) -> Option<String> {
    let object = object.as_object()?;
    let mut suggester = Suggester::new(name)?;
    for key in object.keys() {
        if !valid.iter().any(|v| v == key) {
            suggester.offer(key, &[]);
        }
    }
    suggester.finish().into_iter().next()
}

/// The property names the object schema at `keyword_path`'s parent names (its
/// `properties`, and those of its `allOf` / `anyOf` / `oneOf` members and local `$ref`s).
fn object_properties(schema: &Value, keyword_path: &str) -> Vec<String> {
    let parent = keyword_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    let mut names = Vec::new();
    if let Some(node) = schema.pointer(parent) {
        collect_properties(schema, node, MAX_SCHEMA_WALK, &mut names);
    }
    names
}

fn collect_properties(root: &Value, node: &Value, depth: usize, names: &mut Vec<String>) {
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for name in properties.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    if depth == 0 {
        return;
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        for member in node
            .get(keyword)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect_properties(root, member, depth - 1, names);
        }
    }
    if let Some(target) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        collect_properties(root, target, depth - 1, names);
    }
}

/// `parent` with one more JSON Pointer segment.
fn child(parent: &str, name: &str) -> String {
    format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// A property name in backticks, cut to [`MAX_QUOTE`] characters.
fn quote_name(name: &str) -> String {
    format!("`{}`", cut(name))
}

/// A JSON value, cut to [`MAX_QUOTE`] characters.
fn quote(value: &Value) -> String {
    cut(&value.to_string())
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(MAX_LISTED)
        .map(|name| quote_name(name))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        text.push_str(", …");
    }
    text
}

/// The JSON type of a value, as a schema names it.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// What was expected, without repeating the value that was given (it may be large).
fn expected(error: &ValidationError<'_>) -> String {
    let got = type_of(error.instance());
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            let wanted = match kind {
                TypeKind::Single(one) => one.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("expected {wanted}, got {got}")
        }
        ValidationErrorKind::Enum { options } => format!("expected one of {}", quote(options)),
        ValidationErrorKind::Constant { expected_value } => {
            format!("expected exactly {}", quote(expected_value))
        }
        ValidationErrorKind::Minimum { limit } => format!("expected a number >= {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("expected a number <= {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("expected a number > {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("expected a number < {limit}"),
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("expected a multiple of {multiple_of}")
        }
        ValidationErrorKind::MinLength { limit } => format!(
            "expected a string of at least {}",
            plural(*limit, "character", "characters")
        ),
        ValidationErrorKind::MaxLength { limit } => format!(
            "expected a string of at most {}",
            plural(*limit, "character", "characters")
        ),
        ValidationErrorKind::MinItems { limit } => format!(
            "expected an array of at least {}",
            plural(*limit, "item", "items")
        ),
        ValidationErrorKind::MaxItems { limit } => format!(
            "expected an array of at most {}",
            plural(*limit, "item", "items")
        ),
        ValidationErrorKind::MinProperties { limit } => format!(
            "expected an object with at least {}",
            plural(*limit, "property", "properties")
        ),
        ValidationErrorKind::MaxProperties { limit } => format!(
            "expected an object with at most {}",
            plural(*limit, "property", "properties")
        ),
        ValidationErrorKind::Pattern { pattern } => {
            format!("expected a string matching {}", quote_name(pattern))
        }
        ValidationErrorKind::Format { format } => {
            format!("expected a string in the {} format", quote_name(format))
        }
        ValidationErrorKind::UniqueItems => "expected items that are all different".to_owned(),
        ValidationErrorKind::AnyOf { .. } => {
            format!(
                "expected a value matching at least one of the allowed forms (anyOf), got {got}"
            )
        }
        ValidationErrorKind::OneOfNotValid { .. } => {
            format!("expected a value matching exactly one of the allowed forms (oneOf), got {got}")
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "expected a value matching exactly one of the allowed forms (oneOf); it matches several"
                .to_owned()
        }
        ValidationErrorKind::Not { .. } => {
            "expected a value that does not match the schema under `not`".to_owned()
        }
        ValidationErrorKind::FalseSchema => "no value is allowed here".to_owned(),
        ValidationErrorKind::Contains => {
            "expected an array with at least one item matching `contains`".to_owned()
        }
        ValidationErrorKind::AdditionalItems { limit } => format!(
            "expected an array of at most {}",
            plural(*limit as u64, "item", "items")
        ),
        ValidationErrorKind::UnevaluatedItems { .. } => {
            "expected no items beyond those the schema describes".to_owned()
        }
        _ => cut(&error.masked().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::catalog::ServerLists;

    fn catalog(tools: Vec<Value>) -> Catalog {
        let mut lists = BTreeMap::new();
        lists.insert(
            "fs".to_owned(),
            Arc::new(ServerLists {
                tools,
                ..ServerLists::default()
            }),
        );
        Catalog::build(&lists, false)
    }

    fn tool(name: &str, schema: Value) -> Value {
        json!({ "name": name, "inputSchema": schema })
    }

    fn validate() -> Validate {
        Validate::new(&Metrics::default())
    }

    fn errors(result: &Value) -> &Vec<Value> {
        result["_meta"][meta::VALIDATION]["errors"]
            .as_array()
            .unwrap()
    }

    fn paths(result: &Value) -> Vec<&str> {
        errors(result)
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn fitting_arguments_pass_and_bad_ones_are_a_tool_error() {
        let step = validate();
        let catalog = catalog(vec![tool(
            "add",
            json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
        )]);
        assert_eq!(
            step.check(&catalog, "fs", "fs__add", Some(&json!({"a": 1, "b": 2.5}))),
            None
        );
        let result = step
            .check(&catalog, "fs", "fs__add", Some(&json!({"a": "1"})))
            .unwrap();
        assert_eq!(result["isError"], true);
        assert_eq!(paths(&result), ["/a", "/b"]);
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("- /a: expected number, got string"), "{text}");
        assert!(
            text.contains("- /b: missing required property `b`"),
            "{text}"
        );
        // No arguments at all are checked as `{}`.
        let result = step.check(&catalog, "fs", "fs__add", None).unwrap();
        assert_eq!(paths(&result), ["/a", "/b"]);
        assert_eq!(step.invalid.get("fs"), 2);
    }

    #[test]
    fn misspelled_properties_get_the_closest_name() {
        let step = validate();
        let catalog = catalog(vec![
            tool(
                "strict",
                json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                       "required": ["path"], "additionalProperties": false}),
            ),
            tool(
                "open",
                json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            ),
        ]);
        let result = step
            .check(
                &catalog,
                "fs",
                "fs__strict",
                Some(&json!({"pth": "/tmp", "content": "x"})),
            )
            .unwrap();
        let found = errors(&result);
        let unknown = found.iter().find(|e| e["path"] == "/pth").unwrap();
        assert_eq!(unknown["keyword"], "additionalProperties");
        assert_eq!(unknown["suggestion"], "path");
        assert!(
            unknown["message"]
                .as_str()
                .unwrap()
                .contains("did you mean `path`?")
        );
        // The missing `path` does not repeat the hint the unknown `pth` already gives.
        let missing = found.iter().find(|e| e["path"] == "/path").unwrap();
        assert_eq!(missing["message"], "missing required property `path`");

        // Additional properties allowed: the missing one names the unknown one given.
        let result = step
            .check(&catalog, "fs", "fs__open", Some(&json!({"Pth": "/tmp"})))
            .unwrap();
        let missing = &errors(&result)[0];
        assert_eq!(missing["path"], "/path");
        assert_eq!(missing["suggestion"], "path");
        assert_eq!(missing["given"], "Pth");
        assert!(
            missing["message"]
                .as_str()
                .unwrap()
                .contains("`Pth` was given: did you mean `path`?")
        );

        // Nothing close: the valid names are listed.
        let result = step
            .check(
                &catalog,
                "fs",
                "fs__strict",
                Some(&json!({"path": "/", "zzzzzz": 1})),
            )
            .unwrap();
        assert!(
            errors(&result)[0]["message"]
                .as_str()
                .unwrap()
                .contains("valid properties: `path`, `content`")
        );
    }

    #[test]
    fn nested_paths_and_refs() {
        let step = validate();
        let catalog = catalog(vec![tool(
            "edit",
            json!({
                "type": "object",
                "$defs": {"edit": {"type": "object", "properties": {"oldText": {"type": "string"}, "newText": {"type": "string"}},
                                   "required": ["oldText", "newText"], "additionalProperties": false}},
                "properties": {"edits": {"type": "array", "items": {"$ref": "#/$defs/edit"}}},
            }),
        )]);
        let result = step
            .check(
                &catalog,
                "fs",
                "fs__edit",
                Some(&json!({"edits": [{"oldText": "a", "newText": "b"}, {"oldtext": "a", "newText": 3}]})),
            )
            .unwrap();
        assert_eq!(
            paths(&result),
            ["/edits/1/newText", "/edits/1/oldText", "/edits/1/oldtext"]
        );
        let unknown = errors(&result)
            .iter()
            .find(|e| e["path"] == "/edits/1/oldtext")
            .unwrap();
        assert_eq!(unknown["suggestion"], "oldText");
    }

    #[test]
    fn null_members_count_as_not_given() {
        let step = validate();
        let catalog = catalog(vec![tool(
            "t",
            json!({"type": "object", "properties": {
                "region": {"type": "string"},
                "verbose": {"type": "boolean"},
                "nested": {"type": "object", "properties": {"depth": {"type": "integer"}}},
                "list": {"type": "array", "items": {"type": "integer"}},
            }, "required": ["region"]}),
        )]);
        let check = |arguments: Value| step.check(&catalog, "fs", "fs__t", Some(&arguments));
        assert_eq!(check(json!({"region": "eu", "verbose": null})), None);
        assert_eq!(
            check(json!({"region": "eu", "nested": {"depth": null}})),
            None
        );
        // A required property given as null is missing.
        let result = check(json!({"region": null, "verbose": true})).unwrap();
        assert_eq!(paths(&result), ["/region"]);
        assert_eq!(errors(&result)[0]["keyword"], "required");
        // Other errors are still reported, without the null ones; array items stay.
        let result =
            check(json!({"region": "eu", "verbose": null, "nested": {"depth": "x"}})).unwrap();
        assert_eq!(paths(&result), ["/nested/depth"]);
        let result = check(json!({"region": "eu", "list": [1, null]})).unwrap();
        assert_eq!(paths(&result), ["/list/1"]);
    }

    #[test]
    fn error_count_is_bounded() {
        let step = validate();
        let catalog = catalog(vec![tool(
            "many",
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        )]);
        let arguments: Map<String, Value> =
            (0..100).map(|i| (format!("k{i}"), json!("x"))).collect();
        let result = step
            .check(&catalog, "fs", "fs__many", Some(&Value::Object(arguments)))
            .unwrap();
        assert_eq!(errors(&result).len(), MAX_ERRORS);
        assert_eq!(result["_meta"][meta::VALIDATION]["truncated"], true);
    }

    #[test]
    fn a_schema_that_does_not_compile_is_not_checked() {
        let step = validate();
        let catalog = catalog(vec![
            tool("broken", json!({"type": "no-such-type"})),
            tool(
                "dialect",
                json!({"$schema": "https://example.invalid/unknown-dialect", "type": "string"}),
            ),
            tool(
                "huge",
                json!({"type": "object", "description": "x".repeat(MAX_SCHEMA_BYTES)}),
            ),
        ]);
        for name in ["fs__broken", "fs__dialect", "fs__huge"] {
            assert_eq!(
                step.check(&catalog, "fs", name, Some(&json!(42))),
                None,
                "{name}"
            );
        }
        // Remembered once per schema: a rebuilt snapshot finds the failures cached.
        assert_eq!(step.cache.lock().entries.len(), 3);
    }

    #[test]
    fn validators_are_reused_across_snapshots_and_bounded() {
        let step = validate();
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let first = catalog(vec![tool("t", schema.clone())]);
        let second = catalog(vec![tool("t", schema)]);
        assert!(
            step.check(&first, "fs", "fs__t", Some(&json!({"a": 1})))
                .is_some()
        );
        assert!(
            step.check(&second, "fs", "fs__t", Some(&json!({"a": 1})))
                .is_some()
        );
        let (one, two) = (
            first.tool_check(0).get().unwrap().clone().unwrap(),
            second.tool_check(0).get().unwrap().clone().unwrap(),
        );
        assert!(Arc::ptr_eq(&one, &two));

        let mut cache = Cache::default();
        for i in 0..MAX_CACHED + 10 {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            if i == MAX_CACHED {
                // The very first entry, used just before the cache overflows, survives.
                let mut first = [0u8; 32];
                first[..8].copy_from_slice(&0u64.to_le_bytes());
                assert!(cache.get(&first).is_some());
            }
            cache.insert(digest, None);
        }
        assert_eq!(cache.entries.len(), MAX_CACHED);
        assert!(cache.get(&[0u8; 32]).is_some());
        let mut second = [0u8; 32];
        second[0] = 1;
        assert!(
            cache.get(&second).is_none(),
            "the least recently used went first"
        );
    }

    #[test]
    fn remote_and_file_refs_are_never_fetched() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("schema.json");
        // Were the file read, `{"a": 1}` would fail this schema.
        std::fs::write(&file, r#"{"type": "string"}"#).unwrap();
        let step = validate();
        let catalog = catalog(vec![
            tool(
                "remote",
                json!({"$ref": format!("http://127.0.0.1:{port}/x")}),
            ),
            tool(
                "nested",
                json!({"type": "object", "properties": {"a": {"$ref": format!("http://127.0.0.1:{port}/y#/a")}}}),
            ),
            tool(
                "relative",
                json!({"$id": format!("http://127.0.0.1:{port}/root.json"), "$ref": "other.json"}),
            ),
            tool(
                "file",
                json!({"$ref": format!("file://{}", file.display())}),
            ),
        ]);
        for name in ["fs__remote", "fs__nested", "fs__relative", "fs__file"] {
            assert_eq!(
                step.check(&catalog, "fs", name, Some(&json!({"a": 1}))),
                None,
                "{name}"
            );
        }
        for index in 0..4 {
            assert!(
                catalog.tool_check(index).get().unwrap().is_none(),
                "tool {index} compiled"
            );
        }
        assert!(
            matches!(listener.accept(), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
            "something connected to the $ref's address"
        );
    }

    #[test]
    fn unchecked_servers_pass() {
        let step = validate();
        let schema = json!({"type": "object", "required": ["a"]});
        let catalog = catalog(vec![tool("t", schema)])
            .without_validation(&std::iter::once("fs".to_owned()).collect());
        assert_eq!(step.check(&catalog, "fs", "fs__t", Some(&json!({}))), None);
        assert!(step.cache.lock().entries.is_empty());
    }

    #[test]
    fn messages_do_not_repeat_the_value() {
        let step = validate();
        let catalog = catalog(vec![tool(
            "t",
            json!({"type": "object", "properties": {
                "n": {"type": "integer", "minimum": 1},
                "e": {"enum": ["a", "b"]},
                "s": {"type": "string", "maxLength": 3},
            }}),
        )]);
        let secret = "s".repeat(1000);
        let result = step
            .check(
                &catalog,
                "fs",
                "fs__t",
                Some(&json!({"n": 0, "e": "c", "s": secret})),
            )
            .unwrap();
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(!text.contains(&secret[..10]), "{text}");
        assert!(text.contains("- /n: expected a number >= 1"), "{text}");
        assert!(
            text.contains("- /e: expected one of [\"a\",\"b\"]"),
            "{text}"
        );
        assert!(
            text.contains("- /s: expected a string of at most 3 characters"),
            "{text}"
        );
    }
}
