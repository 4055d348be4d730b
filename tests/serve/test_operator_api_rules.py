"""The operator API's request rules that need no stack: which address a request comes
from (the per-IP limit and the allow-list key on it), its request id, and integer query
parameters. The same rules are exercised over HTTP in ``test_operator_e2e.py``."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from serve.operator_api import ApiError, _client_ip, _int_query, _request_id


def _request(headers: dict[str, str] | None = None, query: str = "", peer: str = "10.1.2.3") -> Request:
    return Request({
        "type": "http", "method": "GET", "path": "/api/rounds/results", "query_string": query.encode("latin-1"),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": (peer, 40000),
    })


def test_the_peer_is_the_client_unless_forwarded_for_is_trusted() -> None:
    forwarded = _request({"X-Forwarded-For": "198.51.100.7"})
    assert _client_ip(forwarded, trust_forwarded_for=False) == "10.1.2.3"
    assert _client_ip(forwarded, trust_forwarded_for=True) == "198.51.100.7"
    assert _client_ip(_request(), trust_forwarded_for=True) == "10.1.2.3"


@pytest.mark.parametrize(("header", "client"), [
    ("203.0.113.5, 198.51.100.7", "198.51.100.7"),  # the client wrote the first, the proxy appended the last
    ("203.0.113.5,198.51.100.7 ", "198.51.100.7"),
    ("a, b, c, 2001:db8::1", "2001:db8::1"),
    ("198.51.100.7,", "10.1.2.3"),  # nothing appended: the peer, not an empty address
    ("", "10.1.2.3"),
])
def test_the_address_the_trusted_proxy_saw_counts_not_what_the_client_claims(header: str, client: str) -> None:
    assert _client_ip(_request({"X-Forwarded-For": header}), trust_forwarded_for=True) == client


def test_the_request_id_is_the_proxys_when_it_is_sane() -> None:
    assert _request_id(_request({"X-Request-Id": "f80e5013-43d8-4f3b-b906-2195cb671e36"})) == (
        "f80e5013-43d8-4f3b-b906-2195cb671e36")
    for bad in ("", "short", "x" * 129, "has space in it", '"quoted";injected'):
        made = _request_id(_request({"X-Request-Id": bad}))
        assert made != bad and len(made) == 32 and int(made, 16) >= 0
    assert _request_id(_request()) != _request_id(_request())


@pytest.mark.parametrize("raw", ["7", "1", "100"])
def test_an_integer_query_in_range_is_read(raw: str) -> None:
    assert _int_query(_request(query=f"limit={raw}"), "limit", 20, 1, 100) == int(raw)


@pytest.mark.parametrize("raw", [
    "0", "101", "-1", "abc", "1.5", "", "%20 5", "%C2%B2", "%D9%A1%D9%A2",  # "²" and Arabic-Indic "12"
    "9" * 5000,  # more digits than int() converts
])
def test_a_bad_integer_query_is_a_400_not_a_500(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        _int_query(_request(query=f"limit={raw}"), "limit", 20, 1, 100)
    assert caught.value.status == 400 and caught.value.code == "invalid_request"


def test_an_absent_integer_query_is_its_default() -> None:
    assert _int_query(_request(), "limit", 20, 1, 100) == 20
