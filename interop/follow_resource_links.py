"""Call a tool, then read every resource a `resource_link` or embedded `resource` in its
result names, as a client following links would:
{"links": [uri…], "reads": [{"uri": …, "ok": bool, "error"?: str}], ...}.

Usage: follow_resource_links.py MODE TOOL ARGUMENTS_JSON TARGET...
"""

import json

from mcp import MCPError

from _client import run


async def body(client, args):
    result = await client.call_tool(args[0], json.loads(args[1]))
    links = []
    for block in result.content:
        if block.type == "resource_link":
            links.append(str(block.uri))
        elif block.type == "resource":
            links.append(str(block.resource.uri))
    reads = []
    for uri in links:
        try:
            await client.read_resource(uri)
            reads.append({"uri": uri, "ok": True})
        except MCPError as error:
            reads.append({"uri": uri, "ok": False, "error": str(error)})
    return {"links": links, "reads": reads}


run("TOOL ARGUMENTS_JSON", 2, body)
