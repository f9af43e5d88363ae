"""Shared plumbing for the interop client scripts: connect the official Python `mcp`
client to a target and print one JSON document.

A target is either one Streamable HTTP URL (`http://…/mcp`) or a command line to spawn
and speak stdio to. The era mode is `legacy`, `auto` or a modern version such as
`2026-07-28`. Response caching is off so every call reaches the gateway.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

TIMEOUT_SECONDS = 60

# Extra `Client(...)` keyword arguments (callbacks) a script sets before `run`.
connect_kwargs: dict[str, Any] = {}


def connect(mode: str, target: list[str]) -> Client:
    if len(target) == 1 and target[0].startswith(("http://", "https://")):
        server: Any = target[0]
    else:
        server = StdioServerParameters(command=target[0], args=target[1:])
    return Client(server, mode=mode, cache=None, read_timeout_seconds=TIMEOUT_SECONDS, **connect_kwargs)


def dump(value: Any) -> Any:
    """pydantic models → JSON-ready dicts with wire (camelCase) names."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [dump(item) for item in value]
    return value


def run(usage: str, argc: int, body: Callable[[Client, list[str]], Awaitable[dict[str, Any]]]) -> None:
    """Parses `MODE ARG… TARGET…` (`argc` fixed args), runs `body`, prints its JSON."""
    if len(sys.argv) < 3 + argc:
        sys.exit(f"usage: {sys.argv[0]} MODE {usage} TARGET...")
    mode = sys.argv[1]
    args = sys.argv[2 : 2 + argc]
    target = sys.argv[2 + argc :]

    async def main() -> None:
        with anyio.fail_after(TIMEOUT_SECONDS):
            async with connect(mode, target) as client:
                result = await body(client, args)
                result["protocolVersion"] = client.protocol_version
                print(json.dumps(result, sort_keys=True))

    try:
        anyio.run(main)
    except BaseException as error:  # noqa: BLE001 - report every failure the same way
        if isinstance(error, SystemExit):
            raise
        # anyio wraps failures in nested exception groups: report the leaves only.
        for leaf in leaves(error):
            print(f"{type(leaf).__module__}.{type(leaf).__name__}: {leaf}", file=sys.stderr)
        sys.exit(1)


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]
