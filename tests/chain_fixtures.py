"""A dev chain for tests: start it in a test's folder, stop it when the test is done.

Usage in a test module (one chain per module keeps start-up to about a second)::

    @pytest.fixture(scope="module")
    def chain(tmp_path_factory):
        chain = start_test_chain(tmp_path_factory.mktemp("chain"))
        yield chain
        chain.stop()
"""

from __future__ import annotations

from pathlib import Path

from storage.embedded_chain import EmbeddedChain

__all__ = ["start_test_chain"]


def start_test_chain(tmp_path: Path, *, block_time_s: float = 1.0) -> EmbeddedChain:
    """A started dev chain under ``tmp_path/chain``; the caller stops it."""
    chain = EmbeddedChain(Path(tmp_path) / "chain", block_time_s=block_time_s)
    chain.start()
    return chain
