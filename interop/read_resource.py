"""Read the listed resource whose URI ends with SUFFIX (all pages are searched):
{"uri": ..., "result": {...}, "protocolVersion": ...}.

Usage: read_resource.py MODE SUFFIX TARGET...
"""

from _client import dump, run


async def body(client, args):
    suffix = args[0]
    cursor = None
    while True:
        page = await client.list_resources(cursor=cursor)
        for resource in page.resources:
            uri = str(resource.uri)
            if uri.endswith(suffix):
                return {"uri": uri, "result": dump(await client.read_resource(uri))}
        cursor = page.next_cursor
        if not cursor:
            raise LookupError(f"no listed resource URI ends with {suffix!r}")


run("SUFFIX", 1, body)
