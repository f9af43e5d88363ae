"""One session over the 2024-11-05 HTTP+SSE transport (the SDK's `sse_client`) against the
gateway's `/sse`, exercising every upstream prefix given: list tools, call `PREFIX__echo`,
`PREFIX__progress` with a progress callback, and a `PREFIX__sleep` the client cancels
(reading the upstream's cancellation count through `PREFIX__stats` before and after).
After the session's stream is closed, it POSTs once more to the session's endpoint to
report what the gateway answers (404 once the session ended).

Usage: sse_session.py SSE_URL PREFIX...
Prints: {"tools": [...], "servers": {PREFIX: {...}}, "afterClose": STATUS, "protocolVersion": ...}
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client

from _client import TIMEOUT_SECONDS, dump, leaves


async def cancelled(session: ClientSession, prefix: str) -> int:
    stats = dump(await session.call_tool(f"{prefix}__stats", {}))
    return int(stats.get("structuredContent", {}).get("cancelled", 0))


async def exercise(session: ClientSession, prefix: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    report["echo"] = dump(await session.call_tool(f"{prefix}__echo", {"text": "over sse"}))

    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    report["progressResult"] = dump(
        await session.call_tool(
            f"{prefix}__progress", {"steps": 3, "interval_ms": 20}, progress_callback=on_progress
        )
    )
    report["progress"] = progress

    # Cancel: the SDK sends notifications/cancelled when the caller abandons a request.
    before = await cancelled(session, prefix)
    with anyio.move_on_after(1.0):
        await session.call_tool(f"{prefix}__sleep", {"ms": 20000})
    after = before
    for _ in range(100):
        after = await cancelled(session, prefix)
        if after > before:
            break
        await anyio.sleep(0.1)
    report["cancelledBefore"] = before
    report["cancelledAfter"] = after
    # The session still works after a cancellation.
    await session.send_ping()
    return report


async def main(url: str, prefixes: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"servers": {}}
    session_ids: list[str] = []
    with anyio.fail_after(TIMEOUT_SECONDS):
        async with sse_client(url, on_session_created=session_ids.append) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                result["protocolVersion"] = init.protocol_version
                tools = await session.list_tools()
                result["tools"] = sorted(tool.name for tool in tools.tools)
                for prefix in prefixes:
                    result["servers"][prefix] = await exercise(session, prefix)
        # The stream is closed: the session must be gone.
        base = url.rsplit("/sse", 1)[0]
        status = None
        async with httpx2.AsyncClient() as client:
            for _ in range(100):
                response = await client.post(
                    f"{base}/messages?sessionId={session_ids[0]}",
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                )
                status = response.status_code
                if status == 404:
                    break
                await anyio.sleep(0.05)
        result["afterClose"] = status
    return result


def run() -> None:
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} SSE_URL PREFIX...")
    try:
        document = anyio.run(main, sys.argv[1], sys.argv[2:])
    except BaseException as error:  # noqa: BLE001 - report every failure the same way
        if isinstance(error, SystemExit):
            raise
        for leaf in leaves(error):
            print(f"{type(leaf).__module__}.{type(leaf).__name__}: {leaf}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(document, sort_keys=True))


run()
