//! One script's interpreter: a Rhai engine built for that script alone, with the
//! `[scripts]` limits set, nothing registered that reaches outside the process (no module
//! resolver — the `no_module` build has no `import` at all —, `eval` disabled, `print` and
//! `debug` captured), and the script API:
//!
//! - `call(name, args)` (custom syntax, `args` optional): one inner call; returns the
//!   tool's result as a map; a failure is thrown as `#{message, code?, data?, result?}`,
//!   catchable with `try`/`catch`, except the run's own limits, which end the script;
//! - `parallel([[name, args], #{name, args}, …])`: independent calls, in flight together,
//!   answered in order; the first failure (by position) is thrown once all are answered;
//! - `text(result)`: the text blocks of a result, joined.
//!
//! Runs on a blocking thread (never an async worker): an inner call blocks this thread on
//! the runtime's handle while the pipeline runs it. The wall-time limit is checked between
//! operations (`on_progress`) and bounds every inner call, so a loop that calls nothing
//! ends at the deadline too.

use std::sync::Arc;

use parking_lot::Mutex;
use rhai::{Dynamic, Engine, EvalAltResult, Position};
use serde_json::{Value, json};
use switchboard_config::ScriptSettings;

use super::calls::{CallError, Caller, text_of};
use super::convert::{to_dynamic, to_json};

/// Lines of `print`/`debug` output kept per script, and bytes per line.
pub(crate) const MAX_LOG_LINES: usize = 64;
pub(crate) const MAX_LOG_LINE_BYTES: usize = 1024;
/// Operations between two checks of the clock and the cancellation.
const CHECK_EVERY: u64 = 64;

/// What ended a script that did not return a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The source does not parse (or is too long).
    Syntax,
    /// The script failed: a thrown value, a type error, an unknown function, …
    Runtime,
    /// An inner call failed and the script did not catch it.
    Call,
    /// A `[scripts]` limit was reached.
    Limit,
    /// The client cancelled the request.
    Cancelled,
}

impl FailureKind {
    fn as_str(self) -> &'static str {
        match self {
            FailureKind::Syntax => "syntax",
            FailureKind::Runtime => "runtime",
            FailureKind::Call => "call",
            FailureKind::Limit => "limit",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

/// A script's failure, with where it happened.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    /// The `[scripts]` key of the limit reached (`kind == Limit`).
    pub(crate) limit: Option<&'static str>,
    /// The call's error as a caught value would show it (`kind == Call`).
    pub(crate) detail: Option<Box<Value>>,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>, position: Position) -> Failure {
        Failure {
            kind,
            message: message.into(),
            line: position.line(),
            column: position.position(),
            limit: None,
            detail: None,
        }
    }

    fn limit(message: impl Into<String>, limit: &'static str, position: Position) -> Failure {
        Failure {
            limit: Some(limit),
            ..Failure::new(FailureKind::Limit, message, position)
        }
    }

    /// `line 3, column 5: message` (the position only when known).
    pub(crate) fn describe(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("line {line}, column {column}: {}", self.message),
            (Some(line), None) => format!("line {line}: {}", self.message),
            _ => self.message.clone(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "kind": self.kind.as_str(), "message": self.message });
        if let Some(line) = self.line {
            error["line"] = json!(line);
        }
        if let Some(column) = self.column {
            error["column"] = json!(column);
        }
        if let Some(limit) = self.limit {
            error["limit"] = json!(limit);
        }
        if let Some(detail) = &self.detail {
            error["call"] = (**detail).clone();
        }
        error
    }
}

/// A finished script: its value or its failure, and what it printed.
pub(crate) struct Outcome {
    pub(crate) result: Result<Value, Failure>,
    pub(crate) log: Vec<String>,
}

/// Runs `source` to its end, a limit, or a cancellation. Blocks: call it on a blocking
/// thread, with `handle` the runtime the inner calls run on.
pub(crate) fn run(
    source: &str,
    settings: &ScriptSettings,
    std: &rhai::Shared<rhai::Module>,
    caller: Arc<Caller>,
    handle: tokio::runtime::Handle,
) -> Outcome {
    let log = Arc::new(Mutex::new(Vec::new()));
    let result = if source.len() > settings.max_script_bytes {
        Err(Failure::limit(
            format!(
                "the script is {} bytes, over {} (scripts.max_script_bytes)",
                source.len(),
                settings.max_script_bytes
            ),
            "max_script_bytes",
            Position::NONE,
        ))
    } else {
        let engine = engine(settings, std, &caller, handle, &log);
        evaluate(&engine, source, settings)
    };
    let log = std::mem::take(&mut *log.lock());
    Outcome { result, log }
}

fn evaluate(engine: &Engine, source: &str, settings: &ScriptSettings) -> Result<Value, Failure> {
    let ast = engine.compile(source).map_err(|error| {
        Failure::new(FailureKind::Syntax, error.0.to_string(), error.position())
    })?;
    let value = engine
        .eval_ast::<Dynamic>(&ast)
        .map_err(|error| failure(*error, settings))?;
    let value = to_json(&value).map_err(|error| {
        Failure::new(
            FailureKind::Runtime,
            format!("the script's value: {error}"),
            Position::NONE,
        )
    })?;
    within_limits(&value, settings, Position::NONE).map_err(|error| failure(*error, settings))?;
    Ok(value)
}

/// Refuses a value (the script's answer, a call's arguments) over the size limits.
fn within_limits(
    value: &Value,
    settings: &ScriptSettings,
    position: Position,
) -> Result<(), Box<EvalAltResult>> {
    let sizes = super::convert::sizes(value);
    let over = if sizes.string_bytes > settings.max_string_bytes {
        Some("Length of string")
    } else if sizes.array_len > settings.max_array_len {
        Some("Size of array")
    } else if sizes.map_len > settings.max_map_len {
        Some("Size of object map")
    } else {
        None
    };
    match over {
        Some(what) => Err(EvalAltResult::ErrorDataTooLarge(what.into(), position).into()),
        None => Ok(()),
    }
}

/// The engine for one script: limits, the script API, the captured output.
fn engine(
    settings: &ScriptSettings,
    std: &rhai::Shared<rhai::Module>,
    caller: &Arc<Caller>,
    handle: tokio::runtime::Handle,
    log: &Arc<Mutex<Vec<String>>>,
) -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(std.clone());
    engine
        .set_max_operations(settings.max_operations)
        .set_max_string_size(settings.max_string_bytes)
        .set_max_array_size(settings.max_array_len)
        .set_max_map_size(settings.max_map_len)
        .set_max_call_levels(settings.max_call_depth)
        .set_max_expr_depths(settings.max_expr_depth, settings.max_expr_depth);
    // `eval` would compile text at run time: nothing it could reach is unsafe, but a
    // script's source should be what was sent and checked for length.
    engine.disable_symbol("eval");

    let progress = Arc::clone(caller);
    engine.on_progress(move |count| {
        if count % CHECK_EVERY != 0 {
            return None;
        }
        progress.budget.stopped().map(|stop| stop_token(&stop))
    });
    let printed = Arc::clone(log);
    engine.on_print(move |text| keep(&printed, text));
    let debugged = Arc::clone(log);
    engine.on_debug(move |text, _, _| keep(&debugged, text));

    let one = Arc::clone(caller);
    let one_handle = handle.clone();
    let call_settings = settings.clone();
    engine.register_custom_syntax_with_state_raw(
        "call",
        |symbols, look_ahead, _state| {
            Ok(match symbols.len() {
                1 => Some("(".into()),
                2 => Some("$expr$".into()),
                3 if look_ahead == "," => Some(",".into()),
                3 => Some(")".into()),
                4 if symbols[3].as_str() == "," => Some("$expr$".into()),
                5 => Some(")".into()),
                _ => None,
            })
        },
        false,
        move |context, inputs, _state| {
            let position = inputs[0].position();
            let name = context.eval_expression_tree(&inputs[0])?;
            let type_name = name.type_name();
            let Ok(name) = name.into_string() else {
                return Err(EvalAltResult::ErrorMismatchDataType(
                    "string".into(),
                    type_name.into(),
                    position,
                )
                .into());
            };
            let arguments = match inputs.get(1) {
                Some(expression) => arguments_json(
                    &context.eval_expression_tree(expression)?,
                    expression.position(),
                )?,
                None => json!({}),
            };
            within_limits(&arguments, &call_settings, position)?;
            let result = one_handle.block_on(one.call(&name, arguments));
            result_value(result, position)
        },
    );

    let all = Arc::clone(caller);
    let parallel_settings = settings.clone();
    engine.register_fn(
        "parallel",
        move |context: rhai::NativeCallContext<'_>,
              calls: rhai::Array|
              -> Result<rhai::Array, Box<EvalAltResult>> {
            let position = context.call_position();
            let calls = calls
                .iter()
                .enumerate()
                .map(|(index, entry)| parallel_entry(index, entry, position))
                .collect::<Result<Vec<_>, _>>()?;
            for (_, arguments) in &calls {
                within_limits(arguments, &parallel_settings, position)?;
            }
            let names: Vec<String> = calls.iter().map(|(name, _)| name.clone()).collect();
            let answers = handle
                .block_on(all.call_all(calls))
                .map_err(|stop| call_error(stop, position))?;
            let mut values = rhai::Array::with_capacity(answers.len());
            for (index, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(result) => values.push(json_dynamic(&result, position)?),
                    Err(error) => {
                        let mut thrown = error.to_json();
                        thrown["index"] = json!(index);
                        thrown["message"] =
                            json!(format!("parallel[{index}] ({}): {error}", names[index]));
                        return Err(thrown_error(&error, thrown, position));
                    }
                }
            }
            Ok(values)
        },
    );
    engine.register_fn(
        "text",
        |result: rhai::Map| -> Result<String, Box<EvalAltResult>> {
            let value = to_json(&Dynamic::from_map(result)).map_err(|error| {
                Box::new(EvalAltResult::ErrorRuntime(
                    error.to_string().into(),
                    Position::NONE,
                ))
            })?;
            Ok(text_of(&value))
        },
    );
    engine
}

/// Keeps one line of output, within the log's bounds.
fn keep(log: &Mutex<Vec<String>>, text: &str) {
    let mut log = log.lock();
    if log.len() < MAX_LOG_LINES {
        let mut end = text.len().min(MAX_LOG_LINE_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        log.push(text[..end].to_owned());
    }
}

/// `[name, args]` or `#{name, args}` (also `arguments`) as a call.
fn parallel_entry(
    index: usize,
    entry: &Dynamic,
    position: Position,
) -> Result<(String, Value), Box<EvalAltResult>> {
    let bad = || {
        Box::new(EvalAltResult::ErrorRuntime(
            format!("parallel[{index}]: expected [name, args] or #{{name, args}}").into(),
            position,
        ))
    };
    let (name, arguments) = if let Some(pair) = entry.read_lock::<rhai::Array>() {
        match pair.as_slice() {
            [name] => (name.clone(), None),
            [name, arguments] => (name.clone(), Some(arguments.clone())),
            _ => return Err(bad()),
        }
    } else if let Some(map) = entry.read_lock::<rhai::Map>() {
        let name = map.get("name").cloned().ok_or_else(bad)?;
        let arguments = map.get("args").or_else(|| map.get("arguments")).cloned();
        (name, arguments)
    } else {
        return Err(bad());
    };
    let name = name.into_string().map_err(|_| bad())?;
    let arguments = match arguments {
        None => json!({}),
        Some(arguments) => arguments_json(&arguments, position)?,
    };
    Ok((name, arguments))
}

/// A script value given as a tool's arguments: a map (or `()` for none).
fn arguments_json(value: &Dynamic, position: Position) -> Result<Value, Box<EvalAltResult>> {
    if value.is_unit() {
        return Ok(json!({}));
    }
    if !value.is_map() {
        return Err(EvalAltResult::ErrorMismatchDataType(
            "map of arguments".into(),
            value.type_name().into(),
            position,
        )
        .into());
    }
    to_json(value)
        .map_err(|error| EvalAltResult::ErrorRuntime(error.to_string().into(), position).into())
}

fn json_dynamic(value: &Value, position: Position) -> Result<Dynamic, Box<EvalAltResult>> {
    to_dynamic(value)
        .map_err(|error| EvalAltResult::ErrorRuntime(error.to_string().into(), position).into())
}

/// An inner call's answer as the script sees it: the result map, or a thrown error.
fn result_value(
    result: Result<Value, CallError>,
    position: Position,
) -> Result<Dynamic, Box<EvalAltResult>> {
    match result {
        Ok(value) => json_dynamic(&value, position),
        Err(error) => Err(call_error(error, position)),
    }
}

fn call_error(error: CallError, position: Position) -> Box<EvalAltResult> {
    let thrown = error.to_json();
    thrown_error(&error, thrown, position)
}

/// A limit or cancellation ends the script (not catchable); any other call failure is
/// thrown as a map the script may catch.
fn thrown_error(error: &CallError, thrown: Value, position: Position) -> Box<EvalAltResult> {
    if error.ends_run() {
        return Box::new(EvalAltResult::ErrorTerminated(stop_token(error), position));
    }
    let value = to_dynamic(&thrown).unwrap_or_else(|_| Dynamic::from(error.to_string()));
    Box::new(EvalAltResult::ErrorRuntime(value, position))
}

/// What `on_progress` or a call's limit ends a script with: its message, and the limit.
fn stop_token(stop: &CallError) -> Dynamic {
    let mut token = rhai::Map::new();
    token.insert("message".into(), Dynamic::from(stop.to_string()));
    if let Some(limit) = stop.limit() {
        token.insert("limit".into(), Dynamic::from(limit.to_owned()));
    }
    Dynamic::from_map(token)
}

/// A string field of a map value.
fn field(value: &Dynamic, key: &str) -> Option<String> {
    let map = value.read_lock::<rhai::Map>()?;
    map.get(key)?.clone().into_string().ok()
}

/// The script's error as a failure: the innermost error (a function's body is part of the
/// same source, so its position is a line of the script), classified.
fn failure(error: EvalAltResult, settings: &ScriptSettings) -> Failure {
    let mut error = error;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = error {
        error = *inner;
    }
    let position = error.position();
    match error {
        EvalAltResult::ErrorTooManyOperations(_) => Failure::limit(
            format!(
                "operation limit reached: at most {} operations (scripts.max_operations)",
                settings.max_operations
            ),
            "max_operations",
            position,
        ),
        EvalAltResult::ErrorStackOverflow(_) => Failure::limit(
            format!(
                "call depth limit reached: functions nested at most {} deep (scripts.max_call_depth)",
                settings.max_call_depth
            ),
            "max_call_depth",
            position,
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let (limit, max) = match what.as_str() {
                w if w.contains("string") => ("max_string_bytes", settings.max_string_bytes),
                w if w.contains("array") => ("max_array_len", settings.max_array_len),
                _ => ("max_map_len", settings.max_map_len),
            };
            Failure::limit(
                format!("size limit reached: {what} over {max} (scripts.{limit})"),
                limit,
                position,
            )
        }
        EvalAltResult::ErrorTerminated(token, _) => {
            let message = field(&token, "message").unwrap_or_else(|| "script ended".into());
            match field(&token, "limit") {
                Some(limit) => Failure::limit(message, limit_key(&limit), position),
                None => Failure::new(FailureKind::Cancelled, message, position),
            }
        }
        // A failed inner call is thrown as a map naming its tool; anything else thrown
        // is the script's own (its `message` field, when it has one).
        EvalAltResult::ErrorRuntime(value, _) => match field(&value, "message") {
            Some(message) if field(&value, "tool").is_some() => Failure {
                detail: to_json(&value).ok().map(Box::new),
                ..Failure::new(FailureKind::Call, message, position)
            },
            Some(message) => Failure::new(FailureKind::Runtime, message, position),
            None => Failure::new(FailureKind::Runtime, value.to_string(), position),
        },
        mut other => {
            other.clear_position();
            Failure::new(FailureKind::Runtime, other.to_string(), position)
        }
    }
}

/// The `'static` name of a limit carried through a script value.
fn limit_key(limit: &str) -> &'static str {
    ["max_calls", "timeout_ms", "max_result_bytes"]
        .into_iter()
        .find(|known| *known == limit)
        .unwrap_or("limit")
}
