"""The opening handshake: the RFC's accept key, every way a request can be refused and
with which status, subprotocol and extension negotiation, and the client's checks."""

from __future__ import annotations

import pytest

from ioreactor.codec.websocket_deflate import DeflateConfig, DeflateParameters
from ioreactor.codec.websocket_handshake import (
    Handshake,
    HandshakeError,
    ResponseHead,
    UpgradeRequest,
    accept,
    accept_key,
    check_response,
    client_request,
    error_response,
    new_key,
    parse_request_head,
    parse_response_head,
    select_subprotocol,
    validate_upgrade_request,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key(RFC_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_new_keys_are_16_random_bytes() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert len(first) == 24 and first.endswith("==")


def head(*fields: str, request_line: str = "GET /chat HTTP/1.1") -> bytes:
    return "\r\n".join([request_line, *fields]).encode()


VALID = (
    "Host: server.example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {RFC_KEY}",
    "Sec-WebSocket-Version: 13",
)


def validate(raw: bytes) -> UpgradeRequest:
    parsed = parse_request_head(raw)
    return validate_upgrade_request(parsed.method, parsed.version, parsed.headers, parsed.target)


def test_the_rfc_request_is_valid() -> None:
    request = validate(
        head(
            *VALID,
            "Origin: http://example.com",
            "Sec-WebSocket-Protocol: chat, superchat",
        )
    )
    assert request.key == RFC_KEY
    assert request.target == "/chat"
    assert request.subprotocols == ("chat", "superchat")
    response, agreed = accept(request, subprotocols=["superchat", "chat"])
    assert agreed == Handshake("superchat", None)
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: superchat\r\n"
        b"\r\n"
    )


def test_token_lists_and_case_are_read_as_http_says() -> None:
    request = validate(
        head(
            "host: h",
            "UPGRADE: WebSocket",
            "Connection: keep-alive, upgrade",
            f"sec-websocket-key:{RFC_KEY}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: a",
            "Sec-WebSocket-Protocol: b ,c",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        )
    )
    assert request.subprotocols == ("a", "b", "c")
    _, agreed = accept(request, deflate=DeflateConfig())
    assert agreed.deflate == DeflateParameters(server_max_window_bits=12, client_max_window_bits=12)


def without(name: str) -> tuple[str, ...]:
    return tuple(f for f in VALID if not f.lower().startswith(name.lower() + ":"))


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (head(*VALID, request_line="POST /chat HTTP/1.1"), 405, "not GET"),
        (head(*VALID, request_line="GET /chat HTTP/1.0"), 400, "1.1 needed"),
        (head(*without("Host")), 400, "one Host"),
        (head(*VALID, "Host: again"), 400, "one Host"),
        (head(*without("Upgrade")), 426, "Upgrade: websocket"),
        (head(*without("Upgrade"), "Upgrade: h2c"), 426, "Upgrade: websocket"),
        (head(*without("Connection")), 426, "Connection"),
        (head(*without("Connection"), "Connection: keep-alive"), 426, "Connection"),
        (head(*without("Sec-WebSocket-Version")), 426, "13 needed"),
        (head(*without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"), 426, "13 needed"),
        (head(*VALID, "Sec-WebSocket-Version: 13"), 426, "13 needed"),
        (head(*without("Sec-WebSocket-Key")), 400, "one Sec-WebSocket-Key"),
        (head(*VALID, f"Sec-WebSocket-Key: {RFC_KEY}"), 400, "one Sec-WebSocket-Key"),
        (head(*without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: c2hvcnQ="), 400, "16 bytes"),
        (
            head(*without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: !!notbase64!!!!!!!!!!!=="),
            400,
            "16 bytes",
        ),
        (head(*VALID, "Sec-WebSocket-Protocol: a b"), 400, "not a token"),
        (head(*VALID, 'Sec-WebSocket-Extensions: permessage-deflate; x="1'), 400, "unterminated"),
    ],
)
def test_refused_requests(raw: bytes, status: int, message: str) -> None:
    with pytest.raises(HandshakeError, match=message) as info:
        validate(raw)
    assert info.value.status == status


def test_426_names_the_version_and_upgrade() -> None:
    with pytest.raises(HandshakeError) as info:
        validate(head(*without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"))
    response = error_response(info.value)
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 426 Upgrade Required"
    parsed = parse_response_head(response.split(b"\r\n\r\n")[0])
    fields = {name.lower(): value for name, value in parsed.headers}
    assert fields[b"sec-websocket-version"] == b"13"
    assert fields[b"upgrade"] == b"websocket"
    assert fields[b"connection"] == b"close"
    body = response.split(b"\r\n\r\n", 1)[1]
    assert int(fields[b"content-length"]) == len(body)
    assert b"13 needed" in body


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"GET / HTTP/1.1\r\n folded: x", "malformed header"),
        (b"GET / HTTP/1.1\r\nName : x", "malformed header"),
        (b"GET / HTTP/1.1\r\nNa me: x", "malformed header"),
        (b"GET / HTTP/1.1\r\nName: x\ny: z", "malformed header"),
        (b"GET / HTTP/1.1\r\nName: a\x00b", "malformed header"),
        (b"GET / HTTP/1.1\nHost: x", "malformed request line"),
        (b"GET  / HTTP/1.1", "malformed request line"),
        (b"GET / HTTP/11", "malformed request line"),
        (b"GET /\x7f HTTP/1.1", "malformed request line"),
    ],
)
def test_strict_head_parsing(raw: bytes, message: str) -> None:
    with pytest.raises(HandshakeError, match=message) as info:
        parse_request_head(raw)
    assert info.value.status == 400


def test_too_many_header_fields_is_431() -> None:
    raw = head(*VALID, *[f"X-{i}: {i}" for i in range(100)])
    with pytest.raises(HandshakeError) as info:
        parse_request_head(raw)
    assert info.value.status == 431


def test_field_values_keep_inner_spaces_and_lose_outer_ones() -> None:
    parsed = parse_request_head(b"GET / HTTP/1.1\r\nX:  a  b \t\r\nY:")
    assert parsed.headers == [(b"X", b"a  b"), (b"Y", b"")]


@pytest.mark.parametrize(
    ("offered", "supported", "chosen"),
    [
        (["chat", "superchat"], ["superchat", "chat"], "superchat"),
        (["chat"], ["superchat"], None),
        ([], ["chat"], None),
        (["chat"], [], None),
    ],
)
def test_select_subprotocol_by_server_preference(
    offered: list[str], supported: list[str], chosen: str | None
) -> None:
    assert select_subprotocol(offered, supported) == chosen


def test_extra_headers_are_checked() -> None:
    request = validate(head(*VALID))
    response, _ = accept(request, extra_headers=[("X-Served-By", "ioreactor")])
    assert b"X-Served-By: ioreactor\r\n\r\n" in response
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        accept(request, extra_headers=[("X-Evil", "a\r\nSet-Cookie: x")])


# -- the client side ---------------------------------------------------------------------


def test_client_request_is_a_valid_upgrade() -> None:
    key = new_key()
    raw = client_request(
        "example.com:8080", "/ws?x=1", key=key, subprotocols=["a", "b"], deflate=DeflateConfig()
    )
    assert raw.endswith(b"\r\n\r\n")
    request = validate(raw[:-4])
    assert request.key == key and request.target == "/ws?x=1"
    assert request.subprotocols == ("a", "b")
    response, agreed = accept(request, subprotocols=["b"], deflate=DeflateConfig())
    parsed = parse_response_head(response[:-4])
    assert (
        check_response(parsed, key=key, subprotocols=["a", "b"], deflate=DeflateConfig()) == agreed
    )
    assert agreed.subprotocol == "b" and agreed.deflate is not None


def response_head(*fields: str, status: str = "101 Switching Protocols") -> ResponseHead:
    return parse_response_head("\r\n".join([f"HTTP/1.1 {status}", *fields]).encode())


GOOD_RESPONSE = (
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
)


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (GOOD_RESPONSE, "403 Forbidden", "answered 403"),
        (GOOD_RESPONSE[1:], "101 Switching Protocols", "Upgrade"),
        (GOOD_RESPONSE[::2], "101 Switching Protocols", "Connection"),
        ((*GOOD_RESPONSE[:2], "Sec-WebSocket-Accept: AAAA"), "101 OK", "does not match"),
        ((*GOOD_RESPONSE, "Sec-WebSocket-Protocol: other"), "101 OK", "not offered"),
        ((*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat, chat2"), "101 OK", "not offered"),
        (
            (*GOOD_RESPONSE, "Sec-WebSocket-Extensions: permessage-deflate"),
            "101 OK",
            "not offered",
        ),
    ],
)
def test_client_refuses_bad_responses(fields: tuple[str, ...], status: str, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        check_response(response_head(*fields, status=status), key=RFC_KEY, subprotocols=["chat"])


def test_client_accepts_a_good_response() -> None:
    agreed = check_response(
        response_head(*GOOD_RESPONSE, "Sec-WebSocket-Protocol: chat"),
        key=RFC_KEY,
        subprotocols=["chat"],
    )
    assert agreed == Handshake("chat", None)
