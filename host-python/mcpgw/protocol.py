"""The MCP protocol revisions this gateway speaks: the one home of that fact.

Every other list of revisions (the edge's configuration, the dispatcher's
negotiation, the Streamable HTTP framing rules) is derived from these
constants; tests/test_facts.py fails if a copy appears elsewhere.
"""

from __future__ import annotations

# Revisions an `initialize` may negotiate, oldest first.
SESSIONFUL_REVISIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
LATEST_SESSIONFUL = SESSIONFUL_REVISIONS[-1]
# 2026-07-28 is stateless: no initialize, no session; every request carries its envelope.
STATELESS_REVISION = "2026-07-28"
ALL_REVISIONS = (*SESSIONFUL_REVISIONS, STATELESS_REVISION)
# What a request without `MCP-Protocol-Version` is taken to speak (the spec's backwards-compatibility rule).
DEFAULT_REVISION = "2025-03-26"
# JSON-RPC batches existed only in 2025-03-26 (removed in 2025-06-18).
BATCH_REVISIONS = frozenset(("2025-03-26",))
# The SSE priming event (an id and empty data before any message) arrived with 2025-11-25.
# 2026-07-28 streams cannot be resumed (no GET), so their events carry no ids at all.
PRIMING_REVISIONS = frozenset(("2025-11-25",))
