"""Start a gateway with the edge asked for, point Locust at it, stop the gateway.

usage: run.py --edge wasm|python --locust PATH [-- locust arguments]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import servers  # noqa: E402 - imported once bench/ is on sys.path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edge", choices=("wasm", "python"), default="wasm")
    ap.add_argument("--locust", required=True)
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    gw = servers.gateway(args.edge)
    print(f"gateway (edge {args.edge}) on {gw.url}; log in .build/bench-gateway-{args.edge}.log", flush=True)
    try:
        return subprocess.call(
            [args.locust, "-f", str(Path(__file__).with_name("locustfile.py")), "--host", gw.url, *rest]
        )
    finally:
        gw.stop()


if __name__ == "__main__":
    raise SystemExit(main())
