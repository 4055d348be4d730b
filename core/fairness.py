"""Provably fair randomness: every drawn number follows from seeds anyone can check.

Before a round the server publishes ``commitment(server_seed)``; after betting closes a
public client seed (salt) is fixed; the draw is then a pure function of
``(server_seed, client_seed, nonce)`` and, once the server seed is revealed, anyone can
recompute the draw and check the seed against the commitment.

The randomness is a byte stream::

    HMAC-SHA256(key=server_seed, message=f"{client_seed}:{nonce}:{cursor}")  cursor = 0, 1, 2, ...

with the 32-byte digests concatenated in cursor order. Numbers are read from it 4 bytes
at a time:

* a float in [0, 1) is ``Σ byte[i] / 256**(i+1)`` (Stake's published formula);
* an unbiased integer in ``[0, n)`` is the big-endian word ``x`` taken as ``x % n``,
  rejecting ``x >= 2**32 - 2**32 % n`` so that every residue is equally likely.

How a Keno draw uses those numbers is a ``Derivation``. The derivation's name is stored
with each round so an old round can always be recomputed: never change what an existing
derivation computes; add a new one instead.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Iterator

from core.errors import FairnessError

__all__ = [
    "DEFAULT_DERIVATION",
    "MAX_COUNT",
    "MAX_POOL",
    "Derivation",
    "byte_stream",
    "commitment",
    "draw",
    "floats",
    "integers",
]

# Drawing removes from a list of the remaining numbers (quadratic in the pool), and a
# float times a count below 2**21 is exact, so Stake's floor(float × remaining) never
# suffers rounding. Keno pools are tiny; the cap only stops absurd input.
MAX_POOL = 65_536
# Most values one call of ``floats`` or ``integers`` derives: enough for any audit, not
# enough for a typo on the command line to exhaust memory.
MAX_COUNT = 65_536

_WORD = 2**32
# One HMAC-SHA256 digest holds exactly eight 4-byte words, so no word straddles two
# digests and reading digest by digest equals reading the concatenated stream.
_EIGHT_WORDS = struct.Struct(">8I")


class Derivation(enum.Enum):
    """How a Keno draw turns the byte stream into distinct numbers.

    ``V1``: for each pick, an unbiased index (rejection sampling) into the numbers not
    yet drawn; the ball at that index is removed. Our default.

    ``STAKE``: for each pick, ``floor(float × remaining)`` with one float from the
    stream; reproduces Stake's published Keno results, including the tiny bias of
    scaling a 32-bit fraction (some indices get one more of the 2**32 words than others).
    """

    V1 = "v1"
    STAKE = "stake"

    @classmethod
    def parse(cls, name: Derivation | str) -> Derivation:
        """The derivation called ``name``; a ``FairnessError`` naming the choices if none is."""
        if isinstance(name, Derivation):
            return name
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(d.value for d in cls)
            raise FairnessError(
                f"unknown fairness derivation {name!r}; choose one of: {choices}"
            ) from None


DEFAULT_DERIVATION = Derivation.V1


def commitment(server_seed: str) -> str:
    """Hex SHA-256 of the server seed's ASCII: published before the round, checked after."""
    return hashlib.sha256(_server_key(server_seed)).hexdigest()


def byte_stream(server_seed: str, client_seed: str, nonce: int) -> Iterator[int]:
    """The endless stream of random bytes for one round, in order."""
    key, prefix = _validated_inputs(server_seed, client_seed, nonce)
    return (byte for digest in _digests(key, prefix) for byte in digest)


def floats(server_seed: str, client_seed: str, nonce: int, count: int) -> list[float]:
    """The first ``count`` floats in [0, 1) of the round's stream."""
    _check_count(count, "float count")
    words = _words(*_validated_inputs(server_seed, client_seed, nonce))
    return [_as_float(next(words)) for _ in range(count)]


def integers(
    server_seed: str, client_seed: str, nonce: int, *, below: int, count: int
) -> list[int]:
    """The first ``count`` unbiased integers in ``[0, below)`` of the round's stream.

    Rejected words are skipped, so the values consume the stream in order.
    """
    _check_int(below, "integer bound")
    if not 1 <= below <= _WORD:
        raise FairnessError(f"integer bound must be between 1 and 2**32, got {below}")
    _check_count(count, "integer count")
    words = _words(*_validated_inputs(server_seed, client_seed, nonce))
    return [_unbiased_below(words, below) for _ in range(count)]


def draw(
    server_seed: str,
    client_seed: str,
    nonce: int,
    *,
    pool: int = 80,
    count: int = 20,
    derivation: Derivation | str = DEFAULT_DERIVATION,
) -> tuple[int, ...]:
    """``count`` distinct numbers of ``1..pool`` in the order they were drawn."""
    chosen = Derivation.parse(derivation)
    _check_int(pool, "pool size")
    if not 1 <= pool <= MAX_POOL:
        raise FairnessError(f"pool size must be between 1 and {MAX_POOL}, got {pool}")
    _check_int(count, "draw count")
    if not 0 <= count <= pool:
        raise FairnessError(f"draw count must be between 0 and the pool size {pool}, got {count}")
    words = _words(*_validated_inputs(server_seed, client_seed, nonce))

    remaining = list(range(1, pool + 1))
    drawn: list[int] = []
    for _ in range(count):
        if chosen is Derivation.V1:
            index = _unbiased_below(words, len(remaining))
        else:
            # Stake's own arithmetic, kept in floating point: exact for pools below 2**21.
            index = int(_as_float(next(words)) * len(remaining))
        drawn.append(remaining.pop(index))
    return tuple(drawn)


def _digests(key: bytes, prefix: bytes) -> Iterator[bytes]:
    cursor = 0
    while True:
        yield hmac.digest(key, prefix + str(cursor).encode("ascii"), hashlib.sha256)
        cursor += 1


def _words(key: bytes, prefix: bytes) -> Iterator[int]:
    for digest in _digests(key, prefix):
        yield from _EIGHT_WORDS.unpack(digest)


def _as_float(word: int) -> float:
    # Equal, bit for bit, to Σ byte[i] / 256**(i+1): a 32-bit fraction is exact in a double.
    return word / _WORD


def _unbiased_below(words: Iterator[int], n: int) -> int:
    # The top 2**32 % n words would make the smallest residues more likely; skip them.
    limit = _WORD - _WORD % n
    for word in words:
        if word < limit:
            return word % n
    raise AssertionError("the byte stream is endless")  # pragma: no cover


def _validated_inputs(server_seed: str, client_seed: str, nonce: int) -> tuple[bytes, bytes]:
    """The HMAC key and the message prefix ``"{client_seed}:{nonce}:"``."""
    key = _server_key(server_seed)
    if not isinstance(client_seed, str):
        raise FairnessError(f"client seed must be a string, got {type(client_seed).__name__}")
    if not client_seed:
        raise FairnessError("client seed must not be empty")
    _check_int(nonce, "nonce")
    if nonce < 0:
        raise FairnessError(f"nonce must be >= 0, got {nonce}")
    # Unambiguous even if the client seed contains ':' since nonce and cursor are digits.
    return key, f"{client_seed}:{nonce}:".encode()


def _server_key(server_seed: str) -> bytes:
    if not isinstance(server_seed, str):
        raise FairnessError(f"server seed must be a string, got {type(server_seed).__name__}")
    if not server_seed:
        raise FairnessError("server seed must not be empty")
    # The published commitment hashes the seed's ASCII text, so only ASCII can be verified.
    if not server_seed.isascii():
        raise FairnessError("server seed must be ASCII text (normally a hex string)")
    return server_seed.encode("ascii")


def _check_int(value: object, what: str) -> None:
    # bool is an int subclass; True as a nonce or pool size is always a caller's bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise FairnessError(f"{what} must be an integer, got {type(value).__name__}")


def _check_count(count: int, what: str) -> None:
    _check_int(count, what)
    if not 0 <= count <= MAX_COUNT:
        raise FairnessError(f"{what} must be between 0 and {MAX_COUNT}, got {count}")
