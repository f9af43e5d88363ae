//! One MCP Registry `server.json` document → one server definition in the `.mcp.json`
//! entry shape (the one the admin API takes), which `roster::parse_definition` then
//! validates like any other. Pure: no I/O; the environment is passed in.
//!
//! The mapping (registry schema `2025-*`, `packages` and `remotes`):
//! - a remote `streamable-http` → `{"type": "http", url, headers}`, `sse` → `"sse"`;
//! - a package with `transport.type = "stdio"` → a command line from the source's runner
//!   for its `registryType` (built-in: `npm` → `npx -y pkg@version`, `pypi` →
//!   `uvx pkg==version`, `oci` → `docker run -i --rm image:version`): runtime arguments
//!   where the runner says `{runtime_args}`, package arguments last;
//! - `environmentVariables`: a value (or default) is passed as written — `${VAR}` and
//!   `${secret:NAME}` are expanded by our config rules —; one without either is taken from
//!   the gateway's environment as `${NAME}`, and a *required* one missing there is an error
//!   naming every such variable; for `oci` packages each variable is also passed into the
//!   container with `-e NAME`;
//! - a required header or argument without a value is an error naming it.
//!
//! The source's `prefer` picks the first form to try; when it cannot be used (unsupported
//! type, missing values) the other is tried, and the error lists why each failed.
//! Template variables in values (`{name}` with a `variables` map) are not filled in.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use switchboard_config::{Prefer, RegistrySource, Runner, ServerName};

/// A document mapped: the server's name and its definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    pub(crate) name: String,
    pub(crate) definition: Value,
}

/// Why a document yields no server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MapError {
    #[error("not a server.json document: {0}")]
    Shape(String),
    #[error("server name `{name}` cannot be used: {reason}")]
    Name { name: String, reason: String },
    #[error("`{server}` has no usable package or remote: {}", .reasons.join("; "))]
    Unusable {
        server: String,
        reasons: Vec<String>,
    },
}

/// The runner the registry type gets without configuration.
pub(crate) fn builtin_runner(registry_type: &str) -> Option<Runner> {
    let (command, args): (&str, &[&str]) = match registry_type {
        "npm" => ("npx", &["{runtime_args}", "-y", "{package}"]),
        "pypi" => ("uvx", &["{runtime_args}", "{package}"]),
        "oci" => (
            "docker",
            &["run", "-i", "--rm", "{runtime_args}", "{package}"],
        ),
        _ => return None,
    };
    Some(Runner {
        command: command.to_owned(),
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
    })
}

/// Maps `document`; `prefix` goes before the derived name; `env` looks up the gateway's
/// environment (only whether a variable is set is asked).
pub(crate) fn map(
    document: &Value,
    source: &RegistrySource,
    prefix: &str,
    env: &dyn Fn(&str) -> bool,
) -> Result<Mapped, MapError> {
    let object = document
        .as_object()
        .ok_or_else(|| MapError::Shape("the document is not a JSON object".into()))?;
    let registry_name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| MapError::Shape("`name` (a string) is required".into()))?;
    let name = server_name(registry_name, prefix)?;
    let packages = array(object, "packages")?;
    let remotes = array(object, "remotes")?;
    let mut reasons = Vec::new();
    let order: [bool; 2] = match source.prefer {
        Prefer::Remote => [true, false],
        Prefer::Package => [false, true],
    };
    for remote_first in order {
        let attempts: Vec<Result<Value, String>> = if remote_first {
            remotes.iter().map(remote).collect()
        } else {
            packages
                .iter()
                .map(|package| self::package(package, source, env))
                .collect()
        };
        for attempt in attempts {
            match attempt {
                Ok(definition) => return Ok(Mapped { name, definition }),
                Err(reason) => reasons.push(reason),
            }
        }
    }
    if reasons.is_empty() {
        reasons.push("it lists neither `packages` nor `remotes`".into());
    }
    Err(MapError::Unusable {
        server: name,
        reasons,
    })
}

/// `io.github.owner/weather-server` → `weather-server` (with the prefix): the part after
/// the last `/`, other characters than letters, digits, `-` and `_` made `-`.
pub(crate) fn server_name(registry_name: &str, prefix: &str) -> Result<String, MapError> {
    let last = registry_name.rsplit('/').next().unwrap_or(registry_name);
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("__") {
        name = name.replace("__", "_");
    }
    let name = format!("{prefix}{}", name.trim_matches('-'));
    match ServerName::new(name.clone()) {
        Ok(_) => Ok(name),
        Err(error) => Err(MapError::Name {
            name,
            reason: error.reason.to_owned(),
        }),
    }
}

fn array<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], MapError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(MapError::Shape(format!("`{key}` must be an array"))),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn remote(remote: &Value) -> Result<Value, String> {
    let kind = text(remote, "type").unwrap_or("");
    let transport = match kind {
        "streamable-http" | "streamable_http" | "http" => "http",
        "sse" => "sse",
        other => return Err(format!("remote type `{other}` is not supported")),
    };
    let url = text(remote, "url").ok_or("a remote without `url`")?;
    let mut headers = Map::new();
    let mut missing = Vec::new();
    for header in remote
        .get("headers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(name) = text(header, "name") else {
            return Err("a remote header without `name`".into());
        };
        match text(header, "value").or_else(|| text(header, "default")) {
            Some(value) => {
                headers.insert(name.to_owned(), Value::String(value.to_owned()));
            }
            None if flag(header, "isRequired") => missing.push(name.to_owned()),
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "remote {url} needs header(s) without a value: {}",
            missing.join(", ")
        ));
    }
    let mut definition = json!({ "type": transport, "url": url });
    if !headers.is_empty() {
        definition["headers"] = Value::Object(headers);
    }
    Ok(definition)
}

fn package(
    package: &Value,
    source: &RegistrySource,
    env: &dyn Fn(&str) -> bool,
) -> Result<Value, String> {
    let registry_type = text(package, "registryType")
        .or_else(|| text(package, "registry_type"))
        .ok_or("a package without `registryType`")?;
    let identifier = text(package, "identifier")
        .or_else(|| text(package, "name"))
        .ok_or("a package without `identifier`")?;
    let transport = package
        .get("transport")
        .and_then(|transport| text(transport, "type"))
        .unwrap_or("stdio");
    if transport != "stdio" {
        return Err(format!(
            "package {identifier}: transport `{transport}` is not supported (only stdio packages are run)"
        ));
    }
    let runner = source
        .runners
        .get(registry_type)
        .cloned()
        .or_else(|| builtin_runner(registry_type))
        .ok_or_else(|| {
            format!(
                "package {identifier}: no runner for registryType `{registry_type}` (add [discovery.runners.{registry_type}])"
            )
        })?;
    let version = text(package, "version").filter(|v| !v.is_empty() && *v != "latest");
    let pinned = match (registry_type, version) {
        (_, None) => identifier.to_owned(),
        ("npm", Some(version)) => format!("{identifier}@{version}"),
        ("pypi", Some(version)) => format!("{identifier}=={version}"),
        ("oci", Some(version)) => format!("{identifier}:{version}"),
        (_, Some(version)) => format!("{identifier}@{version}"),
    };

    let mut environment = Map::new();
    let mut missing = Vec::new();
    let mut env_names = Vec::new();
    for variable in package
        .get("environmentVariables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(name) = text(variable, "name") else {
            return Err(format!(
                "package {identifier}: an environment variable without `name`"
            ));
        };
        let value = match text(variable, "value").or_else(|| text(variable, "default")) {
            Some(value) => value.to_owned(),
            None if env(name) => format!("${{{name}}}"),
            None if flag(variable, "isRequired") => {
                missing.push(name.to_owned());
                continue;
            }
            None => continue,
        };
        env_names.push(name.to_owned());
        environment.insert(name.to_owned(), Value::String(value));
    }
    if !missing.is_empty() {
        return Err(format!(
            "package {identifier} needs environment variable(s) that have no value and are not set in the gateway's environment: {}",
            missing.join(", ")
        ));
    }

    let mut runtime_args = Vec::new();
    if registry_type == "oci" {
        for name in &env_names {
            runtime_args.push("-e".to_owned());
            runtime_args.push(name.clone());
        }
    }
    runtime_args.extend(arguments(package, "runtimeArguments", identifier)?);
    let package_args = arguments(package, "packageArguments", identifier)?;

    let mut args = Vec::new();
    let mut placed = false;
    for arg in &runner.args {
        if arg == "{runtime_args}" {
            args.extend(runtime_args.iter().cloned());
            placed = true;
            continue;
        }
        args.push(
            arg.replace("{package}", &pinned)
                .replace("{identifier}", identifier)
                .replace("{version}", version.unwrap_or("latest")),
        );
    }
    if !placed {
        args.splice(0..0, runtime_args);
    }
    args.extend(package_args);
    let mut definition = json!({ "command": runner.command, "args": args });
    if !environment.is_empty() {
        definition["env"] = Value::Object(environment);
    }
    Ok(definition)
}

/// `runtimeArguments` / `packageArguments` as command-line words.
fn arguments(package: &Value, key: &str, identifier: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut missing: BTreeMap<usize, String> = BTreeMap::new();
    for (index, argument) in package
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let value = text(argument, "value").or_else(|| text(argument, "default"));
        match text(argument, "type").unwrap_or("positional") {
            "named" => {
                let Some(name) = text(argument, "name") else {
                    return Err(format!(
                        "package {identifier}: a named argument without `name`"
                    ));
                };
                match value {
                    Some(value) => {
                        words.push(name.to_owned());
                        words.push(value.to_owned());
                    }
                    None if flag(argument, "isRequired") => {
                        missing.insert(index, name.to_owned());
                    }
                    None => {}
                }
            }
            "positional" => match value {
                Some(value) => words.push(value.to_owned()),
                None if flag(argument, "isRequired") => {
                    let hint = text(argument, "valueHint").unwrap_or("value");
                    missing.insert(index, format!("{key}[{index}] ({hint})"));
                }
                None => {}
            },
            other => {
                return Err(format!(
                    "package {identifier}: argument type `{other}` is not supported"
                ));
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "package {identifier} needs argument(s) without a value: {}",
            missing.into_values().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn source(prefer: Prefer) -> RegistrySource {
        RegistrySource {
            path: PathBuf::from("/x"),
            prefer,
            runners: BTreeMap::new(),
            max_file_bytes: 1 << 20,
        }
    }

    fn set(names: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |name| names.contains(&name)
    }

    #[test]
    fn npm_package_with_arguments_and_environment() {
        let document = json!({
            "$schema": "https://static.modelcontextprotocol.io/schemas/2025-10-17/server.schema.json",
            "name": "io.github.acme/weather",
            "version": "1.2.3",
            "packages": [{
                "registryType": "npm",
                "identifier": "@acme/weather-mcp",
                "version": "1.2.3",
                "transport": { "type": "stdio" },
                "runtimeArguments": [{ "type": "named", "name": "--node-options", "value": "--max-old-space-size=256" }],
                "packageArguments": [
                    { "type": "positional", "value": "serve" },
                    { "type": "named", "name": "--units", "default": "metric" },
                    { "type": "named", "name": "--verbose" }
                ],
                "environmentVariables": [
                    { "name": "WEATHER_API_KEY", "isRequired": true, "isSecret": true },
                    { "name": "REGION", "value": "eu" },
                    { "name": "OPTIONAL_UNSET" }
                ]
            }]
        });
        let mapped = map(
            &document,
            &source(Prefer::Remote),
            "",
            &set(&["WEATHER_API_KEY"]),
        )
        .unwrap();
        assert_eq!(mapped.name, "weather");
        assert_eq!(
            mapped.definition,
            json!({
                "command": "npx",
                "args": ["--node-options", "--max-old-space-size=256", "-y", "@acme/weather-mcp@1.2.3",
                         "serve", "--units", "metric"],
                "env": { "WEATHER_API_KEY": "${WEATHER_API_KEY}", "REGION": "eu" }
            })
        );
    }

    #[test]
    fn required_environment_missing_is_named() {
        let document = json!({
            "name": "io.github.acme/db",
            "packages": [{
                "registryType": "pypi", "identifier": "acme-db-mcp", "version": "0.4.0",
                "environmentVariables": [
                    { "name": "DB_URL", "isRequired": true },
                    { "name": "DB_TOKEN", "isRequired": true },
                    { "name": "SET_ONE", "isRequired": true }
                ]
            }]
        });
        let error = map(&document, &source(Prefer::Package), "", &set(&["SET_ONE"])).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("DB_URL, DB_TOKEN"), "{text}");
        assert!(!text.contains("SET_ONE"), "{text}");
        let set_all = map(&document, &source(Prefer::Package), "", &|_| true).unwrap();
        assert_eq!(set_all.definition["command"], "uvx");
        assert_eq!(set_all.definition["args"], json!(["acme-db-mcp==0.4.0"]));
    }

    #[test]
    fn oci_passes_environment_into_the_container() {
        let document = json!({
            "name": "io.github.acme/files",
            "packages": [{
                "registryType": "oci", "identifier": "ghcr.io/acme/files", "version": "2.0",
                "environmentVariables": [{ "name": "ROOT", "default": "/data" }],
                "runtimeArguments": [{ "type": "named", "name": "-v", "value": "/srv:/data" }]
            }]
        });
        let mapped = map(&document, &source(Prefer::Package), "", &|_| false).unwrap();
        assert_eq!(
            mapped.definition,
            json!({
                "command": "docker",
                "args": ["run", "-i", "--rm", "-e", "ROOT", "-v", "/srv:/data", "ghcr.io/acme/files:2.0"],
                "env": { "ROOT": "/data" }
            })
        );
    }

    #[test]
    fn remote_preferred_and_package_as_fallback() {
        let document = json!({
            "name": "com.example/search",
            "packages": [{ "registryType": "npm", "identifier": "search-mcp", "version": "1.0.0" }],
            "remotes": [
                { "type": "websocket", "url": "wss://x" },
                { "type": "streamable-http", "url": "https://mcp.example.com/mcp",
                  "headers": [{ "name": "X-Api-Key", "value": "${SEARCH_KEY}", "isSecret": true }] }
            ]
        });
        let remote = map(&document, &source(Prefer::Remote), "ext-", &|_| false).unwrap();
        assert_eq!(remote.name, "ext-search");
        assert_eq!(
            remote.definition,
            json!({ "type": "http", "url": "https://mcp.example.com/mcp", "headers": { "X-Api-Key": "${SEARCH_KEY}" } })
        );
        let package = map(&document, &source(Prefer::Package), "", &|_| false).unwrap();
        assert_eq!(
            package.definition["args"],
            json!(["-y", "search-mcp@1.0.0"])
        );

        let sse_needs_header = json!({
            "name": "com.example/legacy",
            "remotes": [{ "type": "sse", "url": "https://x/sse", "headers": [{ "name": "Authorization", "isRequired": true }] }],
            "packages": [{ "registryType": "nuget", "identifier": "Acme.Mcp", "version": "1.0" }]
        });
        let error = map(&sse_needs_header, &source(Prefer::Remote), "", &|_| false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("Authorization"), "{error}");
        assert!(error.contains("[discovery.runners.nuget]"), "{error}");
    }

    #[test]
    fn configured_runner_replaces_the_builtin() {
        let mut configured = source(Prefer::Package);
        configured.runners.insert(
            "npm".into(),
            Runner {
                command: "bunx".into(),
                args: vec!["{identifier}@{version}".into()],
            },
        );
        let document = json!({
            "name": "x/tool",
            "packages": [{ "registryType": "npm", "identifier": "tool", "version": "3.1.0",
                           "runtimeArguments": [{ "type": "positional", "value": "--bun" }],
                           "packageArguments": [{ "type": "positional", "isRequired": true, "valueHint": "directory" }] }]
        });
        let error = map(&document, &configured, "", &|_| false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("packageArguments[0] (directory)"), "{error}");
        let mut fixed = document.clone();
        fixed["packages"][0]["packageArguments"][0]["value"] = json!("/srv");
        let mapped = map(&fixed, &configured, "", &|_| false).unwrap();
        assert_eq!(mapped.definition["command"], "bunx");
        assert_eq!(
            mapped.definition["args"],
            json!(["--bun", "tool@3.1.0", "/srv"])
        );
    }

    #[test]
    fn names_and_shapes() {
        assert_eq!(server_name("io.github.a/b.c d", "").unwrap(), "b-c-d");
        assert_eq!(server_name("plain__name", "p-").unwrap(), "p-plain_name");
        assert!(matches!(
            server_name("x/a-very-long-server-name-that-does-not-fit", ""),
            Err(MapError::Name { .. })
        ));
        assert!(matches!(
            map(&json!([]), &source(Prefer::Remote), "", &|_| false),
            Err(MapError::Shape(_))
        ));
        assert!(matches!(
            map(
                &json!({ "name": "a/b", "packages": {} }),
                &source(Prefer::Remote),
                "",
                &|_| false
            ),
            Err(MapError::Shape(_))
        ));
        let empty = map(
            &json!({ "name": "a/b" }),
            &source(Prefer::Remote),
            "",
            &|_| false,
        )
        .unwrap_err();
        assert!(empty.to_string().contains("neither"), "{empty}");
        let http_package = json!({ "name": "a/b", "packages": [{ "registryType": "npm", "identifier": "b", "transport": { "type": "streamable-http", "url": "http://localhost:3000/mcp" } }] });
        let error = map(&http_package, &source(Prefer::Package), "", &|_| false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("only stdio"), "{error}");
    }
}
