"""Call a server-everything tool that makes the server talk back to the client, and
record what the client's callbacks saw: {"result": {...}, "callbacks": [...], ...}.

FEATURE is one of:
  progress     trigger-long-running-operation, with a progress callback
  sampling     trigger-sampling-request, answered with the text "sampled by interop"
  elicitation  trigger-elicitation-request, accepted with fixed content
  roots        get-roots-list, with one root: file:///interop-root

Usage: server_request.py MODE FEATURE TARGET...
(The tools are looked up as `everything__<tool>`.)
"""

import anyio
import mcp.types as types

from _client import connect_kwargs, dump, run

ROOT_URI = "file:///interop-root"
callbacks = []


async def on_progress(progress, total, message):
    callbacks.append({"progress": progress, "total": total})


async def on_sampling(context, params):
    callbacks.append({"sampling": dump(params.messages)})
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by interop"),
        model="interop-model",
    )


async def on_elicitation(context, params):
    callbacks.append({"elicitation": params.message})
    return types.ElicitResult(
        action="accept",
        content={"name": "Interop", "color": "red", "email": "interop@example.com", "age": 30, "score": 50},
    )


async def on_roots(context):
    callbacks.append({"roots": True})
    return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="interop")])


CALLS = {
    "progress": ("trigger-long-running-operation", {"duration": 1, "steps": 2}),
    "sampling": ("trigger-sampling-request", {"prompt": "hello from interop", "maxTokens": 16}),
    "elicitation": ("trigger-elicitation-request", {}),
    "roots": ("get-roots-list", {}),
}

connect_kwargs.update(
    sampling_callback=on_sampling,
    elicitation_callback=on_elicitation,
    list_roots_callback=on_roots,
)


async def body(client, args):
    tool, arguments = CALLS[args[0]]
    options = {"progress_callback": on_progress} if args[0] == "progress" else {}
    result = await client.call_tool(f"everything__{tool}", arguments, **options)
    # A server learns roots asynchronously (roots/list_changed, then its own roots/list):
    # give it a moment within the same session, as a client would.
    attempts = 1
    while args[0] == "roots" and ROOT_URI not in str(dump(result)) and attempts < 20:
        await anyio.sleep(0.1)
        result = await client.call_tool(f"everything__{tool}", arguments, **options)
        attempts += 1
    return {"result": dump(result), "callbacks": callbacks, "attempts": attempts}


run("FEATURE", 1, body)
