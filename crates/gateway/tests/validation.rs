//! Argument validation against the real tool schemas of the reference MCP servers
//! (`@modelcontextprotocol/server-filesystem` and `server-everything` from npm; captured
//! by `scripts/capture-schemas` into `tests/data/reference-schemas.json`): a corpus of good
//! and bad arguments with the exact error paths, keywords and suggestions expected.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_gateway::catalog::{Catalog, ServerLists};
use switchboard_gateway::metrics::Metrics;
use switchboard_gateway::pipeline::validate::Validate;

const CORPUS: &str = include_str!("data/reference-schemas.json");
const META_KEY: &str = "dev.switchboard/validation";

/// The captured servers as one catalog (`filesystem__read_file`, `everything__echo`, …),
/// plus `strict__*`: filesystem tools with `additionalProperties: false` added, for the
/// unknown-property errors the reference schemas never produce on their own.
fn catalog() -> Catalog {
    let corpus: Value = serde_json::from_str(CORPUS).unwrap();
    let mut lists = BTreeMap::new();
    for (server, tools) in corpus["servers"].as_object().unwrap() {
        let tools = tools.as_array().unwrap().clone();
        if server == "filesystem" {
            let strict = tools
                .iter()
                .map(|tool| {
                    let mut tool = tool.clone();
                    tool["inputSchema"]["additionalProperties"] = json!(false);
                    tool
                })
                .collect();
            lists.insert(
                "strict".to_owned(),
                Arc::new(ServerLists {
                    tools: strict,
                    ..ServerLists::default()
                }),
            );
        }
        lists.insert(
            server.clone(),
            Arc::new(ServerLists {
                tools,
                ..ServerLists::default()
            }),
        );
    }
    Catalog::build(&lists, false)
}

/// One expected error: JSON path, keyword, suggested property name.
type Expected = (&'static str, &'static str, Option<&'static str>);

fn case(
    validate: &Validate,
    catalog: &Catalog,
    tool: &str,
    arguments: Value,
    expected: &[Expected],
) {
    let server = tool.split("__").next().unwrap();
    let result = validate.check(catalog, server, tool, Some(&arguments));
    let Some(result) = result else {
        assert!(
            expected.is_empty(),
            "{tool} {arguments}: passed, expected {expected:?}"
        );
        return;
    };
    assert_eq!(result["isError"], true, "{tool}");
    let found: Vec<(String, String, Option<String>)> = result["_meta"][META_KEY]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| {
            (
                error["path"].as_str().unwrap().to_owned(),
                error["keyword"].as_str().unwrap().to_owned(),
                error["suggestion"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(path, keyword, suggestion)| {
            (
                (*path).to_owned(),
                (*keyword).to_owned(),
                suggestion.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(found, expected, "{tool} {arguments}");
    // Every error is in the text the model reads, with its path.
    let text = result["content"][0]["text"].as_str().unwrap();
    for (path, _, _) in &expected {
        let shown = if path.is_empty() { "(arguments)" } else { path };
        assert!(text.contains(&format!("- {shown}: ")), "{text}");
    }
}

#[test]
fn the_corpus_has_both_servers() {
    let catalog = catalog();
    for tool in [
        "filesystem__read_text_file",
        "filesystem__edit_file",
        "filesystem__list_allowed_directories",
        "everything__echo",
        "everything__get-sum",
        "everything__gzip-file-as-resource",
    ] {
        assert!(
            catalog.tool(tool).is_some(),
            "{tool} missing from the corpus"
        );
    }
}

#[test]
fn filesystem_arguments() {
    let validate = Validate::new(&Metrics::default());
    let catalog = catalog();
    let c = |tool: &str, arguments: Value, expected: &[Expected]| {
        case(&validate, &catalog, tool, arguments, expected)
    };
    // Good.
    c("filesystem__read_text_file", json!({"path": "/tmp/a"}), &[]);
    c(
        "filesystem__read_text_file",
        json!({"path": "/tmp/a", "head": 10, "tail": 2.5}),
        &[],
    );
    c(
        "filesystem__read_multiple_files",
        json!({"paths": ["a", "b"]}),
        &[],
    );
    c(
        "filesystem__edit_file",
        json!({"path": "a", "edits": [{"oldText": "x", "newText": "y"}], "dryRun": true}),
        &[],
    );
    c(
        "filesystem__list_directory_with_sizes",
        json!({"path": "/", "sortBy": "size"}),
        &[],
    );
    c(
        "filesystem__search_files",
        json!({"path": "/", "pattern": "*.rs", "excludePatterns": ["target"]}),
        &[],
    );
    c("filesystem__list_allowed_directories", json!({}), &[]);
    // Extra properties are fine where the schema does not forbid them.
    c("filesystem__list_allowed_directories", json!({"x": 1}), &[]);
    c(
        "filesystem__read_text_file",
        json!({"path": "/tmp/a", "hed": 5}),
        &[],
    );

    // Bad.
    c(
        "filesystem__read_text_file",
        json!({}),
        &[("/path", "required", None)],
    );
    c(
        "filesystem__read_text_file",
        json!({"pth": "/tmp/a"}),
        &[("/path", "required", Some("path"))],
    );
    c(
        "filesystem__read_text_file",
        json!({"path": null}),
        &[("/path", "required", None)],
    );
    c(
        "filesystem__read_text_file",
        json!({"path": 5}),
        &[("/path", "type", None)],
    );
    c(
        "filesystem__read_text_file",
        json!({"path": "a", "head": "10"}),
        &[("/head", "type", None)],
    );
    c(
        "filesystem__read_text_file",
        json!(["/tmp/a"]),
        &[("", "type", None)],
    );
    c(
        "filesystem__read_multiple_files",
        json!({"paths": []}),
        &[("/paths", "minItems", None)],
    );
    c(
        "filesystem__read_multiple_files",
        json!({"paths": ["a", 1, "c", null]}),
        &[("/paths/1", "type", None), ("/paths/3", "type", None)],
    );
    c(
        "filesystem__edit_file",
        json!({"path": "a", "edits": [{"oldText": "x"}, {"old_text": "x", "newText": 1}]}),
        &[
            ("/edits/0/newText", "required", None),
            ("/edits/1/newText", "type", None),
            ("/edits/1/oldText", "required", Some("oldText")),
        ],
    );
    c(
        "filesystem__edit_file",
        json!({"path": "a", "edits": {"oldText": "x", "newText": "y"}, "dryRun": "yes"}),
        &[("/dryRun", "type", None), ("/edits", "type", None)],
    );
    c(
        "filesystem__list_directory_with_sizes",
        json!({"path": "/", "sortBy": "date"}),
        &[("/sortBy", "enum", None)],
    );
    c(
        "filesystem__move_file",
        json!({"source": "a"}),
        &[("/destination", "required", None)],
    );
    c(
        "filesystem__write_file",
        json!({"path": "a", "contents": "x"}),
        &[("/content", "required", Some("content"))],
    );
    c(
        "filesystem__search_files",
        json!({"path": "/", "pattern": "*.rs", "excludePatterns": "target"}),
        &[("/excludePatterns", "type", None)],
    );

    // The same tools with additional properties forbidden: an unknown property names the
    // closest valid one, and the missing property it stands for does not repeat it.
    c(
        "strict__read_text_file",
        json!({"path": "a", "hed": 5}),
        &[("/hed", "additionalProperties", Some("head"))],
    );
    c(
        "strict__write_file",
        json!({"path": "a", "contents": "x"}),
        &[
            ("/content", "required", None),
            ("/contents", "additionalProperties", Some("content")),
        ],
    );
    c(
        "strict__list_allowed_directories",
        json!({"x": 1}),
        &[("/x", "additionalProperties", None)],
    );
}

#[test]
fn everything_arguments() {
    let validate = Validate::new(&Metrics::default());
    let catalog = catalog();
    let c = |tool: &str, arguments: Value, expected: &[Expected]| {
        case(&validate, &catalog, tool, arguments, expected)
    };
    // Good.
    c("everything__echo", json!({"message": "hi"}), &[]);
    c("everything__get-sum", json!({"a": 2, "b": 40}), &[]);
    c("everything__get-sum", json!({"a": 1.5, "b": -3e2}), &[]);
    // Numbers beyond 64 bits are still numbers (arbitrary-precision JSON on our side).
    let big: Value =
        serde_json::from_str(r#"{"a": 123456789012345678901234567890, "b": 1e400}"#).unwrap();
    c("everything__get-sum", big, &[]);
    c("everything__get-resource-links", json!({"count": 10}), &[]);
    c("everything__get-resource-links", json!({}), &[]);
    c(
        "everything__get-structured-content",
        json!({"location": "Chicago"}),
        &[],
    );
    c(
        "everything__get-annotated-message",
        json!({"messageType": "error", "includeImage": true}),
        &[],
    );
    // `format` is an annotation here: the server decides what a URI is.
    c(
        "everything__gzip-file-as-resource",
        json!({"data": "not a uri", "outputType": "resource"}),
        &[],
    );
    c("everything__get-env", json!({}), &[]);
    // A property given as null counts as not given.
    c(
        "everything__get-annotated-message",
        json!({"messageType": "success", "includeImage": null}),
        &[],
    );

    // Bad.
    c(
        "everything__echo",
        json!({"mesage": "hi"}),
        &[("/message", "required", Some("message"))],
    );
    c(
        "everything__echo",
        json!({"message": null}),
        &[("/message", "required", None)],
    );
    c(
        "everything__get-sum",
        json!({"a": "2", "b": 40}),
        &[("/a", "type", None)],
    );
    c(
        "everything__get-sum",
        json!({"a": 2}),
        &[("/b", "required", None)],
    );
    c(
        "everything__get-sum",
        json!({"A": 2, "B": 3}),
        &[("/a", "required", Some("a")), ("/b", "required", Some("b"))],
    );
    c(
        "everything__get-resource-links",
        json!({"count": 0}),
        &[("/count", "minimum", None)],
    );
    c(
        "everything__get-resource-links",
        json!({"count": 11}),
        &[("/count", "maximum", None)],
    );
    c(
        "everything__get-structured-content",
        json!({"location": "Boston"}),
        &[("/location", "enum", None)],
    );
    c(
        "everything__get-annotated-message",
        json!({"messageType": "warning", "includeImage": "yes"}),
        &[
            ("/includeImage", "type", None),
            ("/messageType", "enum", None),
        ],
    );
    c(
        "everything__gzip-file-as-resource",
        json!({"outputType": "zip"}),
        &[("/outputType", "enum", None)],
    );
    c(
        "everything__trigger-long-running-operation",
        json!({"duration": "10"}),
        &[("/duration", "type", None)],
    );
}

#[test]
fn messages_say_what_was_expected() {
    let validate = Validate::new(&Metrics::default());
    let catalog = catalog();
    let result = validate
        .check(
            &catalog,
            "everything",
            "everything__get-resource-links",
            Some(&json!({"count": 0})),
        )
        .unwrap();
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Invalid arguments for tool `everything__get-resource-links`"),
        "{text}"
    );
    assert!(text.contains("- /count: expected a number >= 1"), "{text}");

    let result = validate
        .check(
            &catalog,
            "everything",
            "everything__echo",
            Some(&json!({"mesage": "hi"})),
        )
        .unwrap();
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains(
            "- /message: missing required property `message` (`mesage` was given: did you mean `message`?)"
        ),
        "{text}"
    );
    let error = &result["_meta"][META_KEY]["errors"][0];
    assert_eq!(error["given"], "mesage");
    assert_eq!(result["_meta"][META_KEY]["tool"], "everything__echo");
    assert_eq!(result["_meta"][META_KEY]["truncated"], false);
}
