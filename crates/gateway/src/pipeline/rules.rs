//! `rules`: argument-aware conditions in CEL (`[[access.rules]]`), checked before a call
//! reaches its server. Rules are tried in order; the first whose condition holds decides
//! (`deny` refuses with its message, `allow` lets the call pass without trying later
//! rules); none holding lets the call pass.
//!
//! Variables: `method`, `server`, `tool` (the exposed tool name of a `tools/call`, else
//! ""), `args` (the call's `arguments`, `{}` without), `uri` (resources, else "") and
//! `principal` (`id`, `tenant`, `roles`, `authenticated`). A rule that cannot be evaluated
//! for a call (a missing key, a type error) refuses it: write `has(args.path) && …` for
//! optional arguments. Refusals are counted in
//! `switchboard_access_refusals_total{step="rules"}`.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value as Cel};
use serde_json::Value;
use switchboard_config::{ArgumentRule, Effect};

use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::Decision;
use crate::error::Error;

struct Compiled {
    program: Program,
    rule: ArgumentRule,
}

pub struct Rules {
    rules: Vec<Compiled>,
    /// The standard environment, built once (a fresh one per call would redo the
    /// standard library's registrations every time).
    env: Arc<Env>,
    refusals: prometheus_client::metrics::counter::Counter,
}

impl Rules {
    /// Compiles the rules (each already compiled once when the config was validated).
    pub fn new(rules: &[ArgumentRule], metrics: &crate::metrics::Metrics) -> Rules {
        let env = Arc::new(Env::stdlib());
        let rules = rules
            .iter()
            .filter_map(|rule| match env.compile(&rule.when) {
                Ok(program) => Some(Compiled {
                    program,
                    rule: rule.clone(),
                }),
                Err(error) => {
                    tracing::error!(rule = %rule.path, %error, "rule does not compile");
                    None
                }
            })
            .collect();
        Rules {
            rules,
            env,
            refusals: metrics.access_refusal("rules"),
        }
    }

    /// `Err((rule path, refusal))` when a rule refuses the call.
    fn decide(&self, context: &Context<'_, '_>) -> Result<(), (&str, Error)> {
        for compiled in &self.rules {
            let path = compiled.rule.path.as_str();
            let holds = match compiled.program.execute(context) {
                Ok(Cel::Bool(holds)) => holds,
                Ok(other) => {
                    return Err((
                        path,
                        Error::denied(
                            "rules",
                            format!(
                                "{path} could not be evaluated: the condition gave {other:?}, not a bool"
                            ),
                        ),
                    ));
                }
                Err(error) => {
                    return Err((
                        path,
                        Error::denied("rules", format!("{path} could not be evaluated: {error}")),
                    ));
                }
            };
            if holds {
                return match compiled.rule.effect {
                    Effect::Allow => Ok(()),
                    Effect::Deny => {
                        Err((path, Error::denied("rules", compiled.rule.message.clone())))
                    }
                };
            }
        }
        Ok(())
    }
}

/// A JSON value as CEL sees it (numbers: int when integral, else double).
fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(object) => Cel::Map(Map {
            map: Arc::new(
                object
                    .iter()
                    .map(|(k, v)| (Key::from(k.clone()), to_cel(v)))
                    .collect::<HashMap<_, _>>(),
            ),
        }),
    }
}

fn string(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_owned()))
}

fn context_of(env: &Arc<Env>, call: &Call<'_>) -> Context<'static, 'static> {
    let mut context = Context::with_env(env.clone());
    let principal = &call.ctx.principal;
    let route = match &call.target {
        Target::Upstream(route) => Some(route),
        _ => None,
    };
    let tool = match (call.method, route) {
        ("tools/call", Some(route)) => route.exposed.as_str(),
        _ => "",
    };
    let uri = call
        .params
        .get("uri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let principal_value = serde_json::json!({
        "id": principal.id(),
        "tenant": principal.tenant().unwrap_or_default(),
        "roles": principal.roles(),
        "authenticated": principal.is_authenticated(),
    });
    context.add_variable_from_value("method", string(call.method));
    context.add_variable_from_value("server", string(call.server().unwrap_or_default()));
    context.add_variable_from_value("tool", string(tool));
    context.add_variable_from_value("uri", string(uri));
    context.add_variable_from_value(
        "args",
        call.arguments()
            .map(to_cel)
            .unwrap_or_else(|| to_cel(&serde_json::json!({}))),
    );
    context.add_variable_from_value("principal", to_cel(&principal_value));
    context
}

impl Step for Rules {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let decision = match &call.target {
            Target::Upstream(_) => match self.decide(&context_of(&self.env, call)) {
                Ok(()) => Ok(Flow::Continue),
                Err((rule, error)) => {
                    self.refusals.inc();
                    call.notes.decide(Decision::Denied {
                        step: "rules",
                        rule: Some(rule.to_owned()),
                    });
                    Err(error)
                }
            },
            _ => Ok(Flow::Continue),
        };
        Box::pin(std::future::ready(decision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(when: &str, effect: Effect) -> ArgumentRule {
        ArgumentRule {
            when: when.into(),
            effect,
            message: "no secrets".into(),
            path: "access.rules[0]".into(),
        }
    }

    fn context(tool: &str, args: Value) -> Context<'static, 'static> {
        let mut context = Context::with_env(Arc::new(Env::stdlib()));
        context.add_variable_from_value("tool", string(tool));
        context.add_variable_from_value("args", to_cel(&args));
        context
    }

    #[test]
    fn first_matching_rule_decides() {
        let rules = Rules::new(
            &[
                rule(
                    "tool == 'fx__echo' && args.text == 'ok-secret'",
                    Effect::Allow,
                ),
                rule(
                    "tool == 'fx__echo' && args.text.startsWith('secret') || args.n > 2",
                    Effect::Deny,
                ),
            ],
            &crate::metrics::Metrics::default(),
        );
        let deny = rules.decide(&context("fx__echo", serde_json::json!({"text": "secret!"})));
        assert!(
            matches!(deny, Err(("access.rules[0]", Error::Denied { step: "rules", ref reason })) if reason == "no secrets")
        );
        assert!(
            rules
                .decide(&context("fx__echo", serde_json::json!({"text": "hi"})))
                .is_err_and(|(_, e)| e.to_string().contains("could not be evaluated"))
        );
        assert!(
            rules
                .decide(&context(
                    "fx__echo",
                    serde_json::json!({"text": "hi", "n": 2})
                ))
                .is_ok()
        );
        assert!(
            rules
                .decide(&context(
                    "fx__echo",
                    serde_json::json!({"text": "hi", "n": 3})
                ))
                .is_err()
        );
        assert!(
            rules
                .decide(&context(
                    "fx__echo",
                    serde_json::json!({"text": "ok-secret"})
                ))
                .is_ok()
        );
        assert!(
            rules
                .decide(&context("fx__add", serde_json::json!({"n": 1})))
                .is_ok()
        );
    }
}
