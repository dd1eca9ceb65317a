"""The openai backend's HTTP transport: JSON POSTs through one ``aiohttp`` session per endpoint.

The ``openai`` client stack costs about 2.2 ms of CPU per request on a local endpoint, which caps one
event loop at a few hundred requests a second; aiohttp's keep-alive session costs a fraction of that, so a
window of ``concurrency`` requests stays full at the endpoint's speed. aiohttp does the protocol work:
kept-alive connections (TCP_NODELAY set), TLS, chunked and compressed bodies, and the proxies named in
the environment (``trust_env``: ``https_proxy``, ``http_proxy``, ``no_proxy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The request got no complete response: the connection failed, was refused or closed early."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class JsonClient:
    """POSTs JSON to one endpoint root (``base_url``), ``headers`` on every request, each request bounded
    by ``timeout`` seconds (connecting, sending and reading together). Use it from one event loop."""

    def __init__(self, base_url: str, headers: dict[str, str], *, timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"expected an http(s):// endpoint, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json", "Content-Type": "application/json",
                         "User-Agent": "recipe-zoo", **headers}
        self._session: Any = None  # made on first use, inside the loop that uses it

    def _open(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, trust_env=True,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),  # the backend's window limits
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def post(self, path: str, body: Any) -> Response:
        """The response to POSTing ``body`` as JSON to ``base_url + path``; TimeoutError after
        ``timeout`` seconds, TransportError when no complete response came."""
        import aiohttp

        data = json.dumps(body).encode("utf-8")
        for attempt in range(2):
            try:
                async with self._open().post(self.base_url + path, data=data) as r:
                    payload = await r.read()
                    return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, payload)
            except TimeoutError:
                raise TimeoutError(f"no answer within {self.timeout} s") from None
            except aiohttp.ServerDisconnectedError as e:
                # a kept-alive connection the server had closed: once more, on a fresh connection
                if attempt == 0:
                    continue
                raise TransportError(f"{type(e).__name__}: {e}") from e
            except aiohttp.ClientConnectorError as e:
                raise TransportError(f"cannot connect to {self.base_url}: {e}") from e
            except (aiohttp.ClientError, OSError, ValueError) as e:
                raise TransportError(f"{type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
