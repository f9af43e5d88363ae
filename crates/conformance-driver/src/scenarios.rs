//! What the driver does for each client scenario. The suite's server is switchboard's
//! only upstream, so every call here reaches it through the gateway: the suite judges
//! the gateway's upstream side (handshake, headers, MRTR, resumption, schemas kept
//! intact) and, through the gateway's bridging, the driver's answers.

use anyhow::Context;
use serde_json::{Value, json};

use crate::answers::arguments_for;
use crate::client::Client;

pub(crate) async fn run(client: &Client, scenario: &str, context: &Value) -> anyhow::Result<()> {
    match scenario {
        // Listing is the whole exchange: handshake, metadata, and a schema that must not
        // make the client fetch anything.
        "initialize" | "request-metadata" | "json-schema-ref-no-deref" => {
            list_tools(client).await.map(drop)
        }
        "sep-2322-client-request-state" => request_state(client).await,
        "http-standard-headers" => {
            call_every_tool(client).await?;
            read_every_resource(client).await?;
            get_every_prompt(client).await
        }
        "http-custom-headers" => context_calls(client, context).await,
        "json-schema-2020-12-preservation" => schema_echo(client).await,
        // tools_call, elicitation defaults, sse-retry, invalid tool headers, auth/*:
        // list the tools and call each one.
        _ => call_every_tool(client).await,
    }
}

async fn list_tools(client: &Client) -> anyhow::Result<Vec<Value>> {
    let result = client
        .request("tools/list", json!({}))
        .await?
        .into_result("tools/list")?;
    let tools = result["tools"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    eprintln!("driver: tools/list -> {names:?}");
    Ok(tools)
}

async fn call(client: &Client, name: &str, arguments: Value) -> anyhow::Result<Value> {
    let outcome = client
        .request(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await?;
    for notification in &outcome.notifications {
        eprintln!("driver: {name}: notification {notification}");
    }
    let result = outcome.into_result(&format!("tools/call {name}"))?;
    eprintln!("driver: tools/call {name} -> {result}");
    Ok(result)
}

async fn call_every_tool(client: &Client) -> anyhow::Result<()> {
    for tool in list_tools(client).await? {
        let name = tool["name"].as_str().context("a tool without a name")?;
        call(client, name, arguments_for(&tool["inputSchema"])).await?;
    }
    Ok(())
}

async fn read_every_resource(client: &Client) -> anyhow::Result<()> {
    let listed = client
        .request("resources/list", json!({}))
        .await?
        .into_result("resources/list")?;
    for resource in listed["resources"].as_array().into_iter().flatten() {
        let uri = resource["uri"]
            .as_str()
            .context("a resource without a uri")?;
        client
            .request("resources/read", json!({ "uri": uri }))
            .await?
            .into_result(&format!("resources/read {uri}"))?;
        eprintln!("driver: read {uri}");
    }
    Ok(())
}

async fn get_every_prompt(client: &Client) -> anyhow::Result<()> {
    let listed = client
        .request("prompts/list", json!({}))
        .await?
        .into_result("prompts/list")?;
    for prompt in listed["prompts"].as_array().into_iter().flatten() {
        let name = prompt["name"].as_str().context("a prompt without a name")?;
        let mut arguments = serde_json::Map::new();
        for argument in prompt["arguments"].as_array().into_iter().flatten() {
            if argument["required"].as_bool() == Some(true)
                && let Some(argument) = argument["name"].as_str()
            {
                arguments.insert(argument.to_owned(), json!("conformance"));
            }
        }
        client
            .request(
                "prompts/get",
                json!({ "name": name, "arguments": arguments }),
            )
            .await?
            .into_result(&format!("prompts/get {name}"))?;
        eprintln!("driver: got prompt {name}");
    }
    Ok(())
}

/// The calls the scenario asks for in its context (`toolCalls: [{name, arguments}]`).
async fn context_calls(client: &Client, context: &Value) -> anyhow::Result<()> {
    list_tools(client).await?;
    let calls = context["toolCalls"]
        .as_array()
        .context("the scenario context names no toolCalls")?;
    for planned in calls {
        let name = planned["name"]
            .as_str()
            .context("a tool call without a name")?;
        call(client, name, planned["arguments"].clone()).await?;
    }
    Ok(())
}

/// MRTR from the client's side: a round with state, an unrelated call, a round without
/// state, and a result without `resultType` (complete by default).
async fn request_state(client: &Client) -> anyhow::Result<()> {
    list_tools(client).await?;
    for name in [
        "test_mrtr_echo_state",
        "test_mrtr_unrelated",
        "test_mrtr_no_state",
        "test_mrtr_no_result_type",
    ] {
        call(client, name, json!({})).await?;
    }
    Ok(())
}

/// Sends the focal tool's input schema back through the echo tool, verbatim.
async fn schema_echo(client: &Client) -> anyhow::Result<()> {
    let tools = list_tools(client).await?;
    let echo = "json_schema_echo";
    let focal = tools
        .iter()
        .find(|t| t["name"].as_str() != Some(echo))
        .context("no tool besides the echo tool")?;
    call(client, echo, json!({ "schema": focal["inputSchema"] })).await?;
    Ok(())
}
