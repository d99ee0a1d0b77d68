"""transport.Http11Transport against a scripted HTTP/1.1 server on 127.0.0.1: keep-alive, chunked
streams as they arrive, a server closing an idle connection, timeouts and broken answers as httpx2's
exceptions.  (Every test on the local control plane runs the operator over it too, with TLS and a
client certificate.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from doris_operator.transport import TLS_READ, Http11Transport
from doris_operator.webhook.certs import issue

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[bool]]
"""Answers one request (its head and body); False closes the connection."""


async def _request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def served(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """The server's base URL, every request it got, and a connection number per request."""
    seen: list[bytes] = []
    conns: list[int] = []
    counter = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        counter += 1
        number = counter
        try:
            while (request := await _request(reader)) is not None:
                seen.append(request)
                conns.append(number)
                if not await handler(reader, writer, request):
                    break
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", seen, conns
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def answer(writer: asyncio.StreamWriter, data: bytes) -> bool:
    writer.write(data)
    await writer.drain()
    return True


async def test_keep_alive_one_connection_for_requests_one_after_another() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        target = request.split(b" ", 2)[1]
        return await answer(writer, ok(b'{"target": "%s"}' % target))

    transport = Http11Transport()
    async with (
        served(handler) as (url, seen, conns),
        httpx2.AsyncClient(
            transport=transport, base_url=url, headers={"Authorization": "Bearer t"}
        ) as client,
    ):
        first = await client.get("/a?x=1")
        second = await client.post("/b", json={"x": "xx"})
        assert first.json() == {"target": "/a?x=1"} and second.json() == {"target": "/b"}
        assert conns == [1, 1] and transport.opened == 1
        assert seen[0].startswith(b"GET /a?x=1 HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:" in seen[0] and b"\r\nAuthorization: Bearer t\r\n" in seen[0]
        assert seen[1].startswith(b"POST /b HTTP/1.1\r\n") and seen[1].endswith(b'{"x":"xx"}')
        assert b"\r\nContent-Length: 10\r\n" in seen[1]


async def test_a_chunked_stream_yields_each_chunk_as_it_arrives() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await answer(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await answer(writer, b'6;ext=1\r\n{"a":1\r\n2\r\n}\n\r\n')
        await release.wait()  # the client must have the first line before the second is sent
        await answer(writer, b'8\r\n{"b":2}\n\r\n0\r\nTrailer: x\r\n\r\n')
        return True

    transport = Http11Transport()
    async with (
        served(handler) as (url, _, conns),
        httpx2.AsyncClient(transport=transport, base_url=url) as client,
    ):
        lines = []
        async with client.stream("GET", "/watch") as response:
            async for line in response.aiter_lines():
                lines.append(line)
                release.set()
        assert lines == ['{"a":1}', '{"b":2}']
        assert (await client.get("/again")).status_code == 200  # read to its end: back in the pool
        assert conns == [1, 1]


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await answer(writer, ok(b"{}"))
        return False  # closes after each answer, without saying so

    transport = Http11Transport()
    async with (
        served(handler) as (url, _, conns),
        httpx2.AsyncClient(transport=transport, base_url=url) as client,
    ):
        for _ in range(3):
            assert (await client.get("/")).json() == {}
            await asyncio.sleep(0.05)  # the close reaches the client's reader
        assert conns == [1, 2, 3]


async def test_a_request_on_a_connection_closed_under_it_is_sent_once_more_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if b"drop" in request:
            return False  # reads the request, closes without an answer
        return await answer(writer, ok(b"{}"))

    transport = Http11Transport()
    async with (
        served(handler) as (url, seen, conns),
        httpx2.AsyncClient(transport=transport, base_url=url) as client,
    ):
        assert (await client.get("/first")).status_code == 200
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get("/drop")  # on the kept connection, then once on a new one
        assert conns == [1, 1, 2] and seen[1] == seen[2]


async def test_connection_close_and_bodies_read_to_eof_are_not_kept() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if b"eof" in request:
            await answer(writer, b"HTTP/1.1 200 OK\r\n\r\nto the end")
            return False
        return await answer(writer, ok(b"x", b"Connection: close\r\n"))

    transport = Http11Transport()
    async with (
        served(handler) as (url, _, conns),
        httpx2.AsyncClient(transport=transport, base_url=url) as client,
    ):
        assert (await client.get("/a")).text == "x"
        assert (await client.get("/eof")).text == "to the end"
        assert (await client.get("/b")).text == "x"
        assert conns == [1, 2, 3]


async def test_timeouts_and_broken_answers_raise_httpx2s_exceptions() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        if b"slow" in request:
            await asyncio.sleep(5)
        elif b"short" in request:
            await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            return False
        elif b"badchunk" in request:
            await answer(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n")
            return False
        elif b"garbage" in request:
            await answer(writer, b"SSH-2.0-OpenSSH\r\n\r\n")
            return False
        elif b"stall" in request:  # one chunk at once (read without a timer), then nothing
            await answer(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
            await asyncio.sleep(5)
        elif b"halfbody" in request:
            await answer(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await asyncio.sleep(5)
        return await answer(writer, ok(b"{}"))

    async with (
        served(handler) as (url, _, _),
        httpx2.AsyncClient(transport=Http11Transport(), base_url=url) as client,
    ):
        with pytest.raises(httpx2.ReadTimeout):
            await client.get("/slow", timeout=httpx2.Timeout(1.0, read=0.2))
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get("/short")
        with pytest.raises(httpx2.RemoteProtocolError):
            await client.get("/garbage")
        with pytest.raises(httpx2.RemoteProtocolError, match="chunk size"):
            await client.get("/badchunk")
        timeout = httpx2.Timeout(1.0, read=0.2)
        async with client.stream("GET", "/stall", timeout=timeout) as response:
            chunks = response.aiter_raw()
            assert await chunks.__anext__() == b"ab"
            with pytest.raises(httpx2.ReadTimeout):
                await chunks.__anext__()
        with pytest.raises(httpx2.ReadTimeout):
            await client.get("/halfbody", timeout=timeout)
        assert (await client.get("/fine")).json() == {}


async def test_nothing_listening_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with httpx2.AsyncClient(transport=Http11Transport(), base_url=f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get("/")


async def test_idle_connections_are_capped() -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        await gate.wait()
        return await answer(writer, ok(b"{}"))

    transport = Http11Transport(max_idle=2)
    async with (
        served(handler) as (url, _, _),
        httpx2.AsyncClient(transport=transport, base_url=url) as client,
    ):
        pending = [asyncio.create_task(client.get(f"/{i}")) for i in range(5)]
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.gather(*pending)
        assert transport.opened == 5
        assert sum(len(idle) for idle in transport._idle.values()) == 2
        await asyncio.gather(*(client.get("/again") for _ in range(2)))
        assert transport.opened == 5  # the two kept ones served them


async def test_tls_checks_the_servers_certificate_for_its_ip(tmp_path: Path) -> None:
    pair, ca = issue(["127.0.0.1"], dt.timedelta(days=1))
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
        return await answer(writer, ok(b'{"tls": true}'))

    trusted = ssl.create_default_context(cadata=ca.decode())
    async with served(handler, server_tls) as (url, _, conns):
        async with httpx2.AsyncClient(transport=Http11Transport(trusted), base_url=url) as client:
            assert (await client.get("/")).json() == {"tls": True}
            assert (await client.get("/")).json() == {"tls": True}
            assert conns == [1, 1]
            (kept,) = [c for idle in client._transport._idle.values() for c in idle]  # type: ignore[attr-defined]
            # asyncio's TLS buffer per connection: 64 KiB (TLS_READ), not its 256 KiB
            assert len(kept.writer.transport._ssl_protocol._ssl_buffer) <= TLS_READ
        _, other_ca = issue(["127.0.0.1"], dt.timedelta(days=1))
        untrusted = ssl.create_default_context(cadata=other_ca.decode())
        async with httpx2.AsyncClient(transport=Http11Transport(untrusted), base_url=url) as client:
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get("/")
