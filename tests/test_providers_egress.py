"""Podium's egress against a scripted HTTP/1.1 server that misbehaves in every way a worker
can: answers in chunks cut at every byte, bodies that end at close, compression, lost
connections, malformed answers, slow readers, callers that give up."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podium.providers.egress import HIGH_WATER, Egress, EgressError, Origin, request_head

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection


class Scripted:
    """A server that reads whole requests and answers each with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)
        )
        await writer.drain()
        return True

    return answer


def first_then(first: Answer, rest: Answer) -> Answer:
    """``first`` for the server's first request, ``rest`` for every later one."""
    answered = 0

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal answered
        answered += 1
        return await (first if answered == 1 else rest)(request, writer)

    return answer


@asynccontextmanager
async def egress(**options: object) -> AsyncIterator[Egress]:
    client = Egress(**options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose()


async def post(client: Egress, port: int, body: bytes = b"{}", scheme: str = "http") -> bytes:
    origin = Origin.parse(f"{scheme}://127.0.0.1:{port}/v1")
    head = request_head(origin, "POST", "/chat", {"Content-Type": "application/json"})
    response = await client.pool_for(origin).request(head, body, connect_timeout=5)
    try:
        return await response.read()
    finally:
        response.close()


async def test_keep_alive_reuses_one_connection_and_sends_a_well_formed_request() -> None:
    async with Scripted(ok()) as server, egress() as client:
        for _ in range(3):
            assert await post(client, server.port, b'{"a":1}') == b'{"ok":true}'
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 7\r\n\r\n" in first and first.endswith(b'{"a":1}')


async def test_a_chunked_answer_cut_at_every_byte_arrives_whole() -> None:
    body = b'{"choices":[{"message":{"content":"h\xc3\xa9llo"}}]}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:9], body[9:])) + (
        b"0\r\n\r\n"
    )
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked

    async def dribble(request: bytes, writer: asyncio.StreamWriter) -> bool:
        for i in range(len(answer)):
            writer.write(answer[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)
        return True

    async with Scripted(dribble) as server, egress() as client:
        assert await post(client, server.port) == body
        assert await post(client, server.port) == body
    assert server.connections == 1


async def test_a_body_that_ends_at_close_is_read_to_the_close() -> None:
    async def until_close(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"part two")
        return False

    async with Scripted(until_close) as server, egress() as client:
        assert await post(client, server.port) == b"part one, part two"
        assert await post(client, server.port) == b"part one, part two"
    assert server.connections == 2  # "Connection: close" is honoured


async def test_gzip_answers_are_decoded() -> None:
    body = b'{"text":"' + b"compressible " * 200 + b'"}'
    async with (
        Scripted(ok(gzip.compress(body), b"Content-Encoding: gzip\r\n")) as server,
        egress() as client,
    ):
        assert await post(client, server.port) == body
    assert b"Accept-Encoding" not in server.requests[0]  # only what the caller asked for


async def test_an_informational_answer_is_skipped() -> None:
    async def continued(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        return True

    async with Scripted(continued) as server, egress() as client:
        assert await post(client, server.port) == b"hi"


async def test_a_connection_lost_mid_answer_fails_the_read_and_is_not_reused() -> None:
    async def cut(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        return False

    async with Scripted(first_then(cut, ok())) as server, egress() as client:
        with pytest.raises(EgressError, match="middle of the answer"):
            await post(client, server.port)
        assert await post(client, server.port) == b'{"ok":true}'
    assert server.connections == 2


async def test_a_connection_closed_before_the_answer_is_an_egress_error() -> None:
    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with Scripted(hang_up) as server, egress() as client:
        with pytest.raises(EgressError, match="before the answer"):
            await post(client, server.port)


async def test_a_malformed_answer_is_an_egress_error() -> None:
    async def garbage(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return True

    async with Scripted(garbage) as server, egress() as client:
        with pytest.raises(EgressError, match="malformed"):
            await post(client, server.port)


async def test_an_unasked_encoding_is_an_egress_error() -> None:
    async with Scripted(ok(b"x", b"Content-Encoding: br\r\n")) as server, egress() as client:
        with pytest.raises(EgressError, match="br"):
            await post(client, server.port)


async def test_a_caller_that_gives_up_never_reads_a_late_answer_as_the_next_one() -> None:
    async def late(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.2)
        return await ok(b"late")(request, writer)

    async with Scripted(first_then(late, ok(b"fresh"))) as server, egress() as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await post(client, server.port)
        await asyncio.sleep(0.3)
        assert await post(client, server.port) == b"fresh"
    assert server.connections == 2


async def test_a_slow_reader_gets_every_byte_with_bounded_buffering() -> None:
    body = bytes(range(256)) * 8192  # 2 MB

    async with Scripted(ok(body)) as server, egress() as client:
        origin = Origin.parse(f"http://127.0.0.1:{server.port}")
        head = request_head(origin, "POST", "/", {})
        response = await client.pool_for(origin).request(head, b"", connect_timeout=5)
        received = bytearray()
        largest = 0
        while block := await response.read_any():
            largest = max(largest, len(block))
            received += block
            await asyncio.sleep(0.002)  # slower than the socket
        response.close()
        assert bytes(received) == body
        assert largest <= HIGH_WATER + 256 * 1024  # reading paused; never the whole body
        assert await post(client, server.port) == body  # and the connection is reused
    assert server.connections == 1


async def test_callers_beyond_the_limit_wait_for_a_connection() -> None:
    async def slow(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        return await ok()(request, writer)

    async with Scripted(slow) as server, egress(limit_per_origin=2) as client:
        answers = await asyncio.gather(*(post(client, server.port) for _ in range(8)))
    assert answers == [b'{"ok":true}'] * 8
    assert server.connections == 2


async def test_idle_connections_expire_and_closed_ones_are_dropped() -> None:
    async def close_after(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await ok()(request, writer)
        return False  # the server closes each connection after answering (keep-alive timeout)

    async with Scripted(close_after) as server, egress() as client:
        assert await post(client, server.port) == b'{"ok":true}'
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert await post(client, server.port) == b'{"ok":true}'
    assert server.connections == 2

    async with Scripted(ok()) as server, egress(keep_idle=0.01) as client:
        await post(client, server.port)
        await asyncio.sleep(0.05)
        await post(client, server.port)
    assert server.connections == 2


async def test_no_listener_is_an_os_error() -> None:
    async with Scripted(ok()) as server:
        port = server.port
    async with egress() as client:
        with pytest.raises(ConnectionRefusedError):
            await post(client, port)


def test_a_header_that_would_split_the_request_is_refused() -> None:
    origin = Origin.parse("http://example.test")
    with pytest.raises(ValueError, match="split"):
        request_head(origin, "POST", "/", {"Authorization": "Bearer x\r\nX-Evil: 1"})
    assert request_head(origin, "POST", "/v1/x", {}).startswith(
        b"POST /v1/x HTTP/1.1\r\nHost: example.test\r\n"
    )
    assert Origin.parse("https://[::1]:8443/base/").host_header == "[::1]:8443"
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://example.test")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_https_verifies_the_server_certificate(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    answer = ok(b"secret")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n{}")
            await answer(b"", writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=str(cert_file))
        async with egress(tls=trusting) as client:
            assert await post(client, port, scheme="https") == b"secret"
        async with egress() as client:  # the system's CAs do not know this certificate
            with pytest.raises(ssl.SSLCertVerificationError):
                await post(client, port, scheme="https")
    finally:
        server.close()


async def test_the_server_setting_bounds_connections_per_origin(tmp_path: Path) -> None:
    from podium.app import create_podium
    from podium.config import parse_config

    config = parse_config(
        {"data_dir": str(tmp_path), "workers": [], "server": {"upstream_connections": 3}}
    )
    podium = create_podium(config)
    origin = Origin.parse("http://127.0.0.1:9")
    assert podium.http.pool_for(origin).limit == 3


async def test_an_unsolicited_answer_on_an_idle_connection_retires_it() -> None:
    async def then_timeout(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await ok()(request, writer)
        await asyncio.sleep(0.02)
        # What some servers send an idle keep-alive connection before closing it.
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        return False

    async with Scripted(then_timeout) as server, egress() as client:
        assert await post(client, server.port) == b'{"ok":true}'
        await asyncio.sleep(0.1)  # the 408 has arrived on the idle connection
        pool = client.pool_for(Origin.parse(f"http://127.0.0.1:{server.port}"))
        assert pool.idle_connections == 0
        answers = await asyncio.gather(*(post(client, server.port) for _ in range(2)))
    assert answers == [b'{"ok":true}'] * 2
    assert server.connections == 3
