"""HTTP on Ray Serve: the wallet dialect routes, the operator API and admin endpoints.
Imports ``actors``, ``storage`` and ``core``; nothing imports it."""
