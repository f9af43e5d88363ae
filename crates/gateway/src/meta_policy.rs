//! What an agent may make the gateway run through `switchboard__load_server`: servers that
//! are already defined (config file, admin API) always; a new definition only when it is a
//! stdio server whose program is listed, exactly, in `[gateway] allow_commands`.

use switchboard_config::{GatewaySettings, ServerSpec, TransportSpec};

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
