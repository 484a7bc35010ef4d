"""Bench only: `mcpgw serve` with uvicorn's own httptools protocol in place of the gateway's
(http_server.py), to measure what the HTTP layer's checks cost (bench/http_layer.py). Everything
else is the gateway as `mcpgw serve` builds it from the same environment. Not a setting: a
production gateway always runs its own protocol layer."""

from __future__ import annotations

import sys

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import mcpgw.http_server
from mcpgw.cli import main

# cli.serve_forever imports protocol_class from the module when it runs: replace it first.
mcpgw.http_server.protocol_class = lambda limits: HttpToolsProtocol  # type: ignore[assignment,return-value]

if __name__ == "__main__":
    sys.exit(main(["serve"]))
