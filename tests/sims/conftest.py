"""Fixtures of the simulation tests: the paytables and books under tests/data/sims/."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.keno import PaytableSet
from sims.files import load_paytables

DATA = Path(__file__).resolve().parents[1] / "data" / "sims"
PAYTABLES_FILE = DATA / "keno_paytables.json"
SMALL_BOOK_FILE = DATA / "book_small.json"
ONE_TICKET_BOOK_FILE = DATA / "book_one_ticket.json"


@pytest.fixture(scope="session")
def paytables() -> PaytableSet:
    """The Michigan paytables of shared/vectors, copied so the tests need only the project."""
    return load_paytables(PAYTABLES_FILE)
