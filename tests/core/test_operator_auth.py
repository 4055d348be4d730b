"""``core.operator_auth``: request signatures, bearer tokens, key derivation, sealed client
secrets and IP allow-lists."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import warnings

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import (
    AuthenticationError,
    AuthError,
    ConfigError,
    CredentialError,
    CredentialKeyError,
    CredentialUnreadableError,
    ForbiddenError,
    SignatureError,
    TokenError,
)
from core.operator_auth import (
    CREDENTIAL_SEAL_VERSION,
    PURPOSE_CREDENTIALS,
    PURPOSE_SEEDS,
    PURPOSE_TOKENS,
    Claims,
    CredentialVault,
    TokenIssuer,
    check_ip,
    check_signature,
    derive_key,
    ip_allowed,
    new_client_id,
    new_client_secret,
    parse_allow_list,
    parse_bearer,
    request_fingerprint,
    require_operator,
    signature,
    verify_client_secret,
)

SECRET = b"test-secret-0123456789"
TS = "1700000000"
NOW = 1_700_000_000.0
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

# Computed outside Python with
#   printf '%s' '<message>' | openssl dgst -sha256 -hmac 'test-secret-0123456789'
VECTORS = [
    ("POST", "/v1/bets?currency=EUR&x=1", b'{"stake":"1.00"}',
     "dca6480a19062df92f3378d591c5aca31116c43b6bb82f6bd8378f95839bc8c5"),
    ("GET", "/v1/rounds/r-1", b"",
     "83396299e91c15ed60225dd2cf752108d832e42cf00d84745b230f23a3fb8048"),
    ("POST", "/v1/x", b"\x00\xff\xfe",  # raw bytes, not text
     "c74015b0722e96c1c4452a0bb77da967ee8225544f123b4136e5f8ccd1b732c4"),
]


def _code(exc: pytest.ExceptionInfo[AuthError]) -> str:
    return exc.value.code


# -- signatures -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "expected"), VECTORS)
def test_signature_matches_openssl_vectors(method: str, path: str, body: bytes, expected: str) -> None:
    assert signature(SECRET, TS, method, path, body) == expected
    # The method is upper-cased, as HTTP methods are.
    assert signature(SECRET, TS, method.lower(), path, body) == expected


@given(st.binary(max_size=200), st.text(max_size=40))
@settings(max_examples=50)
def test_signature_is_hmac_sha256_of_the_documented_message(body: bytes, path: str) -> None:
    message = TS.encode() + b".PUT." + path.encode() + b"." + body
    assert signature(SECRET, TS, "put", path, body) == hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def test_good_signature_passes_and_returns_the_timestamp() -> None:
    method, path, body, sig = VECTORS[0]
    assert check_signature(SECRET, TS, method, path, body, sig, now=NOW) == 1_700_000_000
    # Hex case does not matter.
    assert check_signature(SECRET, TS, method, path, body, sig.upper(), now=NOW) == 1_700_000_000


@pytest.mark.parametrize("offset", [-120, -119.5, 0, 119, 120])
def test_window_edges_inside(offset: float) -> None:
    method, path, body, sig = VECTORS[0]
    check_signature(SECRET, TS, method, path, body, sig, now=NOW + offset)


@pytest.mark.parametrize("offset", [-121, -120.001, 120.001, 121, 10_000])
def test_window_edges_outside(offset: float) -> None:
    method, path, body, sig = VECTORS[0]
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, TS, method, path, body, sig, now=NOW + offset)
    assert _code(exc) == "stale_timestamp"
    assert exc.value.http_status == 401


def test_window_is_configurable() -> None:
    method, path, body, sig = VECTORS[0]
    check_signature(SECRET, TS, method, path, body, sig, now=NOW + 300, window_s=300)
    with pytest.raises(SignatureError):
        check_signature(SECRET, TS, method, path, body, sig, now=NOW + 31, window_s=30)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("method", "PUT"),
        ("path", "/v1/bets?currency=EUR&x=2"),
        ("path", "/v1/bets?x=1&currency=EUR"),  # re-ordered query: not the request as sent
        ("body", b'{"stake":"1.01"}'),
        ("body", b'{"stake":"1.00"} '),
        ("secret", b"another-secret"),
        ("timestamp", "1700000001"),
    ],
)
def test_any_tampering_is_a_bad_signature(change: str, value: object) -> None:
    method, path, body, sig = VECTORS[0]
    args = {"secret": SECRET, "timestamp": TS, "method": method, "path": path, "body": body}
    args[change] = value  # type: ignore[assignment]
    with pytest.raises(SignatureError) as exc:
        check_signature(
            args["secret"], args["timestamp"], args["method"], args["path"], args["body"], sig,  # type: ignore[arg-type]
            now=NOW,
        )
    assert _code(exc) == "bad_signature"


@pytest.mark.parametrize("header", ["abc", "z" * 64, VECTORS[0][3][:-1], VECTORS[0][3] + "0", "é" * 64])
def test_malformed_signature_header(header: str) -> None:
    method, path, body, _ = VECTORS[0]
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, TS, method, path, body, header, now=NOW)
    assert _code(exc) == "bad_signature"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature(header: str | None) -> None:
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, TS, "GET", "/", b"", header, now=NOW)
    assert _code(exc) == "missing_signature"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_timestamp(header: str | None) -> None:
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, header, "GET", "/", b"", "0" * 64, now=NOW)
    assert _code(exc) == "missing_timestamp"


@pytest.mark.parametrize(
    "header", ["1700000000.5", "-1700000000", "+1700000000", " 1700000000", "1_700_000_000", "17e8", "١٧٠٠٠٠٠٠٠٠", "1" * 13]
)
def test_bad_timestamp(header: str) -> None:
    # Signed over that very header text, so only the timestamp check can refuse it.
    sig = signature(SECRET, header, "GET", "/", b"")
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, header, "GET", "/", b"", sig, now=NOW)
    assert _code(exc) == "bad_timestamp"


def test_error_messages_do_not_leak_the_expected_signature() -> None:
    method, path, _body, sig = VECTORS[0]
    with pytest.raises(SignatureError) as exc:
        check_signature(SECRET, TS, method, path, b"other", sig, now=NOW)
    expected = signature(SECRET, TS, method, path, b"other")
    assert expected not in str(exc.value)
    assert SECRET.decode() not in str(exc.value)


def test_request_fingerprint() -> None:
    base = request_fingerprint("POST", "/v1/bets", b"{}")
    assert len(base) == 32
    assert request_fingerprint("post", "/v1/bets", b"{}") == base
    assert request_fingerprint("POST", "/v1/bets", b"{} ") != base
    assert request_fingerprint("POST", "/v1/bet", b"s{}") != base  # no ambiguity across parts
    assert request_fingerprint("PUT", "/v1/bets", b"{}") != base


# -- bearer tokens --------------------------------------------------------------------


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(KEY, ttl_s=900)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_issue_and_verify(issuer: TokenIssuer) -> None:
    token, expires_in = issuer.issue("op-1", now=NOW)
    assert expires_in == 900
    claims = issuer.verify(token, now=NOW + 899.9)
    assert claims == Claims(operator_id="op-1", expires_at=1_700_000_900, jti=claims.jti)
    assert claims.jti
    payload = jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False})
    assert payload["iss"] == "ray-rgs"
    assert payload["iat"] == 1_700_000_000
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    # Every token is unique.
    assert issuer.issue("op-1", now=NOW)[0] != token


def test_expiry_is_exact_with_no_leeway(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("op-1", now=NOW)
    with pytest.raises(TokenError) as exc:
        issuer.verify(token, now=NOW + 900)
    assert _code(exc) == "expired_token"
    assert exc.value.http_status == 401


def test_ttl_is_configurable() -> None:
    short = TokenIssuer(KEY, ttl_s=60)
    token, expires_in = short.issue("op-1", now=NOW)
    assert expires_in == 60
    short.verify(token, now=NOW + 59)
    with pytest.raises(TokenError):
        short.verify(token, now=NOW + 60)


def test_token_of_another_key_is_invalid_even_when_expired(issuer: TokenIssuer) -> None:
    forged, _ = TokenIssuer(OTHER_KEY).issue("op-1", now=NOW - 10_000)
    with pytest.raises(TokenError) as exc:
        issuer.verify(forged, now=NOW)
    assert _code(exc) == "invalid_token"


def test_alg_none_is_refused(issuer: TokenIssuer) -> None:
    claims = {"sub": "op-1", "iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs", "jti": "x"}
    for alg in ("none", "None", "NONE"):
        token = _b64({"alg": alg, "typ": "JWT"}) + "." + _b64(claims) + "."
        with pytest.raises(TokenError) as exc:
            issuer.verify(token, now=NOW)
        assert _code(exc) == "invalid_token"


def test_other_hmac_algorithms_are_refused(issuer: TokenIssuer) -> None:
    claims = {"sub": "op-1", "iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs", "jti": "x"}
    for alg in ("HS384", "HS512"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyJWT warns that 32 bytes are short for these
            token = jwt.encode(claims, KEY, algorithm=alg)
        with pytest.raises(TokenError) as exc:
            issuer.verify(token, now=NOW)
        assert _code(exc) == "invalid_token"


def test_wrong_issuer_is_refused(issuer: TokenIssuer) -> None:
    token, _ = TokenIssuer(KEY, issuer="someone-else").issue("op-1", now=NOW)
    with pytest.raises(TokenError) as exc:
        issuer.verify(token, now=NOW)
    assert _code(exc) == "invalid_token"


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs", "jti": "x"},  # no sub
        {"sub": "op-1", "iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs"},  # no jti
        {"sub": "op-1", "iat": 1_700_000_000, "iss": "ray-rgs", "jti": "x"},  # no exp
        {"sub": 7, "iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs", "jti": "x"},
        {"sub": "", "iat": 1_700_000_000, "exp": 1_700_000_900, "iss": "ray-rgs", "jti": "x"},
        {"sub": "op-1", "iat": 1_700_000_000, "exp": "1700000900", "iss": "ray-rgs", "jti": "x"},
        {"sub": "op-1", "iat": 1_700_000_000, "exp": 1_700_000_900.5, "iss": "ray-rgs", "jti": "x"},
        {"sub": "op-1", "iat": 1_700_000_000, "exp": True, "iss": "ray-rgs", "jti": "x"},
    ],
)
def test_missing_or_mistyped_claims_are_invalid(issuer: TokenIssuer, claims: dict[str, object]) -> None:
    token = jwt.encode(claims, KEY, algorithm="HS256")
    with pytest.raises(TokenError) as exc:
        issuer.verify(token, now=NOW)
    assert _code(exc) == "invalid_token"


@pytest.mark.parametrize("garbage", ["x", "a.b.c", "...", "eyJ.eyJ.sig", "a" * 5000, "\x00\x01"])
def test_garbage_tokens_are_invalid(issuer: TokenIssuer, garbage: str) -> None:
    with pytest.raises(TokenError) as exc:
        issuer.verify(garbage, now=NOW)
    assert _code(exc) == "invalid_token"


def test_tampered_payload_is_invalid(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("op-1", now=NOW)
    header, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "op-2"
    with pytest.raises(TokenError) as exc:
        issuer.verify(f"{header}.{_b64(claims)}.{sig}", now=NOW)
    assert _code(exc) == "invalid_token"


def test_empty_token_is_missing(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenError) as exc:
        issuer.verify("", now=NOW)
    assert _code(exc) == "missing_token"


def test_issuer_validates_its_settings() -> None:
    with pytest.raises(CredentialKeyError):
        TokenIssuer(b"short")
    with pytest.raises(ConfigError):
        TokenIssuer(KEY, ttl_s=0)
    with pytest.raises(ConfigError):
        TokenIssuer(KEY, ttl_s=True)  # type: ignore[arg-type]
    with pytest.raises(CredentialError):
        TokenIssuer(KEY).issue("", now=NOW)
    assert "00010203" not in repr(TokenIssuer(KEY))


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc.def.ghi") == "abc.def.ghi"
    assert parse_bearer("bearer  abc.def-_~+/=") == "abc.def-_~+/="
    for header in (None, "", "   ", "Bearer", "Bearer   "):
        with pytest.raises(TokenError) as exc:
            parse_bearer(header)
        assert _code(exc) == "missing_token"
    for header in ("Basic dXNlcjpwYXNz", "Token abc", "Bearer a b", "Bearer a\x00b", "abc.def.ghi"):
        with pytest.raises(TokenError) as exc:
            parse_bearer(header)
        assert _code(exc) == "invalid_token"


def test_require_operator() -> None:
    require_operator("op-1", "op-1")
    with pytest.raises(ForbiddenError) as exc:
        require_operator("op-1", "op-2")
    assert _code(exc) == "wrong_operator"
    assert exc.value.http_status == 403


# -- keys and client secrets ----------------------------------------------------------


def _hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 written out, with no salt (a string of HashLen zeros)."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_derive_key_is_rfc5869_hkdf_sha256() -> None:
    master = bytes.fromhex("ab" * 32)
    for purpose in (PURPOSE_SEEDS, PURPOSE_CREDENTIALS, PURPOSE_TOKENS, "x"):
        assert derive_key(master, purpose) == _hkdf_sha256(master, purpose.encode())


def test_derived_keys_are_separate_per_purpose_and_master() -> None:
    master = bytes(range(32))
    keys = {derive_key(master, p) for p in (PURPOSE_SEEDS, PURPOSE_CREDENTIALS, PURPOSE_TOKENS)}
    assert len(keys) == 3
    assert master not in keys
    assert derive_key(OTHER_KEY, PURPOSE_TOKENS) != derive_key(master, PURPOSE_TOKENS)
    assert all(len(k) == 32 for k in keys)


def test_derive_key_refuses_weak_input() -> None:
    with pytest.raises(CredentialKeyError):
        derive_key(b"\x00" * 31, PURPOSE_TOKENS)
    with pytest.raises(ConfigError):  # CredentialKeyError is also a ConfigError
        derive_key(b"\x00" * 32, "")
    with pytest.raises(CredentialKeyError):
        derive_key("ab" * 32, PURPOSE_TOKENS)  # type: ignore[arg-type]


def test_client_id_and_secret_shapes() -> None:
    secrets_ = {new_client_secret() for _ in range(50)}
    assert len(secrets_) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", s) for s in secrets_)
    ids = {new_client_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"rgs_[0-9a-f]{32}", i) for i in ids)


def test_verify_client_secret() -> None:
    secret = new_client_secret()
    verify_client_secret(secret.encode(), secret)
    for wrong in (None, "", secret[:-1], secret + "x", new_client_secret()):
        with pytest.raises(AuthenticationError) as exc:
            verify_client_secret(secret.encode(), wrong)
        assert _code(exc) == "invalid_client"


@pytest.fixture
def vault() -> CredentialVault:
    return CredentialVault(KEY)


def test_vault_round_trip_and_format(vault: CredentialVault) -> None:
    secret = new_client_secret().encode()
    blob = vault.seal(secret, "op-1")
    assert blob[0] == CREDENTIAL_SEAL_VERSION
    assert len(blob) == 1 + 12 + len(secret) + 16
    assert secret not in blob
    assert vault.open(blob, "op-1") == secret
    assert vault.seal(secret, "op-1") != blob  # fresh nonce
    assert "00010203" not in repr(vault)


def test_vault_refuses_another_operator_key_or_tampering(vault: CredentialVault) -> None:
    blob = vault.seal(b"s3cret", "op-1")
    with pytest.raises(CredentialUnreadableError):
        vault.open(blob, "op-2")
    with pytest.raises(CredentialUnreadableError):
        CredentialVault(OTHER_KEY).open(blob, "op-1")
    for i in range(len(blob)):
        altered = bytearray(blob)
        altered[i] ^= 0x01
        with pytest.raises(CredentialUnreadableError):
            vault.open(bytes(altered), "op-1")
    for bad in (b"", blob[:-1], blob[:20], b"\x02" + blob[1:], "text"):
        with pytest.raises(CredentialUnreadableError):
            vault.open(bad, "op-1")  # type: ignore[arg-type]


def test_vault_messages_hold_no_secret(vault: CredentialVault) -> None:
    blob = vault.seal(b"very-secret-value", "op-1")
    with pytest.raises(CredentialUnreadableError) as exc:
        vault.open(blob, "op-2")
    assert "very-secret" not in str(exc.value)
    assert blob.hex() not in str(exc.value)


def test_vault_validates_inputs(vault: CredentialVault) -> None:
    with pytest.raises(CredentialKeyError):
        CredentialVault(b"\x00" * 16)
    with pytest.raises(CredentialError):
        vault.seal(b"", "op-1")
    with pytest.raises(CredentialError):
        vault.seal(b"x", "")
    with pytest.raises(CredentialError):
        vault.seal(b"x", "o" * 65)


# -- IP allow-lists -------------------------------------------------------------------


def test_empty_allow_list_allows_everyone() -> None:
    assert ip_allowed("203.0.113.9", [])
    assert ip_allowed("not an ip", ())
    check_ip("2001:db8::1", [])


def test_ipv4_cidrs_and_single_addresses() -> None:
    allow = ["10.0.0.0/8", "192.0.2.7", "198.51.100.0/24"]
    assert ip_allowed("10.255.255.255", allow)
    assert ip_allowed("10.0.0.0", allow)
    assert not ip_allowed("11.0.0.0", allow)
    assert ip_allowed("192.0.2.7", allow)
    assert not ip_allowed("192.0.2.8", allow)
    assert ip_allowed("198.51.100.255", allow)
    assert not ip_allowed("198.51.101.0", allow)
    with pytest.raises(ForbiddenError) as exc:
        check_ip("11.0.0.1", allow)
    assert exc.value.code == "ip_not_allowed"
    assert exc.value.http_status == 403


def test_ipv6_and_mixed_versions() -> None:
    allow = ["2001:db8::/32", "fe80::1", "192.0.2.0/24"]
    assert ip_allowed("2001:db8:ffff::1", allow)
    assert ip_allowed("2001:DB8::", allow)
    assert not ip_allowed("2001:db9::1", allow)
    assert ip_allowed("fe80::1", allow)
    assert not ip_allowed("fe80::2", allow)
    # An IPv4 client seen through a dual-stack socket matches its IPv4 entry ...
    assert ip_allowed("::ffff:192.0.2.10", allow)
    # ... and only that.
    assert not ip_allowed("::ffff:198.51.100.1", allow)
    assert not ip_allowed("::1", ["127.0.0.1"])


def test_unparsable_client_address_is_refused() -> None:
    for ip in ("", "10.0.0", "10.0.0.0/8", "hello", "1.2.3.4:80"):
        assert not ip_allowed(ip, ["0.0.0.0/0", "::/0"])


def test_parse_allow_list() -> None:
    assert parse_allow_list(["10.1.2.3/8", " 192.0.2.7 ", "2001:DB8::/32"]) == (
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    )
    for bad in (["10.0.0.0/33"], ["nope"], ["10.0.0.1", 7], "10.0.0.0/8"):
        with pytest.raises(ConfigError):
            parse_allow_list(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ip_allowed("10.0.0.1", ["bad entry"])


def test_error_tree() -> None:
    assert issubclass(SignatureError, AuthenticationError)
    assert issubclass(TokenError, AuthenticationError)
    assert issubclass(AuthenticationError, AuthError)
    assert issubclass(ForbiddenError, AuthError)
    assert issubclass(CredentialKeyError, ConfigError)
    assert issubclass(CredentialUnreadableError, CredentialError)
    assert not issubclass(CredentialError, AuthError)
