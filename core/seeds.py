"""Server seeds and the vault that keeps them secret until they are revealed.

Each round's server seed is drawn from the operating system's CSPRNG
(:func:`new_server_seed`) and its commitment published before betting opens. The seed
itself must survive a scheduler restart yet stay unreadable to anyone with only the
database, so it is stored *sealed* with AES-256-GCM under a key that lives in the
``seed_key`` setting, never in the database::

    blob = 0x01 (format version) || nonce (12 random bytes) || ciphertext+tag

The round id is the associated data: a blob copied onto another round's row does not
open there, so a seed cannot be swapped between rounds without the key.

Errors: a key that is not 32 bytes raises :class:`~core.errors.SeedKeyError` (both a
``SeedError`` and a ``ConfigError``); a blob that does not open — wrong key, wrong round,
altered bytes, unknown version — raises :class:`~core.errors.SeedUnreadableError`, with
one deliberately uninformative message (which check failed is no business of a caller
probing the vault). Messages never contain key material.
"""

from __future__ import annotations

import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import SeedError, SeedKeyError, SeedUnreadableError

__all__ = [
    "KEY_BYTES",
    "SEAL_VERSION",
    "SeedVault",
    "generate_key_hex",
    "new_server_seed",
    "parse_key",
]

#: AES-256: the vault key is 32 bytes (64 hex characters in the ``seed_key`` setting).
KEY_BYTES = 32
#: First byte of every sealed blob; a new format gets a new number, old blobs still open.
SEAL_VERSION = 0x01

# The standard GCM nonce. Random nonces are safe for 2**32 seals per key (NIST SP
# 800-38D): at one round per 10 s that is over a thousand years per table.
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SEED_BYTES = 32
_HEX_KEY_RE = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
# A seed is normally 64 hex chars; the bound only keeps absurd input out of the vault.
_MAX_SEED_CHARS = 1024
_MAX_ROUND_ID_CHARS = 256


def new_server_seed() -> str:
    """A fresh server seed: 64 lowercase hex characters of 32 CSPRNG bytes."""
    return secrets.token_bytes(_SEED_BYTES).hex()


def generate_key_hex() -> str:
    """A fresh vault key as 64 lowercase hex characters, for the ``seed_key`` setting."""
    return secrets.token_bytes(KEY_BYTES).hex()


def parse_key(text: str) -> bytes:
    """The 32-byte key written as 64 hex characters in the ``seed_key`` setting.

    Surrounding whitespace is ignored (keys are pasted from files and secrets stores).
    The error names the setting and what is wrong, never the value.
    """
    if not isinstance(text, str):
        raise SeedKeyError(f"setting seed_key must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not _HEX_KEY_RE.fullmatch(stripped):
        raise SeedKeyError(
            "setting seed_key must be 64 hexadecimal characters (a 32-byte AES-256 key), "
            f"got {len(stripped)} characters"
            + ("" if len(stripped) != 64 else " that are not all hexadecimal")
            + "; generate one with secrets.token_hex(32)"
        )
    return bytes.fromhex(stripped)


def _check_round_id(round_id: object) -> bytes:
    if not isinstance(round_id, str) or not round_id or len(round_id) > _MAX_ROUND_ID_CHARS:
        raise SeedError(
            f"round id must be a non-empty string of at most {_MAX_ROUND_ID_CHARS} characters"
        )
    return round_id.encode("utf-8")


class SeedVault:
    """Seals and opens server seeds with one AES-256-GCM key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            # Say how long it was, never what it was.
            got = f"{len(key)} bytes" if isinstance(key, bytes | bytearray) else type(key).__name__
            raise SeedKeyError(f"seed vault key must be {KEY_BYTES} bytes, got {got}")
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "SeedVault(<key hidden>)"

    def seal(self, seed: str, round_id: str) -> bytes:
        """The sealed blob of ``seed`` for ``round_id`` (a fresh nonce every call)."""
        if not isinstance(seed, str) or not seed or len(seed) > _MAX_SEED_CHARS:
            raise SeedError(
                f"server seed must be a non-empty string of at most {_MAX_SEED_CHARS} characters"
            )
        # The commitment hashes the seed's ASCII, so a non-ASCII seed could never be verified.
        if not seed.isascii():
            raise SeedError("server seed must be ASCII text (normally a hex string)")
        aad = _check_round_id(round_id)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, seed.encode("ascii"), aad)
        return bytes([SEAL_VERSION]) + nonce + sealed

    def open(self, blob: bytes, round_id: str) -> str:
        """The seed sealed in ``blob`` for ``round_id``, or :class:`SeedUnreadableError`."""
        aad = _check_round_id(round_id)
        unreadable = SeedUnreadableError(
            f"the sealed server seed of round {round_id!r} cannot be opened "
            "(wrong seed_key, another round's seed, or altered data)"
        )
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise unreadable
        data = bytes(blob)
        if len(data) < 1 + _NONCE_BYTES + _TAG_BYTES + 1 or data[0] != SEAL_VERSION:
            raise unreadable
        nonce = data[1 : 1 + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, data[1 + _NONCE_BYTES :], aad)
            return plain.decode("ascii")
        except (InvalidTag, UnicodeDecodeError):
            raise unreadable from None
