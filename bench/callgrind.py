"""The one callgrind harness of the bench: every instruction count `make bench` and its helper
scripts report goes through here, so each is taken and read the same way.

- `available()`: valgrind and callgrind_control are installed;
- `control(pid, ...)` / `instrument(pid, "on" | "off")`: `callgrind_control` for a process under
  callgrind (`-z` zeroes the counters, `--dump=LABEL` writes them to a file of their own,
  `-i on|off` switches instrumentation); it returns once callgrind has done it;
- `run(command, ...)`: a script under `valgrind --tool=callgrind --instr-atstart=no` in a
  temporary directory of its own (its output files and the control files callgrind_control talks
  through), its dumps read per label before the directory goes;
- `start(command, ...)` / `stop(proc)` / `file_totals(path)`: a server under callgrind, started
  and stopped, and the total its output file reports;
- `dump_calls(call, label)` (in the measured process) and `per_call(by_n)`: counts of LOW and
  HIGH calls, each zeroed and dumped, differenced and divided, so set-up and the
  instrumentation's switching cancel.

Instrumentation starts off (`--instr-atstart=no`): a count covers only what runs between the
measured script's or harness's own `-i on` and `-i off`, or between a `-z` and a `--dump`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
LOW, HIGH = 500, 1500  # the call counts a per-call figure differences


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def instrument(pid: int, state: str) -> None:
    control(pid, "-i", state)


def dump_calls(call: Callable[[], object], label: str) -> None:
    """In the process under callgrind (instrumentation on): LOW, then HIGH calls of `call`, each
    run zeroed first and dumped as `LABEL:N` after (read back with dumps() and per_call())."""
    pid = os.getpid()
    for n in (LOW, HIGH):
        control(pid, "-z")
        for _ in range(n):
            call()
        control(pid, f"--dump={label}:{n}")


def count_requests(pid: int, post: Callable[[str], Any], body: str, check: str, warm: int, n: int) -> None:
    """Against a server under callgrind: `warm` requests, then instrumentation on for exactly `n`
    (ids from 1,000), then off; `post(content)` sends one request of `body` (a JSON-RPC template
    with @ID@) and returns the response, which must be a 200 with a `result` containing `check`."""

    def send(count: int, start: int) -> None:
        for i in range(start, start + count):
            r = post(body.replace("@ID@", str(i)))
            if r.status_code != 200 or check not in r.text or '"result"' not in r.text:
                raise RuntimeError(f"unexpected answer {r.status_code}: {r.text[:300]}")

    send(warm, 1)
    instrument(pid, "on")
    send(n, 1000)
    instrument(pid, "off")


def argv(out_file: str, command: list[str]) -> list[str]:
    """`command` under callgrind, instrumentation off at start, its output to `out_file`."""
    return [*VALGRIND, f"--callgrind-out-file={out_file}", *command]


def dumps(where: str | Path) -> dict[str, int]:
    """{label: total instructions} of every `callgrind_control --dump=LABEL` written in `where`."""
    found: dict[str, int] = {}
    for dump in Path(where).glob("callgrind.out.*"):
        text = dump.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: dump (\S+)\s*$", text, re.M)
        total = re.search(r"^totals:\s+(\d+)", text, re.M)
        if label is not None and total is not None:
            found[label.group(1)] = int(total.group(1))
    return found


def file_totals(path: str | Path) -> int:
    """The total of one output file (its `totals:` line; `summary:` reads 0 when the process is
    signalled, as a server stopped with SIGTERM is)."""
    text = Path(path).read_text(errors="replace") if Path(path).exists() else ""
    found = re.search(r"^totals:\s+(\d+)", text, re.M)
    if not found:
        raise RuntimeError("callgrind wrote no totals")
    return int(found.group(1))


@dataclass
class Run:
    returncode: int
    stderr: str  # valgrind's own lines ("Collected : N") and the script's
    dumps: dict[str, int] = field(default_factory=dict)  # label -> total, see dumps()

    def collected(self) -> int | None:
        """What callgrind counted over the whole run (its "Collected" line)."""
        found = re.search(r"Collected : (\d+)", self.stderr)
        return None if found is None else int(found.group(1))


def run(command: list[str], *, prefix: str, env: dict[str, str] | None = None, timeout: float | None = None) -> Run:
    """`command` under callgrind in a temporary directory of its own (its working directory)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as where:
        done = subprocess.run(
            argv(f"{where}/callgrind.out", command),
            check=False,  # the caller reads the return code (and valgrind's output on failure)
            capture_output=True,
            text=True,
            cwd=where,
            env=env,
            timeout=timeout,
        )
        return Run(done.returncode, done.stderr, dumps(where))


def raise_failed(done: Run) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")


def per_call(by_n: dict[int, int], low: int = LOW, high: int = HIGH) -> float | None:
    """(count of `high` calls - count of `low`) / (high - low); None without both counts."""
    if low not in by_n or high not in by_n:
        return None
    return (by_n[high] - by_n[low]) / (high - low)


def per_label(dumps: dict[str, int], low: int = LOW, high: int = HIGH) -> dict[str, float]:
    """{LABEL: instructions per call} from the dumps of dump_calls (`LABEL:N`), sorted by label;
    a label without both counts is left out."""
    by_label: dict[str, dict[int, int]] = {}
    for name, total in dumps.items():
        label, _, n = name.rpartition(":")
        if label and n.isdigit():
            by_label.setdefault(label, {})[int(n)] = total
    found = {label: per_call(by_n, low, high) for label, by_n in sorted(by_label.items())}
    return {label: count for label, count in found.items() if count is not None}


def start(command: list[str], env: dict[str, str], where: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A server under callgrind, its output file `where/callgrind.out`, working in `where`
    (callgrind_control finds the process through files in its directory)."""
    return subprocess.Popen(
        argv(f"{where}/callgrind.out", command), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=where
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (callgrind then writes its output file), SIGKILL after 120 s."""
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
