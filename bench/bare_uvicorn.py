"""The HTTP stack's ceiling: a bare ASGI app on uvicorn (uvloop, httptools, one worker) that reads
each POST's body and answers a fixed JSON body. No framework, no routing, no JSON parsing: what
the gateway's request path is measured against (bars: tools/call echo >= 0.6x, tools/list
>= 0.55x of it). The fixed bodies are the gateway's own answers to the same calls, read from a
JSON file ({"tools/list": text, "tools/call": text}) that bench/e2e.py writes, so the ceiling
sends the same bytes the gateway does.

usage: python bare_uvicorn.py PORT ANSWERS.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn


def make_app(answers: dict[str, str]) -> Any:
    tools_list = answers["tools/list"].encode()
    echo = answers["tools/call"].encode()
    headers_list = [(b"content-type", b"application/json"), (b"content-length", str(len(tools_list)).encode())]
    headers_echo = [(b"content-type", b"application/json"), (b"content-length", str(len(echo)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        is_call = b'"tools/call"' in body
        start = {"type": "http.response.start", "status": 200, "headers": headers_echo if is_call else headers_list}
        await send(start)
        await send({"type": "http.response.body", "body": echo if is_call else tools_list})

    return app


if __name__ == "__main__":
    uvicorn.run(
        make_app(json.loads(Path(sys.argv[2]).read_text())),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
