//! The agent's metrics (`switchboard_agent_*`), registered at scrape time only when
//! `[agent]` is configured.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::Histogram;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ServerLabels {
    pub(crate) server: String,
}

#[derive(Debug)]
pub(crate) struct AgentMetrics {
    pub(crate) queries: Family<OutcomeLabels, Counter>,
    pub(crate) query_duration: Histogram,
    pub(crate) tool_calls_per_query: prometheus_client::metrics::histogram::Histogram,
    pub(crate) llm_latency: Histogram,
    pub(crate) llm_tokens: Family<KindLabels, Counter>,
    pub(crate) repairs: Family<KindLabels, Counter>,
    pub(crate) hot_plugs: Family<ServerLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            queries: Family::default(),
            query_duration: Histogram::default(),
            tool_calls_per_query: prometheus_client::metrics::histogram::Histogram::new([
                0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
            ]),
            llm_latency: Histogram::default(),
            llm_tokens: Family::default(),
            repairs: Family::default(),
            hot_plugs: Family::default(),
        }
    }
}

impl AgentMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "switchboard_agent_queries",
            "Agent queries by outcome",
            self.queries.clone(),
        );
        registry.register(
            "switchboard_agent_query_duration_seconds",
            "Agent query duration, model time included",
            self.query_duration.clone(),
        );
        registry.register(
            "switchboard_agent_tool_calls_per_query",
            "Tool calls one agent query made",
            self.tool_calls_per_query.clone(),
        );
        registry.register(
            "switchboard_agent_llm_duration_seconds",
            "Latency of one model request (retries included)",
            self.llm_latency.clone(),
        );
        registry.register(
            "switchboard_agent_llm_tokens",
            "Tokens the model endpoint reported, by kind (prompt, completion)",
            self.llm_tokens.clone(),
        );
        registry.register(
            "switchboard_agent_repairs",
            "Tool-call repairs by kind",
            self.repairs.clone(),
        );
        registry.register(
            "switchboard_agent_hot_plugs",
            "Dormant servers the agent started for a tool call",
            self.hot_plugs.clone(),
        );
    }
}
