"""HTTP/1.1 to the apiserver on asyncio's streams: an httpx2 transport for the operator's one client.

httpx2's default transport goes through httpcore2, h11 and anyio.  For the operator's traffic (many
small JSON requests and a few long watch streams to one host) that stack was about 40% of the
operator's CPU while converging 50 clusters (docs/benchmarks.md, CPU): its pool probes every idle
connection's socket on each request, and h11 parses every response in pure Python.  This transport
keeps what httpx2 does above the transport (authentication, the request's headers, decoding the body,
the ``Response`` API lightkube and the informers read) and does the wire itself:

- one request at a time per connection, keep-alive, at most ``max_idle`` idle connections per host
  (the oldest closed first), an idle connection reused for ``keepalive`` seconds;
- a reused connection that fails before any byte of the answer (the server closed it while it was
  idle, the usual case) gets the request once more on a new connection.  Should the server have acted
  on the first copy, the operator's requests bear it: applies and status patches land the same
  twice, a delete with a uid precondition finds the object gone, and at worst an Event is doubled;
- bodies by ``Content-Length``, ``chunked`` (watch streams: each chunk as it arrives), or until the
  connection closes;
- httpx2's timeouts (connect, write, read per read) and its exception types, so callers see what
  httpx2's own transport would raise.

A client given this transport uses no proxy from the environment (httpx2 reads HTTP(S)_PROXY only for
a client without one); a proxy given to the client explicitly is httpx2's own transport, mounted in
front of this one."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx2

MAX_HEADER = 1 << 16
"""Bytes allowed for a response's status line and headers, and what a connection buffers before it
stops reading from the socket (twice that: asyncio's StreamReader limit)."""
READ_CHUNK = 1 << 16
TLS_READ = 1 << 16
"""Bytes a TLS connection reads at a time.  asyncio's TLS protocol allocates a buffer of its
``max_size`` per connection up front (256 KiB in CPython 3.11-3.13): with a dozen watch streams and
the kept connections that was 5 MiB of RSS.  httpcore2 (anyio) read 64 KiB at a time too.  It is a
class attribute, so this applies to every asyncio TLS connection of the process (the webhook's)."""
asyncio.sslproto.SSLProtocol.max_size = min(asyncio.sslproto.SSLProtocol.max_size, TLS_READ)
NO_BODY_STATUS = frozenset({204, 304})


class _Connection:
    __slots__ = ("idle_since", "key", "reader", "reused", "writer")

    def __init__(self, key: tuple[str, str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.key, self.reader, self.writer = key, reader, writer
        self.idle_since = 0.0
        self.reused = False

    def open(self) -> bool:
        """Still usable: the server has not closed it and sent nothing unasked (both would be seen
        by the event loop's reader already: no system call here)."""
        return not (self.writer.is_closing() or self.reader.at_eof() or _buffered(self.reader))

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class _Stale(Exception):
    """A reused connection was closed by the server before any byte of the answer."""


class _Ask:
    """What the wire code needs of a request: its method, its timeouts, and the httpx2 request to name
    in an exception (None for a :meth:`Http11Transport.fetch`)."""

    __slots__ = ("method", "request", "timeouts")

    def __init__(
        self, method: str, timeouts: dict[str, float | None], request: httpx2.Request | None
    ) -> None:
        self.method, self.timeouts, self.request = method, timeouts, request

    @classmethod
    def of(cls, request: httpx2.Request) -> _Ask:
        return cls(request.method, request.extensions.get("timeout") or {}, request)

    def timeout(self, which: str) -> float | None:
        value = self.timeouts.get(which)
        return float(value) if value is not None else None


def _broken(conn: _Connection, ask: _Ask, err: OSError, error: type[httpx2.TransportError]) -> Exception:
    """A connection failed before the answer began: closed; on a reused one, :class:`_Stale`."""
    conn.close()
    if conn.reused:
        return _Stale()
    return error(str(err) or type(err).__name__, request=ask.request)


def _buffered(reader: asyncio.StreamReader) -> bytearray:
    """What the event loop has read for ``reader`` and nobody has taken yet."""
    return getattr(reader, "_buffer", None) or bytearray()


class _Body(httpx2.AsyncByteStream):
    """A response body read off its connection; back to the pool once read to its end."""

    def __init__(
        self,
        transport: Http11Transport,
        conn: _Connection,
        ask: _Ask,
        length: int | None,
        chunked: bool,
        reusable: bool,
    ) -> None:
        self.transport, self.conn, self.request = transport, conn, ask.request
        self.length, self.chunked, self.reusable = length, chunked, reusable
        self.done = False
        self.read_timeout = ask.timeout("read")

    async def _read(self, coro: Any, ready: bool = False) -> Any:
        """Await one read; ``ready``: what it reads is buffered already, so it needs no timer (one per
        read was 5% of the operator's CPU, most of it on the watch streams' chunks)."""
        try:
            if ready or self.read_timeout is None:
                return await coro
            async with asyncio.timeout(self.read_timeout):
                return await coro
        except TimeoutError as err:
            raise httpx2.ReadTimeout("timed out reading the response", request=self.request) from err
        except asyncio.IncompleteReadError as err:
            raise httpx2.RemoteProtocolError(
                "the server closed the connection in the middle of the response", request=self.request
            ) from err
        except asyncio.LimitOverrunError as err:
            raise httpx2.RemoteProtocolError(f"malformed response body: {err}", request=self.request) from err
        except OSError as err:
            raise httpx2.ReadError(str(err) or type(err).__name__, request=self.request) from err

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reader = self.conn.reader
        if self.chunked:
            while True:
                line = await self._read(reader.readuntil(b"\r\n"), b"\r\n" in _buffered(reader))
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as err:
                    raise httpx2.RemoteProtocolError(
                        f"malformed chunk size {line[:40]!r}", request=self.request
                    ) from err
                if size == 0:
                    while (await self._read(reader.readuntil(b"\r\n"))) != b"\r\n":
                        pass  # trailers
                    break
                data = await self._read(reader.readexactly(size + 2), len(_buffered(reader)) >= size + 2)
                if data[-2:] != b"\r\n":
                    raise httpx2.RemoteProtocolError("malformed chunk", request=self.request)
                yield data[:-2]
        elif self.length is not None:
            if self.length:
                yield await self._read(reader.readexactly(self.length), len(_buffered(reader)) >= self.length)
        else:
            while True:
                data = await self._read(reader.read(READ_CHUNK))
                if not data:
                    break
                yield data
            self.reusable = False
        self.done = True
        await self.aclose()

    async def read(self) -> bytes:
        """The whole body (its connection goes back to the pool, or is closed on an error)."""
        try:
            return b"".join([part async for part in self])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if conn is not None:
            self.transport._release(conn, self.done and self.reusable)


Origin = tuple[str, str, int]
"""(scheme, host, port) of a server."""


class Http11Transport(httpx2.AsyncBaseTransport):
    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, max_idle: int = 8, keepalive: float = 30.0
    ) -> None:
        self.ssl_context = ssl_context
        self.max_idle, self.keepalive = max_idle, keepalive
        self._idle: dict[Origin, deque[_Connection]] = {}
        self.opened = 0
        """Connections opened so far (for tests and benchmarks)."""

    async def _connect(self, ask: _Ask, key: Origin) -> _Connection:
        scheme, host, port = key
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            tls = self.ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(ask.timeout("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEADER
                )
        except TimeoutError as err:
            raise httpx2.ConnectTimeout(
                f"connecting to {host}:{port} timed out", request=ask.request
            ) from err
        except (OSError, ssl.SSLError) as err:
            raise httpx2.ConnectError(f"connecting to {host}:{port}: {err}", request=ask.request) from err
        self.opened += 1
        return _Connection(key, reader, writer)

    def _take(self, key: Origin) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be alive
            if conn.open() and now - conn.idle_since < self.keepalive:
                conn.reused = True
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable or not conn.open():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle = self._idle.setdefault(conn.key, deque())
        idle.append(conn)
        while len(idle) > self.max_idle:
            idle.popleft().close()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(f"{scheme!r} is not served by this transport", request=request)
        key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        body = await request.aread()
        status, reason, headers, stream = await self._send(
            key, _Ask.of(request), self._head(request, body) + body
        )
        return httpx2.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def fetch(
        self, origin: Origin, method: str, head: bytes, body: bytes, timeouts: dict[str, float | None]
    ) -> tuple[int, bytes]:
        """One request without httpx2: ``head`` is its request line and headers (``Host`` included,
        ending in a blank line), sent with ``body``; the answer's status and whole body.  Errors are
        httpx2's exceptions without a request.  For the operator's hot calls (:class:`~.k8s.Direct`)."""
        status, _, _, stream = await self._send(origin, _Ask(method, timeouts, None), head + body)
        return status, await stream.read()

    async def _send(
        self, key: Origin, ask: _Ask, data: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], _Body]:
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(conn, ask, data)
            except _Stale:
                pass  # the server closed it while idle: once more on a new connection
        conn = await self._connect(ask, key)
        try:
            return await self._exchange(conn, ask, data)
        except _Stale as err:
            raise httpx2.RemoteProtocolError(
                "the server closed the connection without answering", request=ask.request
            ) from err

    @staticmethod
    def _head(request: httpx2.Request, body: bytes) -> bytes:
        target = request.url.raw_path or b"/"
        lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        names = set()
        for name, value in request.headers.raw:
            names.add(name.lower())
            lines.append(name + b": " + value)
        if b"host" not in names:
            lines.insert(1, b"Host: " + request.url.netloc)
        if body and b"content-length" not in names and b"transfer-encoding" not in names:
            lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _exchange(
        self, conn: _Connection, ask: _Ask, data: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], _Body]:
        request = ask.request
        try:
            conn.writer.write(data)
            if conn.writer.transport.get_write_buffer_size():  # else all of it went out at once
                async with asyncio.timeout(ask.timeout("write")):
                    await conn.writer.drain()
        except TimeoutError as err:
            conn.close()
            raise httpx2.WriteTimeout("timed out sending the request", request=request) from err
        except OSError as err:
            raise _broken(conn, ask, err, httpx2.WriteError) from err
        try:
            async with asyncio.timeout(ask.timeout("read")):
                raw = await conn.reader.readuntil(b"\r\n\r\n")
        except TimeoutError as err:
            conn.close()
            raise httpx2.ReadTimeout("timed out waiting for the response", request=request) from err
        except asyncio.IncompleteReadError as err:
            conn.close()
            if conn.reused and not err.partial:
                raise _Stale() from err
            raise httpx2.RemoteProtocolError("the server closed the connection", request=request) from err
        except asyncio.LimitOverrunError as err:
            conn.close()
            raise httpx2.RemoteProtocolError("response headers too long", request=request) from err
        except OSError as err:
            raise _broken(conn, ask, err, httpx2.ReadError) from err
        status, reason, headers = self._parse_head(raw, request)
        values = {name.lower(): value for name, value in headers}
        chunked = b"chunked" in values.get(b"transfer-encoding", b"").lower()
        length: int | None = None
        if ask.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
            length = 0
        elif not chunked and b"content-length" in values:
            try:
                length = int(values[b"content-length"])
            except ValueError as err:
                conn.close()
                raise httpx2.RemoteProtocolError("malformed Content-Length", request=request) from err
        reusable = b"close" not in values.get(b"connection", b"").lower() and (chunked or length is not None)
        return status, reason, headers, _Body(self, conn, ask, length, chunked, reusable)

    @staticmethod
    def _parse_head(
        raw: bytes, request: httpx2.Request | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            if not parts[0].startswith(b"HTTP/1."):
                raise ValueError(parts[0])
            status = int(parts[1])
        except (IndexError, ValueError) as err:
            message = f"malformed status line {lines[0][:80]!r}"
            raise httpx2.RemoteProtocolError(message, request=request) from err
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise httpx2.RemoteProtocolError(f"malformed header line {line[:80]!r}", request=request)
            headers.append((name.strip(), value.strip()))
        return status, parts[2] if len(parts) > 2 else b"", headers

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
