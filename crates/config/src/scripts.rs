//! `[scripts]`: the bounds of orchestration scripts (`switchboard__run`) and batches
//! (`switchboard__batch`). Raw shape, validation and the validated model live together
//! here, like `registry.rs`.
//!
//! The meta-tools themselves are enabled in `[gateway] meta_tools`; without this section
//! they run with the defaults below. Read at start only.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};

/// The validated `[scripts]` section (defaults without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptSettings {
    /// Wall time of one script, inner calls included; also the deadline of a batch.
    pub timeout: Duration,
    /// Interpreter operations one script may run (roughly: one expression node, one loop
    /// iteration, one function call).
    pub max_operations: u64,
    /// Inner tool calls one script or batch may make (each `parallel` entry counts).
    pub max_calls: usize,
    /// Source text of one script.
    pub max_script_bytes: usize,
    /// Bytes of one string value, all strings in one array or map counted together.
    pub max_string_bytes: usize,
    /// Elements of one array, nested arrays counted together.
    pub max_array_len: usize,
    /// Properties of one map, nested maps counted together.
    pub max_map_len: usize,
    /// Nested calls of functions the script defines (recursion depth).
    pub max_call_depth: usize,
    /// Nesting of expressions and blocks in the source.
    pub max_expr_depth: usize,
    /// Bytes (as JSON) of one inner call's result handed to the script.
    pub max_result_bytes: usize,
    /// Inner calls of one `parallel([...])` or batch in flight at once.
    pub max_parallel: usize,
    /// Scripts running at once in the gateway (each holds one interpreter thread).
    pub max_running: usize,
}

impl ScriptSettings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
    pub const DEFAULT_MAX_OPERATIONS: u64 = 1_000_000;
    pub const DEFAULT_MAX_CALLS: usize = 100;
    pub const MAX_MAX_CALLS: usize = 10_000;
    pub const DEFAULT_MAX_SCRIPT_BYTES: usize = 16 * 1024;
    pub const MAX_MAX_SCRIPT_BYTES: usize = 1024 * 1024;
    pub const DEFAULT_MAX_STRING_BYTES: usize = 256 * 1024;
    pub const DEFAULT_MAX_ARRAY_LEN: usize = 10_000;
    pub const DEFAULT_MAX_MAP_LEN: usize = 10_000;
    pub const DEFAULT_MAX_CALL_DEPTH: usize = 16;
    pub const MAX_MAX_CALL_DEPTH: usize = 64;
    pub const DEFAULT_MAX_EXPR_DEPTH: usize = 64;
    pub const MAX_MAX_EXPR_DEPTH: usize = 256;
    pub const DEFAULT_MAX_RESULT_BYTES: usize = 256 * 1024;
    pub const DEFAULT_MAX_PARALLEL: usize = 8;
    pub const MAX_MAX_PARALLEL: usize = 64;
    pub const DEFAULT_MAX_RUNNING: usize = 4;
    pub const MAX_MAX_RUNNING: usize = 64;
    /// Largest accepted size bound (strings, results): 64 MiB.
    pub const MAX_BYTES: usize = 64 * 1024 * 1024;
    /// Largest accepted array or map length.
    pub const MAX_LEN: usize = 1_000_000;
}

impl Default for ScriptSettings {
    fn default() -> Self {
        ScriptSettings {
            timeout: Self::DEFAULT_TIMEOUT,
            max_operations: Self::DEFAULT_MAX_OPERATIONS,
            max_calls: Self::DEFAULT_MAX_CALLS,
            max_script_bytes: Self::DEFAULT_MAX_SCRIPT_BYTES,
            max_string_bytes: Self::DEFAULT_MAX_STRING_BYTES,
            max_array_len: Self::DEFAULT_MAX_ARRAY_LEN,
            max_map_len: Self::DEFAULT_MAX_MAP_LEN,
            max_call_depth: Self::DEFAULT_MAX_CALL_DEPTH,
            max_expr_depth: Self::DEFAULT_MAX_EXPR_DEPTH,
            max_result_bytes: Self::DEFAULT_MAX_RESULT_BYTES,
            max_parallel: Self::DEFAULT_MAX_PARALLEL,
            max_running: Self::DEFAULT_MAX_RUNNING,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScripts {
    timeout_ms: Option<u64>,
    max_operations: Option<u64>,
    max_calls: Option<u64>,
    max_script_bytes: Option<u64>,
    max_string_bytes: Option<u64>,
    max_array_len: Option<u64>,
    max_map_len: Option<u64>,
    max_call_depth: Option<u64>,
    max_expr_depth: Option<u64>,
    max_result_bytes: Option<u64>,
    max_parallel: Option<u64>,
    max_running: Option<u64>,
}

/// `value` (or `default` when not written), which must lie in `1..=max`.
fn bounded(
    value: Option<u64>,
    default: usize,
    max: usize,
    path: &KeyPath,
    key: &str,
) -> Result<usize, Problem> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
        Some(_) => Err(Problem::new(
            path.key(key),
            format!("must be between 1 and {max}"),
        )),
    }
}

pub(crate) fn validate(raw: RawScripts, path: &KeyPath) -> Result<ScriptSettings, Problem> {
    let defaults = ScriptSettings::default();
    let timeout = match raw.timeout_ms {
        None => defaults.timeout,
        Some(ms) if ms >= 1 && Duration::from_millis(ms) <= ScriptSettings::MAX_TIMEOUT => {
            Duration::from_millis(ms)
        }
        Some(_) => {
            return Err(Problem::new(
                path.key("timeout_ms"),
                format!(
                    "must be between 1 and {}",
                    ScriptSettings::MAX_TIMEOUT.as_millis()
                ),
            ));
        }
    };
    let max_operations = match raw.max_operations {
        None => defaults.max_operations,
        Some(0) => {
            return Err(Problem::new(
                path.key("max_operations"),
                "must be at least 1 (a script without an operation bound could loop forever)",
            ));
        }
        Some(n) => n,
    };
    Ok(ScriptSettings {
        timeout,
        max_operations,
        max_calls: bounded(
            raw.max_calls,
            defaults.max_calls,
            ScriptSettings::MAX_MAX_CALLS,
            path,
            "max_calls",
        )?,
        max_script_bytes: bounded(
            raw.max_script_bytes,
            defaults.max_script_bytes,
            ScriptSettings::MAX_MAX_SCRIPT_BYTES,
            path,
            "max_script_bytes",
        )?,
        max_string_bytes: bounded(
            raw.max_string_bytes,
            defaults.max_string_bytes,
            ScriptSettings::MAX_BYTES,
            path,
            "max_string_bytes",
        )?,
        max_array_len: bounded(
            raw.max_array_len,
            defaults.max_array_len,
            ScriptSettings::MAX_LEN,
            path,
            "max_array_len",
        )?,
        max_map_len: bounded(
            raw.max_map_len,
            defaults.max_map_len,
            ScriptSettings::MAX_LEN,
            path,
            "max_map_len",
        )?,
        max_call_depth: bounded(
            raw.max_call_depth,
            defaults.max_call_depth,
            ScriptSettings::MAX_MAX_CALL_DEPTH,
            path,
            "max_call_depth",
        )?,
        max_expr_depth: bounded(
            raw.max_expr_depth,
            defaults.max_expr_depth,
            ScriptSettings::MAX_MAX_EXPR_DEPTH,
            path,
            "max_expr_depth",
        )?,
        max_result_bytes: bounded(
            raw.max_result_bytes,
            defaults.max_result_bytes,
            ScriptSettings::MAX_BYTES,
            path,
            "max_result_bytes",
        )?,
        max_parallel: bounded(
            raw.max_parallel,
            defaults.max_parallel,
            ScriptSettings::MAX_MAX_PARALLEL,
            path,
            "max_parallel",
        )?,
        max_running: bounded(
            raw.max_running,
            defaults.max_running,
            ScriptSettings::MAX_MAX_RUNNING,
            path,
            "max_running",
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawScripts) -> Result<ScriptSettings, Problem> {
        validate(raw, &KeyPath::root().key("scripts"))
    }

    #[test]
    fn defaults_and_written_values() {
        assert_eq!(
            check(RawScripts::default()).unwrap(),
            ScriptSettings::default()
        );
        let set = check(RawScripts {
            timeout_ms: Some(1500),
            max_calls: Some(3),
            max_running: Some(1),
            ..RawScripts::default()
        })
        .unwrap();
        assert_eq!(set.timeout, Duration::from_millis(1500));
        assert_eq!((set.max_calls, set.max_running), (3, 1));
    }

    #[test]
    fn bounds_name_the_key() {
        let cases = [
            (
                RawScripts {
                    timeout_ms: Some(0),
                    ..RawScripts::default()
                },
                "scripts.timeout_ms",
            ),
            (
                RawScripts {
                    timeout_ms: Some(3_600_000),
                    ..RawScripts::default()
                },
                "scripts.timeout_ms",
            ),
            (
                RawScripts {
                    max_operations: Some(0),
                    ..RawScripts::default()
                },
                "scripts.max_operations",
            ),
            (
                RawScripts {
                    max_calls: Some(0),
                    ..RawScripts::default()
                },
                "scripts.max_calls",
            ),
            (
                RawScripts {
                    max_parallel: Some(1000),
                    ..RawScripts::default()
                },
                "scripts.max_parallel",
            ),
            (
                RawScripts {
                    max_script_bytes: Some(u64::MAX),
                    ..RawScripts::default()
                },
                "scripts.max_script_bytes",
            ),
        ];
        for (raw, key) in cases {
            let problem = format!("{:?}", check(raw).unwrap_err());
            let last = key.rsplit('.').next().unwrap();
            assert!(problem.contains(last), "{key}: {problem}");
        }
    }
}
