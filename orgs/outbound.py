"""The one outbound policy: every request the server makes on a tenant's behalf (run webhooks, `http_request` and
`webhook_notify` steps, OTLP export, an org's provider `api_base`) goes through here.

A name is resolved once; every address it resolves to must be public (no loopback, private, link-local and
metadata, CGNAT, multicast, reserved, unspecified, broadcast, IPv6 ULA or link-local, nor an IPv6 form that embeds
such an IPv4 address) unless the operator allowed it in ``JETTY_OUTBOUND_ALLOW``; and the connection is made to the
address that was checked, never to a second answer (no DNS rebinding). Host header and TLS SNI keep the name.
Redirects are re-checked because every connection, the first or a redirect's, goes through the same check.

``JETTY_OUTBOUND_ALLOW`` is a comma-separated list of entries, each a host name, an IP address or a CIDR,
optionally with ``:port`` (``[v6]:port`` for an IPv6 address): ``collector.internal``, ``10.0.0.0/8``,
``127.0.0.2:9000``. An entry with a port allows that port only. The policy is enforced by three adapters over one
check: an httpx client (steps, webhooks), a requests session (OTLP) and an aiohttp connector (the gateway).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpcore
import httpx
import requests
import requests.adapters
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CODE = "outbound_forbidden"
MAX_REDIRECTS = 5
MAX_RESPONSE_BYTES = 5 * 1024 * 1024
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Special-purpose blocks refused whole, whatever the Python version thinks of single addresses in them.
SPECIAL = (ipaddress.IPv4Network("192.0.0.0/24"), ipaddress.IPv4Network("198.18.0.0/15"))
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class OutboundForbidden(Exception):
    """A request the policy refuses. Deliberately not an OSError: HTTP libraries turn those into retries and
    generic connection errors, and the reason must reach the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Allowed:
    """One ``JETTY_OUTBOUND_ALLOW`` entry: a name or a network, and a port or any port."""

    name: str | None
    network: Network | None
    port: int | None

    def admits(self, host: str, address: Address, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return self.name == host_key(host)
        assert self.network is not None
        return address.version == self.network.version and address in self.network


def host_key(host: str) -> str:
    """A host name as compared with allow entries: lower case, no brackets, no trailing dots."""
    return host.strip("[]").rstrip(".").lower()


def _network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return None


def parse_allow(entries: Iterable[str]) -> tuple[Allowed, ...]:
    """Parse allow entries; raises ValueError naming a bad one (settings turn it into ImproperlyConfigured)."""
    parsed = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        target, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            target, _, rest = entry[1:].partition("]")
            if rest:
                port = _port(rest.removeprefix(":"), raw)
        elif entry.count(":") == 1:
            target, _, text = entry.partition(":")
            port = _port(text, raw)
        network = _network(target)
        if network is None and not _is_name(target):
            raise ValueError(f"JETTY_OUTBOUND_ALLOW entry {raw!r} is not a host, an IP address or a CIDR")
        parsed.append(Allowed(None if network else host_key(target), network, port))
    return tuple(parsed)


def _port(text: str, raw: str) -> int:
    if not text.isdecimal() or not 0 < int(text) < 65536:
        raise ValueError(f"JETTY_OUTBOUND_ALLOW entry {raw!r} has a bad port")
    return int(text)


def _is_name(text: str) -> bool:
    labels = host_key(text).split(".")
    return bool(text) and all(label and len(label) < 64 and label.replace("-", "").isalnum() for label in labels)


@functools.lru_cache(maxsize=8)
def _allowed(entries: tuple[str, ...]) -> tuple[Allowed, ...]:
    return parse_allow(entries)


def allowed() -> tuple[Allowed, ...]:
    """The operator's allow list, read from settings at call time (tests change it in process)."""
    from django.conf import settings

    return _allowed(tuple(getattr(settings, "JETTY_OUTBOUND_ALLOW", ())))


def embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo client, NAT64, IPv4-compatible), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in NAT64) or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address) -> str | None:
    """What kind of non-public address this is (``"loopback"``, ``"private"``, ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%")[0])
        inner = embedded_v4(address)
        if inner is not None:
            kind = refusal(inner)
            if kind is not None:
                return f"{kind} (embedded in {address})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata lives there)", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (CGNAT)", isinstance(address, ipaddress.IPv4Address) and address in CGNAT),
        ("private", address.is_private),
        ("special-purpose", isinstance(address, ipaddress.IPv4Address) and any(address in n for n in SPECIAL)),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def check(host: str, port: int | None, addresses: Sequence[Address]) -> None:
    """Refuse unless every address is public or allowed by the operator for this host and port."""
    if not addresses:
        raise OutboundForbidden(f"{host} resolves to no address")
    rules = allowed()
    for address in addresses:
        kind = refusal(address)
        if kind is not None and not any(rule.admits(host, address, port) for rule in rules):
            shown = host if host_key(host) == str(address) else f"{host} ({address})"
            raise OutboundForbidden(
                f"{CODE}: {shown} is not a public address ({kind}); the server makes no requests to loopback, "
                "private, link-local or other internal addresses unless the operator allows them (JETTY_OUTBOUND_ALLOW)"
            )


def resolve(host: str, port: int | None) -> list[Address]:
    """Every address the name resolves to (an IP literal, in any form the C library reads, resolves to itself).
    Raises OSError (socket.gaierror) when it does not resolve: a network fault, not a policy refusal."""
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    seen: dict[str, Address] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), ipaddress.ip_address(sockaddr[0]))
    return list(seen.values())


def pin(host: str, port: int | None) -> str:
    """Resolve once, check, and return the address to connect to."""
    addresses = resolve(host, port)
    check(host, port, addresses)
    return str(addresses[0])


def check_url(url: str, *, resolve_name: bool = True) -> None:
    """Refuse a URL the policy would refuse now: not http(s), an internal literal address, or a name resolving to
    one. A name that does not resolve passes (it is checked again when used)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise OutboundForbidden(f"{CODE}: {url!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise OutboundForbidden(f"{CODE}: only http(s) URLs with a host are fetched, not {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not resolve_name:
        return
    try:
        addresses = resolve(parsed.host, port)
    except (OSError, UnicodeError):
        return
    check(parsed.host, port, addresses)


def require_url(url: str, param: str) -> None:
    """For API views: a URL the policy refuses is a 400 ``outbound_forbidden`` naming the field."""
    from .api_errors import ApiError

    try:
        check_url(url)
    except OutboundForbidden as exc:
        raise ApiError(400, f"`{param}`: {exc.message}", code=CODE, param=param) from None


# httpx: the connection pool's network backend resolves, checks and connects to the checked address; httpcore
# keeps the URL's host for the Host header and TLS SNI.


class _PinnedBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            address = pin(host, port)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from None
        return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise OutboundForbidden(f"{CODE}: no unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport with its pool on the pinned backend (httpx has no setting for a network backend)."""

    def __init__(self) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(), network_backend=_PinnedBackend())


def client(timeout: float) -> httpx.Client:
    """An httpx client under the policy; proxies from the environment are ignored (they would connect for us)."""
    return httpx.Client(transport=PinnedTransport(), timeout=timeout, trust_env=False, max_redirects=MAX_REDIRECTS)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    content: bytes
    truncated: bool


def fetch(
    method: str,
    url: str,
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    content: bytes | str | None = None,
    json: Any = None,
    follow_redirects: bool = False,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Reply:
    """One request under the policy, with the whole exchange bounded by ``timeout`` and the body read up to
    ``max_bytes``. Raises OutboundForbidden, or httpx.HTTPError for network faults."""
    check_url(url, resolve_name=False)
    deadline = time.monotonic() + timeout
    body = bytearray()
    truncated = False
    with client(timeout) as session:
        with session.stream(
            method, url, headers=headers, content=content, json=json, follow_redirects=follow_redirects
        ) as response:
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"no whole answer within {timeout:g} s")
                body += chunk[: max_bytes - len(body)]
                if len(body) >= max_bytes:
                    truncated = True
                    break
            return Reply(response.status_code, dict(response.headers), bytes(body), truncated)


# requests (the OTLP exporter takes a session): pooled connections whose socket goes to the checked address while
# urllib3 keeps the name for Host and SNI.


class _PinnedConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        self._dns_host = pin(name, self.port)
        try:
            return super()._new_conn()
        finally:
            self._dns_host = name


class _PinnedHTTPSConnection(_PinnedConnection, HTTPSConnection):
    pass


class _PinnedPool(HTTPConnectionPool):
    ConnectionCls = _PinnedConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """Keeps the last refusal: callers that swallow exceptions (the OTLP exporter) can still report why."""

    refused: OutboundForbidden | None = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedPool, "https": _PinnedHTTPSPool}

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except OutboundForbidden as exc:
            self.refused = exc
            raise


def requests_session() -> tuple[requests.Session, PinnedAdapter]:
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = MAX_REDIRECTS
    adapter = PinnedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


# aiohttp (the model gateway): the connector checks what it resolved (IP literals too, which skip the resolver)
# and connects to exactly those addresses.


class PinnedConnector(aiohttp.TCPConnector):
    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> list[Any]:
        answers = await super()._resolve_host(host, port, traces=traces)
        check(host, port, [ipaddress.ip_address(a["host"]) for a in answers])
        return answers


# Libraries that cannot be pinned (litellm picks its own HTTP client, follows redirects, and falls back to default
# endpoints such as ollama's http://localhost:11434): every TCP connection made while a call runs under
# ``guarded_connections()`` is checked at the socket's connect, through the interpreter's audit hook. That is the
# address actually connected to, so redirects, retries, default endpoints and a second DNS answer are all covered.
# The guard belongs to the context (a thread, or an asyncio task and what it awaits), so nothing else is slowed.

_GUARD: contextvars.ContextVar[bool] = contextvars.ContextVar("jetty_outbound_guard", default=False)
_HOOK_INSTALLED = False


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _GUARD.get():
        return
    sock, address = args
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        raise OutboundForbidden(f"{CODE}: no unix sockets")
    host, port = str(address[0]), int(address[1])
    ip = ipaddress.ip_address(host.split("%")[0])
    if refusal(ip) is None:
        return
    rules = allowed()
    if any(rule.admits(host, ip, port) for rule in rules) or _named_rule_admits(rules, ip, port):
        return
    check(host, port, [ip])  # raises, naming the address


def _named_rule_admits(rules: Sequence[Allowed], ip: Address, port: int) -> bool:
    """Whether an allow entry given as a host name resolves to this address (at connect time only the address is
    known)."""
    for rule in rules:
        if rule.name is None or (rule.port is not None and rule.port != port):
            continue
        try:
            if ip in resolve(rule.name, port):
                return True
        except OSError:
            continue
    return False


@contextlib.contextmanager
def guarded_connections() -> Iterator[None]:
    """Check every TCP connection this context makes against the policy, at connect time (see above)."""
    global _HOOK_INSTALLED
    if not _HOOK_INSTALLED:
        sys.addaudithook(_on_audit)  # hooks cannot be removed: it does nothing outside a guarded context
        _HOOK_INSTALLED = True
    token = _GUARD.set(True)
    try:
        yield
    finally:
        _GUARD.reset(token)


def refusal_in(exc: BaseException) -> str | None:
    """The policy's refusal a library wrapped into its own error (litellm turns any exception into its own), if
    that is what ended the call."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OutboundForbidden):
            return current.message
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):  # happy eyeballs: one refusal per address tried
            pending += list(current.exceptions)
    text = str(exc)
    start = text.find(f"{CODE}: ")
    return text[start:].split("\n", 1)[0] if start >= 0 else None
