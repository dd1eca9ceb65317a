"""The openai backend's HTTP transport against a raw socket server that answers with hand-written bytes:
body framings (length, chunked, until close, gzip), kept-alive connections, proxies and failures."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from runner.backends.jsonhttp import JsonClient, TransportError


class RawServer:
    """Answers request k (over all connections) with ``answers[k]`` bytes; after an answer whose entry
    in ``close_after`` is true it closes that connection. Records each request's head and body."""

    def __init__(self, answers: list[bytes], close_after: set[int] | None = None) -> None:
        self.answers = answers
        self.close_after = close_after or set()
        self.requests: list[tuple[str, dict]] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next(int(v) for k, _, v in (line.partition(": ") for line in lines)
                              if k.lower() == "content-length")
                body = json.loads(await reader.readexactly(length))
                k = len(self.requests)
                self.requests.append((lines[0], body))
                writer.write(self.answers[k])
                await writer.drain()
                if k in self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def serving(server: RawServer, calls) -> list:
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = JsonClient(f"http://127.0.0.1:{port}/v1", {"Authorization": "Bearer k"}, timeout=2.0)
    try:
        return [await call(client) for call in calls]
    finally:
        await client.aclose()
        srv.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def post(n: int):
    return lambda client: client.post("/chat/completions", {"n": n})


def test_length_chunked_and_close_delimited_bodies():
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;x=1\r\n: 2\r\n1\r\n}\r\n0\r\n\r\n'
    until_close = b'HTTP/1.0 200 OK\r\n\r\n{"c": 3}'
    zipped = gzip.compress(b'{"z": 4}')
    gz = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(zipped), zipped)
    server = RawServer([ok(b'{"one": 1}'), chunked, until_close, gz], close_after={2})
    got = asyncio.run(serving(server, [post(0), post(1), post(2), post(3)]))
    assert [r.json() for r in got] == [{"one": 1}, {"a": 2}, {"c": 3}, {"z": 4}]
    assert [r.status for r in got] == [200] * 4
    assert server.requests[0] == ("POST /v1/chat/completions HTTP/1.1", {"n": 0})
    assert server.connections == 2  # kept alive, until the close-delimited body ended the first one


def test_error_statuses_come_back_as_responses():
    body = b'{"error": {"message": "slow down"}}'
    answer = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    (r,) = asyncio.run(serving(RawServer([answer]), [post(0)]))
    assert (r.status, r.headers["retry-after"], r.json()["error"]["message"]) == (429, "7", "slow down")


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_failing():
    server = RawServer([ok(b"{}", "Connection: keep-alive\r\n"), ok(b'{"again": 1}')], close_after={0})

    async def later(client):  # the server closed the connection after answering; the client learns it late
        await asyncio.sleep(0.05)
        return await client.post("/x", {})

    got = asyncio.run(serving(server, [post(0), later]))
    assert got[1].json() == {"again": 1}
    assert server.connections == 2 and len(server.requests) == 2  # sent once, on a fresh connection


def test_nothing_listening_is_a_transport_error():
    async def go():
        client = JsonClient("http://127.0.0.1:9/v1", {}, timeout=2.0)
        await client.post("/x", {})

    with pytest.raises(TransportError, match="cannot connect"):
        asyncio.run(go())


def test_a_slow_answer_times_out():
    async def go():
        async def silent(reader, writer):
            await asyncio.sleep(1)
            writer.close()

        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        client = JsonClient(f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", {}, timeout=0.1)
        try:
            await client.post("/x", {})
        finally:
            srv.close()

    with pytest.raises(TimeoutError):
        asyncio.run(go())


def test_a_plain_http_proxy_gets_the_absolute_url(monkeypatch):
    async def go(server: RawServer):
        srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}")
        client = JsonClient("http://api.example:8080/v1", {}, timeout=2.0)
        try:
            return await client.post("/chat/completions", {"q": 1})
        finally:
            await client.aclose()
            srv.close()

    server = RawServer([ok(b'{"via": "proxy"}')])
    assert asyncio.run(go(server)).json() == {"via": "proxy"}
    assert server.requests == [("POST http://api.example:8080/v1/chat/completions HTTP/1.1", {"q": 1})]
