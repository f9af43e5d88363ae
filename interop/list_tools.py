"""Print the tool names a target lists (all pages): {"tools": [...], "protocolVersion": ...}."""

from _client import run


async def body(client, _args):
    names = []
    cursor = None
    while True:
        page = await client.list_tools(cursor=cursor)
        names.extend(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if not cursor:
            return {"tools": names}


run("", 0, body)
