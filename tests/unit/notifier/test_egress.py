"""Outbound requests: which addresses a notify target may reach, checked when it is added and
again on every connection (one resolution, the connection made to the checked address)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from forgeline.notify import egress
from forgeline.notify.egress import (
    BlockedDestination,
    EgressPolicy,
    IPAddress,
    check_url,
    classify,
    guarded_client,
    literal_address,
    parse_networks,
)
from forgeline.notify.model import Target
from services.notifier.main import attempt
from services.notifier.subjects import sample_notification

pytestmark = pytest.mark.unit

STRICT = EgressPolicy()
OPT_IN = EgressPolicy(allow_private=True)
TIMEOUT = httpx.Timeout(5.0)
LIMITS = httpx.Limits(max_connections=4)


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test body run with asyncio.run (pytest sees the same fixture arguments)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


@pytest.mark.parametrize(
    ("host", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.1.2", "loopback"),
        ("2130706433", "loopback"),  # decimal
        ("017700000001", "loopback"),  # octal
        ("0x7f000001", "loopback"),  # hex
        ("0x7f.1", "loopback"),  # hex, shorthand
        ("0177.0.0.1", "loopback"),  # octal dotted
        ("127.1", "loopback"),  # shorthand
        ("127.0.0.1.", "loopback"),  # trailing dot
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("[::ffff:7f00:1]", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0", "unspecified"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("0xc0a80101", "private"),
        ("fd12:3456::1", "private"),
        ("fc00::1", "private"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("100.64.0.1", "shared"),
        ("100.127.255.254", "shared"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "reserved"),  # documentation
        ("198.18.0.1", "reserved"),  # benchmarking
        ("2001:db8::1", "reserved"),
        ("::7f00:1", "reserved"),  # deprecated IPv4-compatible
        ("fec0::1", "reserved"),  # deprecated site-local
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("172.32.0.1", None),  # just outside 172.16/12
        ("100.128.0.1", None),  # just outside 100.64/10
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
    ],
)
def test_classify_address_forms(host: str, category: str | None) -> None:
    address = literal_address(host)
    assert address is not None, host
    assert classify(address) == category
    assert STRICT.refusal(address) == category


@pytest.mark.parametrize("host", ["example.com", "hooks.example.com", "1e3", "0x", "127.0.0.1.nip.io", "a.b.c.d.e"])
def test_names_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


def test_opt_in_opens_loopback_and_private_only() -> None:
    def refusal(policy: EgressPolicy, host: str) -> str | None:
        address = literal_address(host)
        assert address is not None
        return policy.refusal(address)

    for host in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.2", "fd00::5", "100.64.1.1", "::ffff:127.0.0.1"):
        assert refusal(STRICT, host) is not None and refusal(OPT_IN, host) is None, host
    # Metadata, link-local, multicast and unspecified addresses stay closed with the opt-in.
    for host in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "fe80::1", "224.0.0.1", "0.0.0.0", "::"):
        assert refusal(OPT_IN, host) is not None, host
    # …and open only through the operator's list of networks (which also covers mapped forms).
    listed = EgressPolicy(allowed_networks=parse_networks(["169.254.169.254/32", "10.20.0.0/16"]))
    assert refusal(listed, "169.254.169.254") is None and refusal(listed, "169.254.169.253") == "link-local"
    assert refusal(listed, "10.20.3.4") is None and refusal(listed, "::ffff:10.20.3.4") is None
    assert refusal(listed, "10.21.0.1") == "private"
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])


def _resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[..., Awaitable[list[IPAddress]]]:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError(f"unknown host {host}")
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081/api/sql",  # the admin port
        "http://localhost:8081/",
        "http://LOCALHOST./",
        "http://app.localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "https://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.0.0.5/hook",
        "http://user@192.168.1.1/",
        "http://0.0.0.0:8080/",
        "http://rebind.example.test/hook",  # resolves to loopback
        "http://mixed.example.test/hook",  # one public and one private address
    ],
)
@run
async def test_check_url_refuses(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"rebind.example.test": ["127.0.0.1"], "mixed.example.test": ["93.184.216.34", "10.0.0.7"]}
    monkeypatch.setattr(egress, "resolve", _resolver(table))
    with pytest.raises(BlockedDestination, match="address; refused"):
        await check_url(url, STRICT)


@run
async def test_check_url_accepts_public_and_warns_on_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "resolve", _resolver({"hooks.example.test": ["93.184.216.34", "2606:2800::1"]}))
    assert await check_url("https://hooks.example.test/forgeline", STRICT) is None
    assert await check_url("http://93.184.216.34:8443/x", STRICT) is None
    warning = await check_url("https://nowhere.example.test/", STRICT)
    assert warning is not None and "checked when notifications are sent" in warning
    assert await check_url("http://rebind.example.test/", OPT_IN) is not None  # opt-in: still checked at send
    with pytest.raises(ValueError, match="http"):
        await check_url("ftp://93.184.216.34/", STRICT)
    with pytest.raises(ValueError, match="not a valid URL"):  # httpx refuses dotted octal outright
        await check_url("http://0177.0.0.1/", STRICT)


@asynccontextmanager
async def http_server(status: int = 200, headers: str = "") -> AsyncIterator[tuple[int, list[bytes]]]:
    """A one-answer HTTP/1.1 server on 127.0.0.1: (port, requests received)."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        body = await reader.readexactly(length)
        received.append(head + body)
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{headers}connection: close\r\n\r\nok".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, received


@run
async def test_send_time_refuses_a_name_that_resolves_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(egress, "resolve", _resolver({"hooks.example.test": ["127.0.0.1"]}, calls))
    async with http_server() as (port, received), guarded_client(STRICT, TIMEOUT, LIMITS) as client:
        with pytest.raises(BlockedDestination, match=r"hooks.example.test \(127.0.0.1\) is a loopback address"):
            await client.post(f"http://hooks.example.test:{port}/hook", content=b"{}")
        assert received == [] and calls == ["hooks.example.test"]


@run
async def test_send_time_opt_in_connects_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # The name exists only in the patched resolver: the request can arrive only if the
    # connection goes to the address the check saw, not to a second look-up of the name.
    calls: list[str] = []
    monkeypatch.setattr(egress, "resolve", _resolver({"hooks.example.test": ["127.0.0.1"]}, calls))
    async with http_server() as (port, received), guarded_client(OPT_IN, TIMEOUT, LIMITS) as client:
        response = await client.post(f"http://hooks.example.test:{port}/hook", content=b"{}")
        assert response.status_code == 200
        assert calls == ["hooks.example.test"]  # resolved once
        assert len(received) == 1 and f"host: hooks.example.test:{port}".encode() in received[0].lower()


@run
async def test_send_time_checks_literals_in_every_spelling() -> None:
    async with http_server() as (port, received), guarded_client(STRICT, TIMEOUT, LIMITS) as client:
        for host in ("127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "localhost"):
            with pytest.raises(BlockedDestination):
                await client.get(f"http://{host}:{port}/")
        assert received == []


@run
async def test_redirects_are_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "resolve", _resolver({}))
    redirect = "location: http://169.254.169.254/latest/meta-data/\r\n"
    async with http_server(302, redirect) as (port, received), guarded_client(OPT_IN, TIMEOUT, LIMITS) as client:
        response = await client.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 302 and len(received) == 1


@run
async def test_attempt_reports_a_blocked_address_as_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egress, "resolve", _resolver({"hooks.example.test": ["10.0.0.9"]}))
    async with http_server() as (port, received):
        url = f"http://hooks.example.test:{port}/hook"
        target = Target("t1", "p1", "webhook", "hook", {"url": url}, "enc")
        n = sample_notification("p1", "s1")
        async with guarded_client(STRICT, TIMEOUT, LIMITS) as client:
            outcome = await attempt(client, target, "whsec_x", n, "d1", None)
            assert (outcome.kind, outcome.reason) == ("permanent", "blocked_address")
            assert "10.0.0.9" in outcome.detail and "private" in outcome.detail
            # The crash-recovery look-up goes through the same check (Jira: a GET to the base URL).
            jira = Target("t2", "p1", "jira", "j", {"base_url": url, "jira_project": "G"}, "enc")
            looked = await attempt(client, jira, "tok", n, "d2", pending_since_ms=1)
            assert (looked.kind, looked.reason) == ("permanent", "blocked_address")
        assert received == []


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize("served_name", ["hooks.example.test", "other.example.test"])
@run
async def test_https_uses_the_name_for_sni_and_verification(
    served_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the checked IP, yet TLS still speaks to and verifies the name."""
    monkeypatch.setattr(egress, "resolve", _resolver({"hooks.example.test": ["127.0.0.1"]}))
    cert, key = _self_signed(tmp_path, served_name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server, guarded_client(OPT_IN, TIMEOUT, LIMITS, client_ctx) as client:
        url = f"https://hooks.example.test:{port}/hook"
        if served_name == "hooks.example.test":
            assert (await client.get(url)).status_code == 200
        else:  # a certificate for another name is refused: verification is on the URL's name
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|hostname"):
                await client.get(url)
    assert sni and set(sni) == {"hooks.example.test"}
