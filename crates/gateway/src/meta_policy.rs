//! What an agent may make the gateway run through `switchboard__load_server`: servers that
//! are already defined (config file, admin API) always; a new definition only when it is a
//! stdio server whose program is listed, exactly, in `[gateway] allow_commands`.

use std::borrow::Cow;

use serde_json::Value;
use switchboard_config::{GatewaySettings, ServerSpec, TransportSpec};

/// Meta-tools only a caller with `[access] admin_role` sees and may call.
pub(crate) const ADMIN_ONLY: &[&str] = &["set_secret"];

/// A request's arguments as an audit record may keep them (digest, or raw with
/// `record_arguments`): a secret handed to `set_secret` is replaced by a redaction, so not
/// even its digest (which could be searched for a guessable value) is kept.
pub(crate) fn recordable<'a>(params: &Value, arguments: &'a Value) -> Cow<'a, Value> {
    let is_set_secret =
        params.get("name").and_then(Value::as_str) == Some("switchboard__set_secret");
    match arguments.get("value") {
        Some(_) if is_set_secret => {
            let mut kept = arguments.clone();
            kept["value"] = Value::from(switchboard_config::REDACTED);
            Cow::Owned(kept)
        }
        _ => Cow::Borrowed(arguments),
    }
}

/// Whether `load_server` may register `spec` from an agent's definition; the refusal
/// says why and what would allow it.
pub(crate) fn check_definition(
    settings: &GatewaySettings,
    spec: &ServerSpec,
) -> Result<(), String> {
    match &spec.transport {
        TransportSpec::Stdio { command, .. } => {
            if settings
                .allow_commands
                .iter()
                .any(|allowed| allowed == command)
            {
                Ok(())
            } else {
                Err(format!(
                    "command `{command}` is not allowed: `load_server` starts configured servers; \
                     list a program under [gateway] allow_commands to let agents run it"
                ))
            }
        }
        _ => Err(
            "`load_server` starts configured servers; agents cannot register HTTP servers \
             (use the config file or the admin API)"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(definition: serde_json::Value) -> ServerSpec {
        crate::roster::parse_definition("x", &definition).unwrap()
    }

    #[test]
    fn only_listed_programs_run() {
        let mut settings = GatewaySettings::default();
        let stdio = spec(json!({ "command": "/usr/bin/fixture", "args": ["stdio"] }));
        assert!(check_definition(&settings, &stdio).is_err());
        settings.allow_commands = vec!["fixture".into()];
        assert!(
            check_definition(&settings, &stdio).is_err(),
            "names match exactly"
        );
        settings.allow_commands = vec!["/usr/bin/fixture".into()];
        assert!(check_definition(&settings, &stdio).is_ok());
        let http = spec(json!({ "type": "http", "url": "http://127.0.0.1:1/mcp" }));
        assert!(check_definition(&settings, &http).is_err());
    }
}
