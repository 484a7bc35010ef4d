"""Whether OpenTelemetry tracing is on: decided without importing OpenTelemetry, so a gateway
with tracing off never loads the SDK (observability/tracing.py is imported only when on).

MCPGW_TRACING=auto (the default) turns it on when an OTLP endpoint is configured the standard
way (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); `otlp` turns it on with
the OTLP defaults (http://localhost:4318); `console` prints spans to stderr (for a look, not for
production); `off` keeps it off whatever OTEL_* says. OTEL_SDK_DISABLED=true also keeps it off."""

from __future__ import annotations

import os
from collections.abc import Mapping

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracing_mode(setting: str, environ: Mapping[str, str] | None = None) -> str | None:
    """`otlp`, `console`, or None (off)."""
    env = os.environ if environ is None else environ
    if setting == "off" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if setting == "auto":
        return "otlp" if any(env.get(name) for name in ENDPOINT_VARS) else None
    return setting


def off_reason(setting: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if setting == "off":
        return "MCPGW_TRACING=off"
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "OTEL_SDK_DISABLED=true"
    return "set OTEL_EXPORTER_OTLP_ENDPOINT or MCPGW_TRACING=otlp to turn it on"
