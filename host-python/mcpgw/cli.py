"""`mcpgw serve`: flags mirror the MCPGW_* environment variables (settings.py)."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

from .settings import HELP, Settings


def _flag_parser(parser: argparse.ArgumentParser) -> None:
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = "MCPGW_" + f.name.upper()
        help_text = f"{HELP.get(f.name, '')} [env {env}, default {f.default!r}]"
        if str(f.type) == "bool":
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcpgw", description="MCP gateway with a WebAssembly transport edge")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (uvicorn, one worker)")
    _flag_parser(serve)
    args = parser.parse_args(argv)

    if args.command == "serve":
        raw = {f.name: getattr(args, f.name) for f in fields(Settings)}
        try:
            # Flags arrive as strings: run them through the same parser as the environment.
            settings = Settings.from_env(
                environ={**_env(), **{"MCPGW_" + k.upper(): _as_env(v) for k, v in raw.items() if v is not None}}
            )
        except ValueError as exc:
            parser.error(str(exc))
        return serve_forever(settings)
    return 2


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("MCPGW_")}


def _as_env(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def serve_forever(settings: Settings) -> int:
    import uvicorn

    from .app import create_app
    from .edge.backend import EdgeStartupError

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        app = create_app(settings)
    except EdgeStartupError as exc:
        logging.getLogger("mcpgw").error("%s", exc)
        return 1
    logging.getLogger("mcpgw").info(
        "mcpgw listening on http://%s:%d/mcp (edge: %s)",
        settings.host, settings.port, app.edge.status.active,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
