"""The outbound policy (orgs/outbound.py) at unit level: which addresses and URL forms it refuses, that redirects
are re-checked, and that the connection goes to the address that was checked (no DNS rebinding), for each of its
three adapters (httpx, requests, aiohttp)."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import socket
import threading
from collections.abc import Iterator

import aiohttp
import httpx
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from orgs import outbound
from tests.support.servers import RECEIVER_HOST

FORBIDDEN_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
FORBIDDEN_V6 = ["::1/128", "::/128", "fc00::/7", "fe80::/10", "ff00::/8"]


def address_in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    net = ipaddress.ip_network(network)
    return st.integers(0, net.num_addresses - 1).map(lambda i: net[i])


# The tests' own receivers listen on 127.0.0.2, the one address JETTY_OUTBOUND_ALLOW admits here: not drawn.
forbidden_v4 = st.sampled_from(FORBIDDEN_V4).flatmap(address_in).filter(lambda a: str(a) != RECEIVER_HOST)
forbidden_v6 = st.sampled_from(FORBIDDEN_V6).flatmap(address_in)
public_v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address).filter(lambda a: a.is_global and not a.is_multicast)


def embeddings(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """The IPv6 forms that carry an IPv4 address: mapped, NAT64 (both prefixes), 6to4, IPv4-compatible."""
    n = int(v4)
    return [
        ipaddress.IPv6Address(f"::ffff:{v4}"),
        ipaddress.IPv6Address((0x0064FF9B << 96) | n),
        ipaddress.IPv6Address((0x0064FF9B0001 << 80) | n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1),
        ipaddress.IPv6Address(n),
    ]


@given(forbidden_v4)
def test_every_internal_ipv4_address_and_each_ipv6_form_of_it_is_refused(address):
    for form in [address, *embeddings(address)]:
        assert outbound.refusal(form) is not None, form
        with pytest.raises(outbound.OutboundForbidden):
            outbound.check(str(form), 80, [form])


@given(forbidden_v6)
def test_ipv6_loopback_ula_link_local_and_multicast_are_refused(address):
    assert outbound.refusal(address) is not None
    with pytest.raises(outbound.OutboundForbidden):
        outbound.check("example.test", 443, [address])


@given(public_v4)
def test_public_addresses_pass(address):
    assert outbound.refusal(address) is None
    outbound.check("example.test", 443, [address])


@given(public_v4, forbidden_v4)
def test_one_internal_answer_among_public_ones_refuses_the_name(public, internal):
    with pytest.raises(outbound.OutboundForbidden):
        outbound.check("mixed.test", 80, [public, internal])


def test_allow_entries_admit_exactly_what_they_name(settings):
    settings.JETTY_OUTBOUND_ALLOW = ["127.0.0.2:9000", "10.1.0.0/16", "collector.internal", "[::1]:4318"]
    loopback2, ten = ipaddress.ip_address("127.0.0.2"), ipaddress.ip_address("10.1.2.3")
    outbound.check("127.0.0.2", 9000, [loopback2])
    outbound.check("ten.test", 80, [ten])
    outbound.check("collector.internal.", 4318, [ipaddress.ip_address("10.9.9.9")])
    outbound.check("::1", 4318, [ipaddress.ip_address("::1")])
    for host, port, address in [
        ("127.0.0.2", 9001, loopback2),  # another port
        ("127.0.0.1", 9000, ipaddress.ip_address("127.0.0.1")),
        ("other.internal", 80, ipaddress.ip_address("10.9.9.9")),
        ("::1", 80, ipaddress.ip_address("::1")),
    ]:
        with pytest.raises(outbound.OutboundForbidden):
            outbound.check(host, port, [address])


@pytest.mark.parametrize("entry", ["http://x", "10.0.0.0/33", "host:port", "a b", "127.0.0.1:0", "[::1]:99999"])
def test_bad_allow_entries_are_refused_at_startup(entry):
    with pytest.raises(ValueError, match="JETTY_OUTBOUND_ALLOW"):
        outbound.parse_allow([entry])


@pytest.fixture
def resolver(monkeypatch) -> dict[str, list[str]]:
    """Names the tests resolve as they please (the suite runs offline); everything else as the system does."""
    names: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        key = str(host).rstrip(".").lower()
        if key in names:
            answer = names[key].pop(0) if len(names[key]) > 1 else names[key][0]
            family = socket.AF_INET6 if ":" in answer else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answer, port or 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


class Server:
    """A tiny HTTP server on one address; it counts requests, answers `secret` or redirects where told."""

    def __init__(self, host: str, port: int = 0, redirect: str | None = None) -> None:
        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                if redirect:
                    self.send_response(302)
                    self.send_header("Location", redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f"secret from {host}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inner() -> Iterator[Server]:
    """An internal service on 127.0.0.1, what an attacker wants to read."""
    server = Server("127.0.0.1")
    yield server
    server.stop()


def forms_of_loopback(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://017700000001:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::1]:{port}/",
        f"http://localhost:{port}/",
        f"http://LOCALHOST.:{port}/",
        f"http://a@127.0.0.1:{port}/",
        f"http://user:pw@localhost:{port}/",
        f"http://inward.test:{port}/",
        f"http://inward.test.:{port}/",
    ]


def test_every_form_of_a_loopback_url_is_refused_before_any_byte_is_sent(inner, resolver):
    resolver["inward.test"] = ["127.0.0.1"]
    resolver["localhost"] = ["127.0.0.1"]
    for url in forms_of_loopback(inner.port):
        with pytest.raises(outbound.OutboundForbidden):
            outbound.check_url(url)
        with pytest.raises(outbound.OutboundForbidden):
            outbound.fetch("GET", url, timeout=5)
        session, _ = outbound.requests_session()
        with pytest.raises(outbound.OutboundForbidden):
            session.get(url, timeout=5)
    assert inner.hits == 0


def test_an_allowed_receiver_is_reached_and_its_answer_capped(settings):
    settings.JETTY_OUTBOUND_ALLOW = [RECEIVER_HOST]
    receiver = Server(RECEIVER_HOST)
    try:
        reply = outbound.fetch("GET", f"http://{RECEIVER_HOST}:{receiver.port}/", timeout=5, max_bytes=6)
        assert reply.status == 200 and reply.content == b"secret" and reply.truncated
        session, _ = outbound.requests_session()
        assert session.get(f"http://{RECEIVER_HOST}:{receiver.port}/", timeout=5).text.startswith("secret from")
    finally:
        receiver.stop()


def test_a_redirect_from_an_allowed_receiver_to_loopback_is_refused(settings, inner):
    settings.JETTY_OUTBOUND_ALLOW = [RECEIVER_HOST]
    hop = Server(RECEIVER_HOST, redirect=f"http://127.0.0.1:{inner.port}/")
    try:
        with pytest.raises(outbound.OutboundForbidden):
            outbound.fetch("GET", f"http://{RECEIVER_HOST}:{hop.port}/", timeout=5, follow_redirects=True)
        session, _ = outbound.requests_session()
        with pytest.raises(outbound.OutboundForbidden):
            session.get(f"http://{RECEIVER_HOST}:{hop.port}/", timeout=5)
        assert hop.hits == 2 and inner.hits == 0
    finally:
        hop.stop()


@pytest.fixture
def twins(settings, inner) -> Iterator[Server]:
    """An allowed receiver on the same port as the internal service, on the suite's receiver address."""
    settings.JETTY_OUTBOUND_ALLOW = [RECEIVER_HOST]
    receiver = Server(RECEIVER_HOST, inner.port)
    yield receiver
    receiver.stop()


def test_dns_rebinding_cannot_move_a_checked_name_inward(resolver, inner, twins):
    """The name answers the allowed address first and loopback on every later lookup: a client that resolved
    again to connect would reach the internal service. Each adapter connects to what it checked."""
    url = f"http://rebind.test:{inner.port}/"
    resolver["rebind.test"] = [RECEIVER_HOST, "127.0.0.1"]
    assert outbound.fetch("GET", url, timeout=5).content == f"secret from {RECEIVER_HOST}".encode()
    resolver["rebind.test"] = [RECEIVER_HOST, "127.0.0.1"]
    session, _ = outbound.requests_session()
    assert session.get(url, timeout=5).text == f"secret from {RECEIVER_HOST}"
    assert inner.hits == 0 and twins.hits == 2
    # Once the name answers loopback first, it is refused.
    resolver["rebind.test"] = ["127.0.0.1"]
    with pytest.raises(outbound.OutboundForbidden):
        outbound.fetch("GET", url, timeout=5)
    with pytest.raises(outbound.OutboundForbidden):
        requests_session_get(url)
    assert inner.hits == 0


def requests_session_get(url: str) -> requests.Response:
    session, _ = outbound.requests_session()
    return session.get(url, timeout=5)


def test_the_gateway_connector_refuses_internal_bases_and_reaches_allowed_ones(settings, inner, twins, resolver):
    resolver["inward.test"] = ["127.0.0.1"]

    async def get(url: str) -> str:
        async with aiohttp.ClientSession(connector=outbound.PinnedConnector()) as session:
            async with session.get(url) as response:
                return await response.text()

    for url in (f"http://127.0.0.1:{inner.port}/", f"http://inward.test:{inner.port}/", f"http://[::1]:{inner.port}/"):
        with pytest.raises(outbound.OutboundForbidden):
            asyncio.run(get(url))
    assert asyncio.run(get(f"http://{RECEIVER_HOST}:{inner.port}/")) == f"secret from {RECEIVER_HOST}"
    assert inner.hits == 0


def test_unix_sockets_and_other_schemes_are_refused():
    for url in ("ftp://example.test/x", "file:///etc/passwd", "http:///nohost", "gopher://127.0.0.1:25/"):
        with pytest.raises(outbound.OutboundForbidden):
            outbound.check_url(url)
    with pytest.raises((outbound.OutboundForbidden, httpx.UnsupportedProtocol)):
        outbound.fetch("GET", "ftp://example.test/x", timeout=1)
