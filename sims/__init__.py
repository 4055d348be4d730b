"""Monte Carlo for capacity planners, run as Ray tasks on whatever cluster ``rgs`` uses.

Three questions, one module each:

* :mod:`sims.rtp`: does a paytable really return what it says? Simulated RTP with an
  honest 99% confidence interval next to the exact figure of :mod:`core.keno`.
* :mod:`sims.exposure`: how much can one round cost the house? Per-round payout of a
  ticket book whose tickets share one draw, aggregate cap, risk of ruin.
* :mod:`sims.capacity`: how much hardware does a load need? A discrete-event model of
  Serve replicas, account shards with group commit, and PostgreSQL.

Supporting modules: :mod:`sims.bitmask` (tickets and draws as 80-bit masks, the
vectorised hot path), :mod:`sims.book` (ticket books, real or synthetic),
:mod:`sims.workload` and :mod:`sims.service` (capacity inputs), :mod:`sims.stats`,
:mod:`sims.runner` (Ray tasks in deterministic order, progress bar), :mod:`sims.files`,
:mod:`sims.plots`, :mod:`sims.bench` (``rgs bench sims``).

Errors::

    core.errors.RgsError
    └── SimulationError     bad simulation input (file, book, option) or an impossible run

Everything else raised here comes from :mod:`core` (``PaytableError`` for a bad paytable,
``ProtocolError`` for bad picks) and is already an ``RgsError``.
"""

from __future__ import annotations

from core.errors import RgsError

__all__ = ["SimulationError"]


class SimulationError(RgsError, ValueError):
    """A simulation cannot run as asked; the message is one line fit for a user."""
