"""Untrusted JSON nested deeper than we accept is refused before the parser recurses."""

from __future__ import annotations

import sys

from core.dialects.hub88 import _json_object as hub88_json
from core.strict_json import MAX_DEPTH, too_deep


def test_depth_is_counted_outside_strings() -> None:
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert not too_deep(b'{"a": "' + b"[" * 100 + b'"}')
    assert not too_deep(b'{"a": "\\"' + b"[" * 100 + b'"}')  # an escaped quote does not end the string
    assert too_deep('{"k": ' * 40 + "1" + "}" * 40)


def test_a_hostile_body_is_refused_even_with_a_raised_recursion_limit() -> None:
    import eth_account  # noqa: F401 - imports py_ecc, which raises the limit to 100,000

    assert sys.getrecursionlimit() >= 100_000
    # without the depth check this overflows the C stack and kills the process
    assert hub88_json(b"[" * 500_000) is None
    assert hub88_json(b'{"user": "u"}') == {"user": "u"}
