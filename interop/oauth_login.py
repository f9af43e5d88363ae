"""Log in to an MCP server with OAuth the way an MCP client does, then list and call.

Usage: oauth_login.py MODE TOOL ARGUMENTS_JSON URL

The official Python SDK's `OAuthClientProvider` does everything from the server's first
401: it reads the `WWW-Authenticate` challenge, fetches the protected resource metadata
(RFC 9728) it names, takes the authorization server from it, fetches that server's
metadata, registers itself (RFC 7591), runs the authorization-code grant with PKCE and
the resource indicator (RFC 8707), and retries with the access token. The only part
scripted here is the person at the browser: the redirect handler follows the
authorization URL with a plain HTTP client (keeping cookies) until the authorization
server redirects to our redirect URI, and hands the code back to the SDK.

Prints one JSON document: every HTTP request the MCP client sent (`requests`, in order,
as `METHOD URL` without the query), the tools it was shown, the call's result, the
access token's JOSE header and claims (decoded, not verified: the gateway verified
them), and the negotiated protocol version.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from _client import TIMEOUT_SECONDS, dump, leaves

# Never contacted: the redirect to it is read from the authorization server's answer.
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
MAX_REDIRECTS = 10


class MemoryStorage:
    """The SDK's `TokenStorage`, in memory: every run logs in afresh."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """Plays the user agent: follows the authorization redirects, keeps the code."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None
        self.visited: list[str] = []

    async def open(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=TIMEOUT_SECONDS) as http:
            url = authorization_url
            for _ in range(MAX_REDIRECTS):
                self.visited.append(url.split("?")[0])
                response = await http.get(url)
                location = response.headers.get("location")
                if not response.is_redirect or location is None:
                    raise RuntimeError(
                        f"the authorization server answered {response.status_code} at {url}: {response.text[:500]}"
                    )
                url = urljoin(url, location)
                if url.startswith(REDIRECT_URI):
                    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
                    if "error" in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    self.result = AuthorizationCodeResult(
                        code=query["code"], state=query.get("state"), iss=query.get("iss")
                    )
                    return
            raise RuntimeError(f"more than {MAX_REDIRECTS} redirects from {authorization_url}")

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("the authorization server never redirected back")
        return self.result


def jose_part(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def main(mode: str, tool: str, arguments: dict[str, Any], url: str) -> dict[str, Any]:
    storage = MemoryStorage()
    browser = Browser()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="switchboard interop",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    requests: list[str] = []

    async def record(request: httpx2.Request) -> None:
        requests.append(f"{request.method} {str(request.url).split('?')[0]}")

    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(TIMEOUT_SECONDS),
        event_hooks={"request": [record]},
    )
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, read_timeout_seconds=TIMEOUT_SECONDS) as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, arguments)
            protocol_version = client.protocol_version
    if storage.tokens is None:
        raise RuntimeError("the call succeeded without a token")
    token = storage.tokens.access_token
    return {
        "requests": requests,
        "browser": browser.visited,
        "registered": storage.client_info is not None and storage.client_info.client_id is not None,
        "tools": [t.name for t in tools.tools],
        "result": dump(result),
        "token": {"header": jose_part(token, 0), "claims": jose_part(token, 1)},
        "protocolVersion": protocol_version,
    }


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(f"usage: {sys.argv[0]} MODE TOOL ARGUMENTS_JSON URL")
    mode, tool, arguments, url = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]

    async def run() -> None:
        with anyio.fail_after(TIMEOUT_SECONDS):
            print(json.dumps(await main(mode, tool, arguments, url), sort_keys=True))

    try:
        anyio.run(run)
    except BaseException as error:  # noqa: BLE001 - report every failure the same way
        if isinstance(error, SystemExit):
            raise
        for leaf in leaves(error):
            print(f"{type(leaf).__module__}.{type(leaf).__name__}: {leaf}", file=sys.stderr)
        sys.exit(1)
