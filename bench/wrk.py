"""wrk (Debian's) as the load generator: one thread, N connections, a Lua script that gives
every request its own JSON-RPC id, checks every answer's body (a JSON-RPC error inside a 2xx
is an error, not a success) and prints a JSON summary (requests, errors by kind, latency
percentiles) when done. A run that fails (wrk dies, no request completes) is returned as a
failed Result with its reason, never raised and never a silent 0. wrk is C with an event loop;
at one thread it uses a fraction of a core while the gateway under test saturates its one
worker, so the gateway is the bottleneck."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = r"""
local template = %(template)s
local method = %(method)s
local headers = {}
%(headers)s
local thread_no = 0
local counter = 0
local threads = {}
rpc_errors = 0
bad_status = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("tid", thread_no)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local body = nil
  if template ~= "" then
    -- unique id per request across threads: a repeated id in one session is refused
    body = string.gsub(template, "@ID@", string.format('"%%d-%%d"', tid, counter))
  end
  return wrk.format(method, nil, headers, body)
end

function response(status, headers, body)
  -- A JSON-RPC error in a successful HTTP answer (a refused duplicate id, a stalled session, an
  -- upstream failure) is an error: timing it as a success would flatter the target. The answer's
  -- own member is whichever of "error" and "result" comes first (after "jsonrpc" and "id"), so a
  -- result that merely contains an "error" key (a tool's schema) is not one. A tool result
  -- flagged "isError": true is a failed call too.
  if status < 200 or status >= 300 then
    bad_status = bad_status + 1
  elseif body ~= nil and body ~= "" then
    local e = string.find(body, '"error"%%s*:')
    if e ~= nil then
      local r = string.find(body, '"result"%%s*:')
      if r == nil or e < r then
        rpc_errors = rpc_errors + 1
        return
      end
    end
    if string.find(body, '"isError"%%s*:%%s*true') then
      rpc_errors = rpc_errors + 1
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local rpc = 0
  local status = 0
  for _, thread in ipairs(threads) do
    rpc = rpc + (thread:get("rpc_errors") or 0)
    status = status + (thread:get("bad_status") or 0)
  end
  io.write(string.format(
    'WRK_JSON {"requests":%%d,"duration_us":%%d,"socket_errors":%%d,"non2xx":%%d,"rpc_errors":%%d,'
    .. '"p50_us":%%d,"p99_us":%%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, status, rpc,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Workload:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""  # JSON text with @ID@ where the request id goes


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx + JSON-RPC errors (and isError tool results) inside 2xx
    rpc_errors: int = 0
    failed: str = ""  # why this repetition produced no figure ("" when it did)

    @property
    def ok(self) -> bool:
        return not self.failed and self.errors == 0 and self.requests > 0


def failed(reason: str) -> Result:
    return Result(rps=0.0, p50_ms=0.0, p99_ms=0.0, requests=0, errors=0, failed=reason)


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for ASCII


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    return path


def run(url: str, workload: Workload, connections: int, duration_s: float) -> Result:
    header_lines = "\n".join(f"headers[{lua_string(k)}] = {lua_string(v)}" for k, v in workload.headers.items())
    script = LUA % {
        "template": lua_string(workload.body),
        "method": lua_string(workload.method),
        "headers": header_lines,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                require_wrk(),
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                "--timeout",
                "10s",
                "-s",
                f.name,
                url + workload.path,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return failed(f"wrk did not complete: {exc}")
    finally:
        Path(f.name).unlink()
    line = next((line for line in out.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        return failed("wrk printed no summary")
    try:
        data = json.loads(line[len("WRK_JSON ") :])
        seconds = data["duration_us"] / 1e6
    except (ValueError, KeyError, TypeError) as exc:
        return failed(f"wrk's summary is unreadable ({exc}): {line[:200]}")
    if data["requests"] == 0 or seconds <= 0:
        return failed(f"no request completed in {max(1, round(duration_s))} s")
    return Result(
        rps=data["requests"] / seconds,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["socket_errors"] + data["non2xx"] + data["rpc_errors"],
        rpc_errors=data["rpc_errors"],
    )
