"""Pure domain of ray-rgs: money, fairness, Keno rules and exact math, ledger postings,
the internal wallet protocol and typed configuration. Nothing here performs I/O."""
