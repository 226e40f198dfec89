"""Where the notifier may connect: public addresses only, unless the operator says otherwise.

A notify target holds a URL someone typed (webhook, GitLab/Jira/GitHub base URL, Discord
webhook). Left unchecked it makes the notifier a proxy into its own network: the cloud
metadata service, the admin port on 127.0.0.1, a database on 10.x. So every address is
classified, and loopback, private, link-local, CGNAT, multicast, unspecified and other
non-global addresses are refused:

- when a target is added (``check_url``: literal addresses in any spelling, ``localhost``,
  and what the name resolves to now);
- when a request is sent (``GuardedBackend``): the name is resolved once, *every* address
  it resolves to is checked, and the connection goes to a checked address. httpcore does
  TLS on that connection with the original name as SNI and for certificate verification,
  so nothing about HTTPS changes, and a name re-pointed between the check and the connect
  (DNS rebinding) gains nothing. Redirects are never followed (``follow_redirects=False``).

Opt-ins: a target added with ``--allow-private`` may reach loopback, RFC 1918 / fc00::/7
private and CGNAT addresses (an in-house GitLab, a test receiver); addresses in
``FORGELINE_NOTIFY_ALLOWED_NETWORKS`` (CIDRs) are allowed for every target. Link-local
(where cloud metadata lives), metadata addresses, multicast, unspecified and reserved
addresses are reached only through the CIDR list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Private ranges (RFC 1918, RFC 4193) and shared address space (RFC 6598, carrier-grade NAT).
_PRIVATE: Final = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_SHARED: Final = ipaddress.ip_network("100.64.0.0/10")
# Cloud metadata services outside 169.254/16: AWS's IPv6 one (in fc00::/7), Alibaba's (in CGNAT).
_METADATA: Final = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
# IPv6 prefixes whose addresses carry an IPv4 address a gateway will connect to.
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# What `--allow-private` opens; the other categories need FORGELINE_NOTIFY_ALLOWED_NETWORKS.
OPT_IN_CATEGORIES: Final = frozenset({"loopback", "private", "shared"})
# inet_aton's legacy IPv4 spellings: 2130706433, 0x7f.1, 0177.0.0.1, 127.1.
_LEGACY_IPV4: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.IGNORECASE)


class BlockedDestination(ValueError):
    """A target's address is not one the notifier may connect to; the message says why."""

    def __init__(self, message: str, category: str) -> None:
        super().__init__(message)
        self.category = category


def classify(address: IPAddress) -> str | None:
    """None for a public (globally routable) address, else what it is: ``loopback``, ``private``…"""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return classify(embedded)
    if address in _METADATA:
        return "metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE):
        return "private"
    if address in _SHARED:
        return "shared"
    if (
        not address.is_global
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    ):
        return "reserved"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: mapped (::ffff:a.b.c.d), NAT64
    (64:ff9b::a.b.c.d) or 6to4 (2002:AABB:CCDD::). The rest of ::/8 (the deprecated
    "compatible" ::a.b.c.d included) is reserved."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one in any spelling a resolver accepts, else None."""
    text = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
        except OSError:
            return None
    return None


def _local_name(host: str) -> bool:
    """Names that are loopback without asking DNS (RFC 6761)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def parse_networks(raw: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (``10.20.0.0/16``, ``fd12::/64``, a bare address); ValueError names a bad one."""
    networks = []
    for item in raw:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"{item!r} is not an IP network (CIDR): {err}") from err
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    allow_private: bool = False  # the target's --allow-private
    allowed_networks: tuple[IPNetwork, ...] = field(default=())  # FORGELINE_NOTIFY_ALLOWED_NETWORKS

    def refusal(self, address: IPAddress) -> str | None:
        """None when the notifier may connect to ``address``, else the address's category."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is allowed wherever 10.0.0.1 is
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return None
        category = classify(address)
        if category is None or (self.allow_private and category in OPT_IN_CATEGORIES):
            return None
        return category

    def check(self, host: str, address: IPAddress) -> None:
        category = self.refusal(address)
        if category is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            hint = (
                "add the target with --allow-private to allow loopback and private networks"
                if category in OPT_IN_CATEGORIES
                else "list its network in FORGELINE_NOTIFY_ALLOWED_NETWORKS to allow it"
            )
            raise BlockedDestination(f"{shown} is a {category} address; refused ({hint})", category)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order (one look-up)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_addresses(host: str, port: int, policy: EgressPolicy) -> list[IPAddress]:
    """The addresses to connect to for ``host``, all checked; BlockedDestination if any is refused."""
    literal = literal_address(host)
    if literal is not None:
        policy.check(host, literal)
        return [literal]
    if _local_name(host):
        policy.check(host, ipaddress.ip_address("127.0.0.1"))
        policy.check(host, ipaddress.ip_address("::1"))
    addresses = await resolve(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for address in addresses:  # one bad address refuses the name: a resolver may pick any of them
        policy.check(host, address)
    return addresses


def url_host_port(url: str) -> tuple[str, int]:
    """Host and port as httpx will connect (the same parser as the requests)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as err:
        raise ValueError(f"{url!r} is not a valid URL: {err}") from err
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http(s) URL")
    return parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)


async def check_url(url: str, policy: EgressPolicy) -> str | None:
    """At `notify add`: BlockedDestination for a refused address; a warning when the name does
    not resolve now (it is checked again on every send, so it is not refused for that)."""
    host, port = url_host_port(url)
    try:
        await checked_addresses(host, port, policy)
    except OSError as err:  # socket.gaierror included
        return f"{host} does not resolve now ({err}); it will be checked when notifications are sent"
    return None


# --- send time: a network backend that connects only to checked addresses ------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default backend, but each TCP connect resolves and checks the host first and
    then connects to those addresses (not to the name, which could resolve differently now)."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked_addresses(host, port, self.policy)
        except TimeoutError as err:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from err
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {host}: {err}") from err
        last: Exception | None = None
        options = list(socket_options or ())
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                last = err
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination("unix sockets are not notify destinations", "unix")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a GuardedBackend; environment proxies are not used (a proxy would
    connect on our behalf to an address we never checked)."""

    def __init__(self, policy: EgressPolicy, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            # Certificates are verified against the URL's host name (SSL_CERT_FILE/DIR apply).
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


def guarded_client(
    policy: EgressPolicy, timeout: httpx.Timeout, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, limits, ssl_context),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class OutboundClients:
    """One HTTP client per policy: targets without the opt-in never share a connection pool
    (and so never a connection) with targets that have it."""

    def __init__(self, allowed_networks: Sequence[IPNetwork], timeout: httpx.Timeout, limits: httpx.Limits) -> None:
        networks = tuple(allowed_networks)
        self._clients = {
            allow: guarded_client(EgressPolicy(allow, networks), timeout, limits) for allow in (False, True)
        }

    def client(self, allow_private: bool) -> httpx.AsyncClient:
        return self._clients[allow_private]

    async def __aenter__(self) -> OutboundClients:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for client in self._clients.values():
            await client.aclose()
