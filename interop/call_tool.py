"""Call one tool and print its CallToolResult: {"result": {...}, "protocolVersion": ...}.

Usage: call_tool.py MODE TOOL ARGUMENTS_JSON TARGET...
"""

import json

from _client import dump, run


async def body(client, args):
    name, arguments = args[0], json.loads(args[1])
    return {"result": dump(await client.call_tool(name, arguments))}


run("TOOL ARGUMENTS_JSON", 2, body)
