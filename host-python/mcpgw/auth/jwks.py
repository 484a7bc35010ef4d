"""The authorization server's signing keys (JWKS): fetched with a timeout, cached, refreshed on
an unknown `kid` at most once per `min_refresh_s` and every `refresh_s` in the background. An
outage keeps the last good keys (and /health says so); a fetch never blocks more than one
request per `min_refresh_s` (the others see the keys as they are)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

log = logging.getLogger("mcpgw.auth")

MAX_JWKS_BYTES = 1024 * 1024
# Key types and curves we accept, by algorithm family (a key is only ever used with its own kind).
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class JwksError(ValueError):
    pass


def parse_jwks(data: Any, algorithms: tuple[str, ...]) -> dict[str, jwt.PyJWK]:
    """kid -> key, for the keys usable with one of `algorithms` (others are skipped, not fatal)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JwksError("not a JWK Set (an object with a 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") == "oct":
            continue  # never a symmetric key from a key set (HS* uses the configured secret only)
        alg = entry.get("alg")
        candidates = [alg] if isinstance(alg, str) else [a for a in algorithms if _KTY.get(a[:2]) == entry.get("kty")]
        for candidate in candidates:
            if candidate not in algorithms:
                continue
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry, algorithm=candidate)
                break
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
    return keys


class JwksCache:
    def __init__(
        self,
        url: str,
        file: str,
        algorithms: tuple[str, ...],
        timeout_s: float,
        min_refresh_s: float,
        refresh_s: float,
    ) -> None:
        self.url = url
        self.file = file
        self.algorithms = algorithms
        self.timeout_s = timeout_s
        self.min_refresh_s = min_refresh_s
        self.refresh_s = refresh_s
        self.keys: dict[str, jwt.PyJWK] = {}
        self.generation = 0  # bumps whenever the key set changes: verified-token caches drop their entries
        self.fetched_at: float | None = None  # wall clock of the last good fetch
        self.last_error = ""
        self.fetches = 0
        self.failures = 0
        self._last_attempt = -1e18
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        if file:
            self._install(self._read_file(), "file")

    def _read_file(self) -> dict[str, jwt.PyJWK]:
        try:
            data = json.loads(Path(self.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JwksError(f"MCPGW_AUTH_JWKS_FILE {self.file}: {exc}") from None
        keys = parse_jwks(data, self.algorithms)
        if not keys:
            raise JwksError(f"MCPGW_AUTH_JWKS_FILE {self.file}: no key usable with {', '.join(self.algorithms)}")
        return keys

    def _install(self, keys: dict[str, jwt.PyJWK], source: str) -> None:
        if set(keys) != set(self.keys) or any(keys[k].key != self.keys[k].key for k in keys):
            self.generation += 1
            log.info("JWKS from %s: %d key(s): %s", source, len(keys), ", ".join(sorted(keys)) or "-")
        self.keys = keys
        self.fetched_at = time.time()
        self.last_error = ""

    async def start(self) -> None:
        if not self.url or self._task is not None:
            return
        await self.refresh(force=True)
        if self.last_error:
            log.error(
                "JWKS %s unavailable at start-up (%s): every token is refused until it answers",
                self.url,
                self.last_error,
            )
        self._task = asyncio.ensure_future(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_forever(self) -> None:
        while True:
            # While keys are missing, retry at the fastest allowed pace; else at the regular one.
            await asyncio.sleep(self.min_refresh_s if (self.last_error or not self.keys) else self.refresh_s)
            await self.refresh(force=True)

    async def refresh(self, force: bool = False) -> None:
        """Fetch the key set, unless one was attempted within `min_refresh_s` (then: nothing)."""
        if not self.url:
            return
        async with self._lock:
            now = time.monotonic()
            if not force and now - self._last_attempt < self.min_refresh_s:
                return
            self._last_attempt = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, JwksError, ValueError) as exc:
                self.failures += 1
                self.last_error = str(exc) or type(exc).__name__
                log.warning(
                    "JWKS fetch from %s failed (%s); keeping %d last good key(s)",
                    self.url,
                    self.last_error,
                    len(self.keys),
                )
                return
            self._install(keys, self.url)

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        async with (
            httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise JwksError(f"HTTP {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
        keys = parse_jwks(json.loads(body), self.algorithms)
        if not keys:
            raise JwksError(f"no key usable with {', '.join(self.algorithms)}")
        return keys

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for `kid`; an unknown kid refreshes the set (at most once per min_refresh_s)."""
        found = self._lookup(kid)
        if found is None and self.url:
            await self.refresh()
            found = self._lookup(kid)
        return found

    def _lookup(self, kid: str) -> jwt.PyJWK | None:
        found = self.keys.get(kid)
        if found is None and not kid and len(self.keys) == 1:
            return next(iter(self.keys.values()))  # a token without kid, a set of one key
        return found

    def health(self) -> dict[str, Any]:
        state = "ok" if self.keys and not self.last_error else ("stale" if self.keys else "unavailable")
        return {
            "source": self.url or self.file,
            "state": state,  # stale: the last fetch failed, the last good keys are in use
            "keys": sorted(self.keys),
            "fetched_at": self.fetched_at,
            "fetches": self.fetches,
            "failures": self.failures,
            "last_error": self.last_error or None,
        }
