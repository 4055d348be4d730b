"""Operator API authentication: request signatures, bearer tokens, sealed client secrets.

Pure building blocks (no I/O, every clock passed in as ``now``); the operator API
deployment composes them. One call is authenticated in this order::

    parse_bearer(Authorization)         -> token           TokenError
    TokenIssuer.verify(token, now)      -> Claims          TokenError
    (credentials of claims.operator_id, loaded by the caller)
    check_ip(client ip, allow list)                        ForbiddenError
    check_signature(secret, X-Timestamp, METHOD, path?query, raw body, X-Signature, now)
                                                           SignatureError
    require_operator(claims.operator_id, operator named by the call)
                                                           ForbiddenError

Every refusal is an :class:`~core.errors.AuthError` with a stable ``code`` and its
``http_status`` (401 for authentication, 403 for a known caller that may not do this);
the call is refused before it changes anything. Messages never contain secrets, tokens
or the expected signature.

**Signature.** ``X-Signature`` is the hex HMAC-SHA256, keyed with the operator's client
secret (its ASCII bytes), of::

    X-Timestamp + "." + METHOD + "." + path_with_query + "." + raw body bytes

``path_with_query`` is the request target exactly as sent (``/v1/bets?x=1``), not a
re-encoded or re-ordered form: with Starlette, ``scope["raw_path"]`` plus ``"?"`` and
``scope["query_string"]`` when there is one. The timestamp is unix seconds and must be
within ``window_s`` (120 s) of the server clock either way, so a captured request cannot
be replayed later; within the window, ``Idempotency-Key`` makes a replayed ``POST``
harmless.

**Tokens.** ``POST /oauth/token`` with client credentials gets a short-lived JWT (HS256
only, claims ``sub`` = operator id, ``iat``, ``exp``, ``iss``, ``jti``). A token proves
who the caller is; the signature proves the caller holds the secret *now* and that the
request was not altered.

**Keys.** One configured master key (the 64-hex ``seed_key``) yields a separate key per
purpose through :func:`derive_key` (HKDF-SHA256). A purpose string names exactly one use
and is never reused for another: two uses of one key could turn an answer of one into a
forgery for the other. Changing a purpose string changes the key, so every blob sealed or
token signed under the old one stops opening.

**Client secrets at rest.** The HMAC secret has to be recoverable to check signatures,
so it cannot be stored as a hash: it is sealed with AES-256-GCM by
:class:`CredentialVault` (bound to its operator id), under a key from ``derive_key``
that lives only in configuration, never in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import (
    AuthenticationError,
    ConfigError,
    CredentialError,
    CredentialKeyError,
    CredentialUnreadableError,
    ForbiddenError,
    SignatureError,
    TokenError,
)

__all__ = [
    "CREDENTIAL_SEAL_VERSION",
    "DEFAULT_RATE_LIMITS",
    "KEY_BYTES",
    "PURPOSE_CREDENTIALS",
    "PURPOSE_SEEDS",
    "PURPOSE_TOKENS",
    "SIGNATURE_WINDOW_S",
    "TIERS",
    "Claims",
    "CredentialVault",
    "TokenIssuer",
    "check_ip",
    "check_signature",
    "derive_key",
    "ip_allowed",
    "new_client_id",
    "new_client_secret",
    "parse_allow_list",
    "parse_bearer",
    "request_fingerprint",
    "require_operator",
    "signature",
    "verify_client_secret",
]

#: Keys are 32 bytes: AES-256 for the vault, and HS256 wants at least the hash size.
KEY_BYTES = 32
#: How far ``X-Timestamp`` may be from the server clock, either way (seconds).
SIGNATURE_WINDOW_S = 120
#: First byte of a sealed client secret; a new format gets a new number.
CREDENTIAL_SEAL_VERSION = 0x01

#: HKDF purposes. Each names one use of a derived key; never reuse one for another use.
PURPOSE_SEEDS = "ray-rgs/seed-vault/v1"
PURPOSE_CREDENTIALS = "ray-rgs/operator-credentials/v1"
PURPOSE_TOKENS = "ray-rgs/operator-tokens/v1"

#: Operator tiers and their default request budgets per minute (an operator's own
#: ``rate_limit_per_min`` overrides its tier's).
TIERS = ("standard", "premium")
DEFAULT_RATE_LIMITS: Mapping[str, int] = MappingProxyType({"standard": 1000, "premium": 5000})

_ALGORITHM = "HS256"
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Unix seconds as plain ASCII digits. int() would also take " 12", "+12", "1_2" and
# non-ASCII digits, each a second spelling of the same signed timestamp.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
# RFC 6750 token68 characters; a JWT uses a subset of them.
_BEARER_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
_MAX_TOKEN_CHARS = 4096
_MAX_OPERATOR_ID_CHARS = 64  # as the operators table checks
_MAX_SECRET_BYTES = 1024
_SEAL_AAD_PREFIX = b"ray-rgs operator secret\x00"


# -- request signatures ---------------------------------------------------------------


def signature(secret: bytes, timestamp: str, method: str, path_with_query: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp.METHOD.path_with_query.`` + ``body`` under ``secret``.

    ``method`` is upper-cased (HTTP methods are); the body is the raw bytes as sent.
    """
    message = f"{timestamp}.{method.upper()}.{path_with_query}.".encode() + bytes(body)
    return hmac.new(bytes(secret), message, hashlib.sha256).hexdigest()


def check_signature(
    secret: bytes,
    timestamp_header: str | None,
    method: str,
    path_with_query: str,
    body: bytes,
    signature_header: str | None,
    *,
    now: float,
    window_s: int = SIGNATURE_WINDOW_S,
) -> int:
    """Check a request's ``X-Timestamp`` and ``X-Signature``; return the timestamp.

    Raises :class:`SignatureError` with code ``missing_signature``,
    ``missing_timestamp``, ``bad_timestamp`` (not unix seconds in ASCII digits),
    ``stale_timestamp`` (more than ``window_s`` from ``now``, either way; exactly
    ``window_s`` is still accepted) or ``bad_signature``.
    """
    if not signature_header:
        raise SignatureError("missing_signature", "the X-Signature header is missing")
    if not timestamp_header:
        raise SignatureError("missing_timestamp", "the X-Timestamp header is missing")
    if not _TIMESTAMP_RE.fullmatch(timestamp_header):
        raise SignatureError("bad_timestamp", "X-Timestamp must be unix seconds (digits only)")
    timestamp = int(timestamp_header)
    if abs(now - timestamp) > window_s:
        raise SignatureError(
            "stale_timestamp",
            f"X-Timestamp is more than {window_s} s from the server clock; "
            "sign with the current time",
        )
    expected = signature(secret, timestamp_header, method, path_with_query, body)
    # Shape first (no secret involved), then a constant-time compare: the time taken
    # must not tell an attacker how many leading characters were right.
    if not _HEX_SIGNATURE_RE.fullmatch(signature_header) or not hmac.compare_digest(
        expected.encode("ascii"), signature_header.lower().encode("ascii")
    ):
        raise SignatureError("bad_signature", "X-Signature does not match the request")
    return timestamp


def request_fingerprint(method: str, path_with_query: str, body: bytes) -> bytes:
    """SHA-256 identifying a request for idempotency: same key, other fingerprint = 409.

    Each part is length-prefixed, so no two different requests share an encoding.
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_with_query.encode(), bytes(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


# -- bearer tokens --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who, until when (unix seconds), and its unique id."""

    operator_id: str
    expires_at: int
    jti: str


def parse_bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header.

    Raises :class:`TokenError` ``missing_token`` (no header, or empty) or
    ``invalid_token`` (another scheme, or not one token).
    """
    if header is None or not header.strip():
        raise TokenError("missing_token", "the Authorization header is missing")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    # The scheme is case-insensitive (RFC 7235); the token is not.
    if scheme.lower() != "bearer":
        raise TokenError("invalid_token", "the Authorization header must be 'Bearer <token>'")
    if not token:
        raise TokenError("missing_token", "the Authorization header carries no token")
    if len(token) > _MAX_TOKEN_CHARS or not _BEARER_RE.fullmatch(token):
        raise TokenError("invalid_token", "the bearer token is malformed")
    return token


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        # Say how long it was, never what it was.
        got = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else type(key).__name__
        raise CredentialKeyError(f"{what} must be {KEY_BYTES} bytes, got {got}")
    return bytes(key)


def _check_operator_id(operator_id: object) -> str:
    if (
        not isinstance(operator_id, str)
        or not operator_id
        or len(operator_id) > _MAX_OPERATOR_ID_CHARS
    ):
        raise CredentialError(
            f"operator id must be a non-empty string of at most {_MAX_OPERATOR_ID_CHARS} characters"
        )
    return operator_id


class TokenIssuer:
    """Issues and verifies the operator API's HS256 bearer tokens with one key."""

    __slots__ = ("_issuer", "_key", "_ttl_s")

    def __init__(self, key: bytes, *, issuer: str = "ray-rgs", ttl_s: int = 900) -> None:
        self._key = _check_key(key, "token signing key")
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError("token issuer must be a non-empty string")
        # A day at most: a token cannot be revoked before it expires, so keep it short.
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= 86_400:
            raise ConfigError(f"token ttl_s must be an integer in 1..86400 seconds, got {ttl_s!r}")
        self._issuer = issuer
        self._ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"TokenIssuer(<key hidden>, issuer={self._issuer!r}, ttl_s={self._ttl_s})"

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    def issue(self, operator_id: str, *, now: float) -> tuple[str, int]:
        """A fresh token for ``operator_id`` and its lifetime in seconds (``expires_in``)."""
        _check_operator_id(operator_id)
        issued_at = int(now)
        claims = {
            "sub": operator_id,
            "iat": issued_at,
            "exp": issued_at + self._ttl_s,
            "iss": self._issuer,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(claims, self._key, algorithm=_ALGORITHM)
        return token, self._ttl_s

    def verify(self, token: str, *, now: float) -> Claims:
        """The claims of a token this issuer signed that is still valid at ``now``.

        Raises :class:`TokenError` ``missing_token`` (empty), ``expired_token``
        (``now >= exp``, no leeway) or ``invalid_token`` (malformed, another key,
        another issuer, any algorithm but HS256 — "none" included — or a missing or
        mistyped claim). The signature is checked before the expiry, so a forged token
        is ``invalid_token`` even when its ``exp`` has passed.
        """
        if not token:
            raise TokenError("missing_token", "no bearer token")
        invalid = TokenError("invalid_token", "the bearer token is not valid")
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise invalid
        try:
            # PyJWT compares exp/iat/nbf with its own clock; ours is ``now``, so those
            # checks are off here and done below. Signature, algorithm and issuer stay on.
            payload: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                leeway=0,
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_iss": True,
                    "require": ["sub", "iat", "exp", "iss", "jti"],
                },
            )
        except jwt.PyJWTError as exc:
            raise invalid from exc
        sub, exp, iat, jti = (payload.get(k) for k in ("sub", "exp", "iat", "jti"))
        if (
            not isinstance(sub, str)
            or not sub
            or len(sub) > _MAX_OPERATOR_ID_CHARS
            or not isinstance(jti, str)
            or not jti
            or not _is_int(exp)
            or not _is_int(iat)
        ):
            raise invalid
        assert isinstance(exp, int)
        if now >= exp:
            raise TokenError("expired_token", "the bearer token has expired; request a new one")
        return Claims(operator_id=sub, expires_at=exp, jti=jti)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_operator(token_operator_id: str, operator_id: str) -> None:
    """Refuse (403 ``wrong_operator``) a call about another operator than the token's."""
    if token_operator_id != operator_id:
        raise ForbiddenError("wrong_operator", "this token belongs to another operator")


# -- keys and client credentials ------------------------------------------------------


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one ``purpose``, derived from ``master`` with HKDF-SHA256.

    Keys of different purposes are independent: knowing one tells nothing of the master
    or of another. Use the ``PURPOSE_*`` constants; a purpose is never reused for a
    second kind of use. (The seed vault of existing deployments is keyed with the master
    itself; it stays that way until its seeds are re-sealed.)
    """
    if not isinstance(master, bytes | bytearray) or len(master) < KEY_BYTES:
        got = f"{len(master)} bytes" if isinstance(master, bytes | bytearray) else type(master).__name__
        raise CredentialKeyError(f"master key must be at least {KEY_BYTES} bytes, got {got}")
    if not isinstance(purpose, str) or not purpose or not purpose.isascii():
        raise CredentialKeyError("key purpose must be a non-empty ASCII string")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode("ascii"))
    return hkdf.derive(bytes(master))


def new_client_secret() -> str:
    """A fresh client secret: 43 URL-safe characters (256 CSPRNG bits)."""
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    """A fresh, public client id: ``rgs_`` and 32 hex characters."""
    return "rgs_" + secrets.token_hex(16)


def verify_client_secret(stored: bytes, presented: str | None) -> None:
    """Refuse (401 ``invalid_client``) a presented client secret that is not the stored one."""
    presented_bytes = presented.encode() if isinstance(presented, str) else b""
    # compare_digest on equal or unequal lengths alike: no early exit on the first byte.
    if not presented_bytes or not hmac.compare_digest(bytes(stored), presented_bytes):
        raise AuthenticationError("invalid_client", "unknown client or wrong client secret")


class CredentialVault:
    """Seals and opens operators' client secrets with one AES-256-GCM key.

    ``blob = 0x01 (format version) || nonce (12 random bytes) || ciphertext+tag``; the
    operator id is associated data, so a blob copied onto another operator's row does
    not open there.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(_check_key(key, "credential vault key"))

    def __repr__(self) -> str:
        return "CredentialVault(<key hidden>)"

    @staticmethod
    def _aad(operator_id: str) -> bytes:
        return _SEAL_AAD_PREFIX + _check_operator_id(operator_id).encode("utf-8")

    def seal(self, secret: bytes, operator_id: str) -> bytes:
        """The sealed blob of ``secret`` for ``operator_id`` (a fresh nonce every call)."""
        if not isinstance(secret, bytes | bytearray) or not 1 <= len(secret) <= _MAX_SECRET_BYTES:
            raise CredentialError(f"a client secret must be 1..{_MAX_SECRET_BYTES} bytes")
        aad = self._aad(operator_id)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return bytes([CREDENTIAL_SEAL_VERSION]) + nonce + self._aead.encrypt(nonce, bytes(secret), aad)

    def open(self, blob: bytes, operator_id: str) -> bytes:
        """The secret sealed in ``blob`` for ``operator_id``, or :class:`CredentialUnreadableError`."""
        aad = self._aad(operator_id)
        # One message for every failure: which check failed is no business of a prober.
        unreadable = CredentialUnreadableError(
            f"the sealed client secret of operator {operator_id!r} cannot be opened "
            "(wrong key, another operator's secret, or altered data)"
        )
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise unreadable
        data = bytes(blob)
        if len(data) < 1 + _NONCE_BYTES + _TAG_BYTES + 1 or data[0] != CREDENTIAL_SEAL_VERSION:
            raise unreadable
        try:
            return self._aead.decrypt(data[1 : 1 + _NONCE_BYTES], data[1 + _NONCE_BYTES :], aad)
        except InvalidTag:
            raise unreadable from None


# -- IP allow-lists -------------------------------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_list(entries: Sequence[str]) -> tuple[str, ...]:
    """An allow-list in canonical form (``10.0.0.0/8``, ``2001:db8::/32``, single
    addresses as /32 or /128), or :class:`ConfigError` naming the bad entry.

    Host bits are tolerated (``10.1.2.3/8`` means ``10.0.0.0/8``): operators paste
    addresses with their prefix length.
    """
    if isinstance(entries, str) or not isinstance(entries, Sequence):
        raise ConfigError("an IP allow-list must be a list of addresses or CIDR networks")
    return tuple(str(net) for net in _networks(tuple(entries)))


@lru_cache(maxsize=1024)
def _networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    networks: list[_Network] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str):
            raise ConfigError(f"IP allow-list entry {index} must be a string, got {type(entry).__name__}")
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"IP allow-list entry {index} ({entry!r}) is not an address or CIDR network") from exc
    return tuple(networks)


def ip_allowed(ip: str, allow_list: Sequence[str]) -> bool:
    """Whether ``ip`` is in one of the networks of ``allow_list``; an empty list allows all.

    An IPv4 client seen through a dual-stack socket (``::ffff:192.0.2.1``) matches IPv4
    entries. A client address that does not parse is not allowed (unless the list is
    empty). A bad entry in the list raises :class:`ConfigError`.
    """
    networks = _networks(tuple(allow_list))
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip.strip())
    except (ValueError, AttributeError):
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    # `in` is False across IP versions, never an error.
    return any(candidate in net for candidate in candidates for net in networks)


def check_ip(ip: str, allow_list: Sequence[str]) -> None:
    """Refuse (403 ``ip_not_allowed``) a client address outside the operator's allow-list."""
    if not ip_allowed(ip, allow_list):
        raise ForbiddenError("ip_not_allowed", "calls from this address are not allowed for this operator")
