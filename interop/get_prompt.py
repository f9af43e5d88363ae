"""Get one prompt: {"result": {...}, "protocolVersion": ...}.

Usage: get_prompt.py MODE PROMPT ARGUMENTS_JSON TARGET...
"""

import json

from _client import dump, run


async def body(client, args):
    return {"result": dump(await client.get_prompt(args[0], json.loads(args[1])))}


run("PROMPT ARGUMENTS_JSON", 2, body)
