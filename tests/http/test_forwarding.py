"""Trusted forwarding headers: believed from the trusted peers only, read from the right."""

from __future__ import annotations

import pytest

from ioreactor.http.forwarding import Forwarded, ForwardedHeaders
from ioreactor.http.headers import Headers
from ioreactor.net.proxy_protocol import ProxyTrust

PROXY = ("10.0.0.2", 40000)
TRUST = ForwardedHeaders(ProxyTrust("10.0.0.0/24"))


def resolve(peer: tuple[str, int], *fields: tuple[str, str]) -> Forwarded | None:
    return TRUST.resolve(peer, Headers([(n.encode(), v.encode()) for n, v in fields]))


def test_an_untrusted_peer_is_not_believed() -> None:
    assert resolve(("192.0.2.9", 5555), ("X-Forwarded-For", "203.0.113.1")) is None


def test_a_trusted_peer_without_headers_says_nothing() -> None:
    assert resolve(PROXY) is None


def test_x_forwarded_for_and_proto_from_the_trusted_proxy() -> None:
    said = resolve(PROXY, ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "HTTPS"))
    assert said == Forwarded("203.0.113.7", 0, "https")
    assert said.peer(PROXY) == ("203.0.113.7", 0)


def test_a_chain_is_read_from_the_right_skipping_trusted_hops() -> None:
    # The client claims 198.51.100.1; the edge proxy saw 203.0.113.7; an inner trusted
    # proxy (10.0.0.5) passed it on: the client is the first untrusted from the right.
    chain = "198.51.100.1, 203.0.113.7, 10.0.0.5"
    assert resolve(PROXY, ("X-Forwarded-For", chain)) == Forwarded("203.0.113.7")
    # Repeated fields are one list.
    fields = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "10.0.0.9")]
    assert resolve(PROXY, *fields) == Forwarded("198.51.100.1")


def test_forwarded_wins_and_gives_ipv6_ports_and_proto() -> None:
    said = resolve(
        PROXY,
        ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.2'),
        ("X-Forwarded-For", "203.0.113.7"),
    )
    assert said == Forwarded("2001:db8:cafe::17", 4711, "https")
    assert said is not None and said.peer(PROXY) == ("2001:db8:cafe::17", 4711, 0, 0)


@pytest.mark.parametrize(
    "value", ["unknown", "_hidden", "not an address", "999.1.1.1", "for=;", ""]
)
def test_unusable_addresses_keep_the_peer(value: str) -> None:
    said = resolve(PROXY, ("X-Forwarded-For", value))
    assert said is None or said.client is None
    assert said is None or said.peer(PROXY) == PROXY


def test_an_unknown_scheme_is_ignored() -> None:
    assert resolve(PROXY, ("X-Forwarded-Proto", "gopher")) == Forwarded(None, 0, None)
