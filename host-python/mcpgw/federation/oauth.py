"""OAuth 2.1 client credentials for an upstream that needs a token (`[upstreams.<id>.oauth]`).

The gateway is the OAuth client here, with its own identity: the token it sends an upstream comes
from the upstream's authorization server for the gateway's client id, never from the downstream
client (whose token, when auth is on, is for the gateway and stops there). One `ClientCredentials`
per upstream, shared by all its connections: the token is fetched on first use, kept, fetched
again once 80% of its lifetime has passed, and at once when the upstream answers 401 (the request
is then sent once more with the new token).

The token endpoint is configured, or discovered from the issuer's metadata (RFC 8414
`/.well-known/oauth-authorization-server`, then OpenID Connect discovery). The client
authenticates with HTTP Basic (`client_secret_basic`); the request names the scopes and the
resource (RFC 8707: the upstream's URL unless configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import httpx2

from ..asgi import is_loopback
from .config import OAuthConfig

log = logging.getLogger("mcpgw.federation")

REFRESH_AT = 0.8  # of a token's lifetime: fetch a new one after this much of it has passed
DISCOVERY = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


class TokenError(Exception):
    """No token could be had: the reason, in the gateway's words (no secret in it)."""


class ClientCredentials(httpx2.Auth):
    def __init__(self, upstream: str, config: OAuthConfig, resource: str, timeout_s: float) -> None:
        self.upstream = upstream
        self.config = config
        self.resource = config.resource or resource
        self.timeout = httpx2.Timeout(timeout_s or 10.0)
        self.token_endpoint = config.token_endpoint or None
        self.fetched = 0  # tokens obtained
        self.error: str | None = None  # the last failure to get one
        self._token: str | None = None
        self._renew_at = 0.0  # monotonic
        self._expires_at: float | None = None  # monotonic; None: the server did not say
        self._lock = asyncio.Lock()

    def health(self) -> dict[str, Any]:
        left = None if self._expires_at is None else round(self._expires_at - time.monotonic(), 1)
        return {
            "token_endpoint": self.token_endpoint,
            "resource": self.resource,
            "tokens_fetched": self.fetched,
            "token_expires_in_s": left if self._token else None,
            "error": self.error,
        }

    async def token(self, stale: str | None = None) -> str:
        """A token to send: the kept one while fresh, else a new one. `stale` is a token the upstream
        refused (401): replaced unless another request already did so."""
        async with self._lock:
            fresh = self._token is not None and time.monotonic() < self._renew_at
            if self._token is None or not fresh or self._token == stale:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            token = await self.token()
        except TokenError as exc:
            raise httpx2.ConnectError(f"no OAuth token: {exc}", request=request) from None
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # expired or revoked early: a new token, once
            await response.aread()
            try:
                token = await self.token(stale=token)
            except TokenError as exc:
                log.warning("upstream %s: refused our token and no new one could be had: %s", self.upstream, exc)
                return
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    async def _fetch(self) -> None:
        cfg = self.config
        try:
            async with httpx2.AsyncClient(timeout=self.timeout) as http:
                if self.token_endpoint is None:
                    self.token_endpoint = await self._discover(http)
                form = {"grant_type": "client_credentials", "resource": self.resource}
                if cfg.scopes:
                    form["scope"] = " ".join(cfg.scopes)
                started = time.monotonic()
                response = await http.post(
                    self.token_endpoint, data=form, auth=httpx2.BasicAuth(cfg.client_id, cfg.client_secret)
                )
        except httpx2.HTTPError as exc:
            raise self._failed(
                f"the authorization server could not be reached: {str(exc) or type(exc).__name__}"
            ) from None
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            said = body.get("error") if isinstance(body, dict) else None
            raise self._failed(f"the token endpoint answered {response.status_code}{f' ({said})' if said else ''}")
        self._token = body["access_token"]
        lifetime = body.get("expires_in")
        if isinstance(lifetime, (int, float)) and lifetime > 0:
            self._expires_at = started + lifetime
            self._renew_at = started + lifetime * REFRESH_AT
        else:  # no lifetime given: kept until the upstream refuses it
            self._expires_at, self._renew_at = None, float("inf")
        self.fetched += 1
        self.error = None
        log.info(
            "upstream %s: OAuth token obtained from %s (%s)",
            self.upstream,
            self.token_endpoint,
            f"expires in {lifetime} s" if self._expires_at is not None else "no expiry given",
        )

    async def _discover(self, http: httpx2.AsyncClient) -> str:
        issuer = self.config.issuer.rstrip("/")
        for path in DISCOVERY:
            response = await http.get(issuer + path)
            if response.status_code != 200:
                continue
            try:
                metadata = response.json()
            except ValueError:
                continue
            endpoint = metadata.get("token_endpoint") if isinstance(metadata, dict) else None
            if not isinstance(endpoint, str):
                continue
            if not _may_carry_secret(endpoint):  # the client secret goes there, as Basic auth
                raise self._failed(f"the metadata of {issuer} names a token endpoint that is not https: {endpoint}")
            log.info("upstream %s: token endpoint %s (from %s%s)", self.upstream, endpoint, issuer, path)
            return endpoint
        raise self._failed(f"no token_endpoint in the metadata of {issuer}")

    def _failed(self, reason: str) -> TokenError:
        """The failure, recorded and logged, to raise."""
        self.error = reason
        log.warning("upstream %s: no OAuth token: %s", self.upstream, reason)
        return TokenError(reason)


def _may_carry_secret(url: str) -> bool:
    """https, or plain http to this machine's loopback (a local authorization server)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback(parts.hostname)
