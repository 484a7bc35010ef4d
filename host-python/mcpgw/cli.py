"""`mcpgw serve`: flags mirror the MCPGW_* environment variables (settings.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from typing import TYPE_CHECKING

from .observability import logs as observability_logs
from .settings import HELP, Settings

if TYPE_CHECKING:
    from pathlib import Path

    from .gateway import Gateway
    from .observability.tracing import Tracing


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
    serve = sub.add_parser("serve", help="run the gateway (uvicorn; --workers N for N processes)")
    _flag_parser(serve)
    stdio = sub.add_parser(
        "stdio", help="serve the gateway's catalog over stdin/stdout (one JSON-RPC message per line)"
    )
    _flag_parser(stdio)
    core = sub.add_parser("core", help="the running gateway's edge component: status, verify, swap, rollback")
    core.add_argument("--url", default=None, help="gateway base URL (default http://MCPGW_HOST:MCPGW_PORT)")
    core.add_argument("--token", default=None, help="admin token (default: env MCPGW_ADMIN_TOKEN)")
    core_sub = core.add_subparsers(dest="action", required=True)
    core_sub.add_parser("status", help="active and previous versions, recent swaps")
    for action, text in (
        ("verify", "check a component without activating it"),
        ("swap", "verify a component, then make it the active edge"),
    ):
        p = core_sub.add_parser(action, help=text)
        p.add_argument("file", help="a transport_core .wasm component")
        p.add_argument(
            "--signature",
            default=None,
            metavar="SIGFILE",
            help="its detached Ed25519 signature (base64), for a gateway with MCPGW_EDGE_SIGNING_KEYS "
            "(default: FILE.sig when it exists)",
        )
    core_sub.add_parser("rollback", help="go back to the previous version")
    plugin = sub.add_parser("plugin", help="the running gateway's plugins: list, verify, load, reload, enable, ...")
    plugin.add_argument("--url", default=None, help="gateway base URL (default http://MCPGW_HOST:MCPGW_PORT)")
    plugin.add_argument("--token", default=None, help="admin token (default: env MCPGW_ADMIN_TOKEN)")
    plugin_sub = plugin.add_subparsers(dest="action", required=True)
    plugin_sub.add_parser("list", help="loaded plugins, their state and counters, recent changes")
    p = plugin_sub.add_parser("verify", help="check a plugin component without loading it")
    p.add_argument("file", help="a plugin .wasm component")
    for action, text in (
        ("load", "verify a plugin, then add it under NAME"),
        ("reload", "verify a new version of plugin NAME, then replace it (running calls finish on the old one)"),
    ):
        p = plugin_sub.add_parser(action, help=text)
        p.add_argument("name")
        p.add_argument("file", help="a plugin .wasm component")
        p.add_argument(
            "--manifest",
            default=None,
            help='manifest keys as a JSON object, e.g. \'{"grants": ["log"], "priority": 5}\'',
        )
    for action, text in (
        ("enable", "enable plugin NAME"),
        ("disable", "disable plugin NAME"),
        ("unload", "remove NAME"),
    ):
        plugin_sub.add_parser(action, help=text).add_argument("name")
    auth = sub.add_parser("auth", help="API keys for MCPGW_AUTH=api-key")
    auth_sub = auth.add_subparsers(dest="action", required=True)
    hash_key = auth_sub.add_parser(
        "hash-key", help="print the keys-file line for a key read from stdin (or a new one, --generate)"
    )
    hash_key.add_argument("name", help="the key's name (the principal's subject)")
    hash_key.add_argument("scopes", nargs="*", help="scopes the key carries")
    hash_key.add_argument("--generate", action="store_true", help="make a new random key and print it to stderr")
    args = parser.parse_args(argv)
    if args.command == "core":
        return core_command(args)
    if args.command == "auth":
        return auth_command(args)
    if args.command == "plugin":
        return plugin_command(args)

    if args.command in ("serve", "stdio"):
        raw = {f.name: getattr(args, f.name) for f in fields(Settings)}
        try:
            # Flags arrive as strings: run them through the same parser as the environment.
            settings = Settings.from_env(
                environ={**_env(), **{"MCPGW_" + k.upper(): _as_env(v) for k, v in raw.items() if v is not None}}
            )
        except ValueError as exc:
            parser.error(str(exc))
        if args.command == "stdio":
            return serve_stdio(settings)
        return serve_forever(settings, argv if argv is not None else sys.argv[1:])
    return 2


def _admin_target(args: argparse.Namespace, command: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The running gateway's admin URL for `path` and the bearer header, from the flags or the
    MCPGW_* environment; None (after saying why) without an admin token."""
    import os

    settings = Settings.from_env()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = (args.url or f"http://{host}:{settings.port}").rstrip("/") + settings.path_prefix + path
    token = args.token or os.environ.get("MCPGW_ADMIN_TOKEN", "")
    if not token:
        print(f"mcpgw {command}: no admin token (--token or MCPGW_ADMIN_TOKEN)", file=sys.stderr)
        return None
    return url, {"authorization": f"Bearer {token}"}


def core_command(args: argparse.Namespace) -> int:
    """Talk to a running gateway's admin API; print its JSON answer; non-zero on refusal."""
    import json
    from pathlib import Path

    import httpx

    target = _admin_target(args, "core", "/admin/edge/")
    if target is None:
        return 2
    url, headers = target
    try:
        if args.action == "status":
            r = httpx.get(url + "status", headers=headers, timeout=30)
        elif args.action == "rollback":
            r = httpx.post(url + "rollback", headers=headers, timeout=30)
        else:
            path = Path(args.file)
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                print(f"mcpgw core: cannot read {path}: {exc}", file=sys.stderr)
                return 2
            signature = _signature_header(path, args.signature)
            if signature is None:
                return 2
            r = httpx.post(
                url + args.action,
                params={"name": path.name},
                content=wasm,
                timeout=120,
                headers={**headers, "content-type": "application/wasm", **signature},
            )
    except httpx.HTTPError as exc:
        print(f"mcpgw core: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(r.json(), indent=2))
    except ValueError:
        print(r.text)
    return 0 if r.status_code == 200 else 1


def _signature_header(component: Path, given: str | None) -> dict[str, str] | None:
    """The `Mcpgw-Signature` header for an upload: the signature file given with --signature, else
    `<component>.sig` when it exists (as at start-up), else none ({}). None (after saying why) when
    the file cannot be read or is not a signature: checked here, before anything is uploaded."""
    from pathlib import Path

    from .edge.signing import SIGNATURE_SUFFIX, decode_signature

    path = Path(given) if given is not None else component.with_name(component.name + SIGNATURE_SUFFIX)
    try:
        text = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        if given is None:
            return {}
        print(f"mcpgw core: cannot read the signature {path}: no such file", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"mcpgw core: cannot read the signature {path}: {exc.strerror}", file=sys.stderr)
        return None
    try:
        decode_signature(text)
    except ValueError as exc:
        print(f"mcpgw core: {path} is not a signature: {exc}", file=sys.stderr)
        return None
    if given is None:
        print(f"mcpgw core: sending the signature {path}", file=sys.stderr)
    return {"mcpgw-signature": text}


def plugin_command(args: argparse.Namespace) -> int:
    """`mcpgw plugin ...` against a running gateway's admin API (/admin/plugins/); prints its JSON."""
    import json
    from pathlib import Path

    import httpx

    target = _admin_target(args, "plugin", "/admin/plugins")
    if target is None:
        return 2
    base, headers = target
    try:
        if args.action == "list":
            r = httpx.get(base, headers=headers, timeout=30)
        elif args.action in ("enable", "disable", "unload"):
            r = httpx.post(f"{base}/{args.name}/{args.action}", headers=headers, timeout=30)
        else:
            path = Path(args.file)
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                print(f"mcpgw plugin: cannot read {path}: {exc}", file=sys.stderr)
                return 2
            if args.action == "verify":
                url, params = f"{base}/verify", {"name": path.stem}
            else:
                url, params = f"{base}/{args.name}/{args.action}", {}
                if args.manifest:
                    params["manifest"] = args.manifest
            r = httpx.post(
                url, params=params, content=wasm, timeout=120, headers={**headers, "content-type": "application/wasm"}
            )
    except httpx.HTTPError as exc:
        print(f"mcpgw plugin: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(r.json(), indent=2))
    except ValueError:
        print(r.text)
    return 0 if r.status_code == 200 else 1


def auth_command(args: argparse.Namespace) -> int:
    """`mcpgw auth hash-key NAME [SCOPE ...]`: the line for MCPGW_AUTH_API_KEYS_FILE (only the
    key's SHA-256 is stored; the key itself is read from stdin or generated)."""
    from .auth.tokens import hash_line, new_key

    if args.generate:
        key = new_key()
        print(f"key (give it to the client; it is not stored): {key}", file=sys.stderr)
    else:
        key = sys.stdin.readline().strip()
        if not key:
            print("mcpgw auth hash-key: no key on stdin (or use --generate)", file=sys.stderr)
            return 2
    try:
        print(hash_line(args.name, key, args.scopes))
    except ValueError as exc:
        print(f"mcpgw auth hash-key: {exc}", file=sys.stderr)
        return 2
    return 0


def refuse_unauthenticated(settings: Settings) -> str | None:
    """Why the gateway must not start (auth none on a non-loopback bind), or None."""
    from .auth.setup import unauthenticated_exposure

    if unauthenticated_exposure(settings) and not settings.allow_unauthenticated:
        return (
            f"refusing to bind {settings.host} with MCPGW_AUTH=none: anyone who can reach it could call every tool. "
            "Set --auth jwt or --auth api-key (see docs/auth.md), bind a loopback address, or pass "
            "--allow-unauthenticated (MCPGW_ALLOW_UNAUTHENTICATED=1) if something in front of it authenticates"
        )
    return None


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("MCPGW_")}


def _as_env(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def serve_forever(settings: Settings, argv: list[str] | None = None) -> int:
    """One gateway process; with `--workers N` (N > 1) the supervisor of N of them (workers.py)."""
    import uvicorn

    from . import workers
    from .app import create_app
    from .edge.backend import EdgeStartupError
    from .federation.config import ConfigError
    from .http_server import protocol_class
    from .serving import GatewayServer

    observability_logs.configure(settings.log_level, settings.log_format)  # format, secret filters
    refusal = refuse_unauthenticated(settings)
    if refusal is not None:
        logging.getLogger("mcpgw").error("%s", refusal)
        return 2
    slot = workers.this_worker()
    if slot is None and settings.workers > 1:
        refusal = workers.refusal(settings)
        if refusal is not None:
            logging.getLogger("mcpgw").error("%s", refusal)
            return 2
        return workers.supervise(settings, argv if argv is not None else sys.argv[1:])
    try:
        app = create_app(settings)
    except EdgeStartupError as exc:
        logging.getLogger("mcpgw").error("%s", exc)
        return 1
    except ConfigError as exc:
        logging.getLogger("mcpgw").error("invalid config: %s", exc)
        return 2
    except ValueError as exc:  # an auth setting (settings.py checked the rest)
        logging.getLogger("mcpgw").error("invalid auth settings: %s", exc)
        return 2
    auth = app.auth_health()
    if "warning" in auth:
        logging.getLogger("mcpgw").warning("%s", auth["warning"])
    state = app.engine.sessions.health()  # where sessions live: memory, or redis (password redacted)
    plugins = app.gateway.plugins
    logging.getLogger("mcpgw").info(
        "state: %s; plugins: %s",
        state["backend"] + (f" {state['url']} (process {state['process']})" if "url" in state else ""),
        ", ".join(p["name"] for p in plugins.health()) if plugins is not None and plugins.health() else "none",
    )
    if settings.redis_url and not settings.request_state_key:  # (a supervisor gives its workers one key)
        logging.getLogger("mcpgw").warning(
            "requestState key: random in this process; a 2026-07-28 InputRequiredResult's retry that another"
            " gateway process receives is refused: set the same MCPGW_REQUEST_STATE_KEY on every process"
        )
    logging.getLogger("mcpgw").info(
        "auth: %s%s",
        settings.auth,
        f" (resource {auth['resource']}, policy rules {auth['policy_rules']})" if "resource" in auth else "",
    )
    logging.getLogger("mcpgw").info(
        "mcpgw listening on http://%s:%d/mcp (edge: %s)%s",
        settings.host,
        slot.port if slot is not None else settings.port,
        app.edge.status.active,
        f"; worker {slot.index}/{slot.count}, pid {workers.identity()['pid']}" if slot is not None else "",
    )
    logging.getLogger("mcpgw").info(
        "http limits: %s, keep-alive %g s", app.limits.describe(), settings.keepalive_timeout_s
    )
    config = uvicorn.Config(
        app.asgi,  # the App's own chain, without App.__call__'s extra await per request
        host=settings.host,
        port=slot.port if slot is not None else settings.port,
        loop="uvloop",
        http=protocol_class(app.limits),  # uvicorn's httptools protocol with our limits (http_server.py)
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]  # uvicorn annotates int; call_later takes a float
        log_level=settings.log_level,
        # uvicorn's loggers propagate to our handler: one format, and the secret filters see them.
        log_config=None,
        access_log=False,
        # X-Forwarded-* are not trusted by default (uvicorn would trust them from loopback);
        # the edge's Host and Origin checks read what the client actually sent.
        proxy_headers=False,
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,  # a larger frame is refused with 1009
        ws_ping_interval=settings.ws_ping_interval_s or None,
        ws_ping_timeout=settings.ws_ping_timeout_s or None,
        # Our own drain (serving.py) bounds requests; this bounds what is left after it.
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
    )
    if slot is None:
        GatewayServer(config, app.drain).run()
    else:  # a worker: its own SO_REUSEPORT socket on the supervisor's port
        GatewayServer(config, app.drain, slot).run(sockets=[workers.listening_socket(settings.host, slot)])
    return 0


def serve_stdio(settings: Settings) -> int:
    """The gateway for one desktop client on stdin/stdout; logs go to stderr, never stdout."""
    import asyncio

    from .federation.config import ConfigError
    from .gateway import build_gateway
    from .transports import stdio

    observability_logs.configure(settings.log_level, settings.log_format)  # stderr: stdout is the MCP stream
    from .auth.access import Access
    from .auth.setup import stdio_principal
    from .federation.config import load_policy

    try:
        gateway = build_gateway(settings)
        policy = load_policy(settings.config) if settings.config else None
        # stdio: the caller is whoever started the process (MCPGW_AUTH_TOKEN when auth is on).
        principal = stdio_principal(settings)
    except ConfigError as exc:
        logging.getLogger("mcpgw").error("invalid config: %s", exc)
        return 2
    except ValueError as exc:
        logging.getLogger("mcpgw").error("invalid auth settings: %s", exc)
        return 2
    if policy is not None and policy.names:
        gateway.engine.access = Access(policy)
    tracing = stdio_tracing(settings, gateway)

    async def run() -> None:
        import signal

        loop = asyncio.get_running_loop()
        serving = asyncio.current_task()

        def terminate() -> None:
            # The engine's drain, as on every transport: running requests get the grace period,
            # then -32603 "Server shutting down"; then the process ends.
            async def stop() -> None:
                await gateway.engine.shutdown(settings.shutdown_grace_s)
                if serving is not None:
                    serving.cancel()

            stopping.add(asyncio.ensure_future(stop()))

        stopping: set[asyncio.Future[None]] = set()
        loop.add_signal_handler(signal.SIGTERM, terminate)
        gateway.federation.start()
        # Give upstreams their first connection attempt before the client's first request.
        for upstream in gateway.federation.upstreams.values():
            for _ in range(int(upstream.config.connect_timeout_s * 20)):
                if upstream.state != "starting" or upstream.error:
                    break
                await asyncio.sleep(0.05)
        try:
            await stdio.serve(
                gateway.engine,
                gateway.dispatcher,
                settings.max_body_bytes,
                settings.shutdown_grace_s,
                principal=principal,
            )
        except asyncio.CancelledError:
            log_stdio.info("terminated")
        finally:
            await gateway.federation.stop()

    log_stdio = logging.getLogger("mcpgw.stdio")
    logging.getLogger("mcpgw").info("mcpgw serving MCP on stdio")
    try:
        asyncio.run(run())
    finally:
        if tracing is not None:
            tracing.shutdown()  # export what is queued
    return 0


def stdio_tracing(settings: Settings, gateway: Gateway) -> Tracing | None:
    """OpenTelemetry for `mcpgw stdio` (MCP requests, plugins, upstream calls; no HTTP spans), only
    when tracing is on (observability/tracing_switch.py); the start-up log says which."""
    from .observability.tracing_switch import off_reason, tracing_mode

    mode = tracing_mode(settings.tracing)
    if mode is None:
        logging.getLogger("mcpgw").info("tracing: off (%s)", off_reason(settings.tracing))
        return None
    from .observability.tracing import Tracing

    tracing = Tracing(mode)
    tracing.install_gateway(gateway)
    logging.getLogger("mcpgw").info("tracing: %s", tracing.describe())
    return tracing


if __name__ == "__main__":
    raise SystemExit(main())
