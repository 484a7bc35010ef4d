"""Authenticators: a bearer credential in, a Principal out (or AuthFailure).

- `JwtAuthenticator`: a signed JWT from the configured issuer, verified by PyJWT with keys from
  the JWKS (or the HS* secret when HS* is explicitly allowed); `aud` checked per request against
  the audiences of the resource being called.
- `ApiKeyAuthenticator`: keys listed in a file as SHA-256 hashes with a name and scopes,
  compared in constant time.

Verified JWTs are cached (bounded, by token) until they expire or the key set changes, so a
repeated token costs a dictionary lookup and a clock comparison (`JwtAuthenticator.held`, which the
gate calls before anything else); see docs/auth.md for what that means for revocation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import jwt

from ..state.principal import Principal
from .errors import AuthFailure
from .jwks import JwksCache

DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA"}
)
SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
MIN_SECRET_BYTES = 32
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class Authenticator(Protocol):
    mode: str
    counts: dict[str, int]

    async def authenticate(self, token: str, audiences: Iterable[str]) -> Principal: ...
    def held(self, token: bytes) -> Verified | None: ...
    def health(self) -> dict[str, Any]: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The token of the one `Authorization: Bearer` header (RFC 6750 2.1); AuthFailure otherwise.
    A token anywhere else (the query string, a form body) is never looked at."""
    values = [v for k, v in headers if k == b"authorization"]
    if not values:
        raise AuthFailure("no Authorization header", presented=False)
    if len(values) > 1:
        raise AuthFailure("more than one Authorization header")
    try:
        text = values[0].decode("ascii")
    except UnicodeDecodeError:
        raise AuthFailure("Authorization header is not ASCII") from None
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthFailure("Authorization scheme is not Bearer")
    token = token.strip()
    if not _TOKEN68.fullmatch(token):
        raise AuthFailure("malformed bearer token")
    return token


def check_algorithms(algorithms: tuple[str, ...], hs_secret: str) -> None:
    """Start-up check of MCPGW_AUTH_ALGORITHMS (raises ValueError with the reason)."""
    if not algorithms:
        raise ValueError("MCPGW_AUTH_ALGORITHMS is empty")
    for alg in algorithms:
        if alg.lower() == "none":
            raise ValueError("MCPGW_AUTH_ALGORITHMS: 'none' (unsigned tokens) is never accepted")
        if alg in SYMMETRIC:
            if len(hs_secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"MCPGW_AUTH_ALGORITHMS lists {alg}: it needs MCPGW_AUTH_HS_SECRET of at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
        elif alg not in ASYMMETRIC:
            raise ValueError(f"MCPGW_AUTH_ALGORITHMS: unknown algorithm {alg!r}")
    if hs_secret and not any(a in SYMMETRIC for a in algorithms):
        raise ValueError("MCPGW_AUTH_HS_SECRET is set but MCPGW_AUTH_ALGORITHMS lists no HS* algorithm")


@dataclass(slots=True)
class Verified:
    """A verified token, as the cache keeps it: everything a request needs, built once per token.
    `expires` and `not_before` are exp and nbf with the leeway applied."""

    principal: Principal
    audiences: frozenset[str]
    expires: float
    not_before: float
    generation: int


class JwtAuthenticator:
    mode = "jwt"

    def __init__(
        self,
        issuer: str,
        jwks: JwksCache,
        algorithms: tuple[str, ...],
        leeway_s: float,
        hs_secret: str,
        cache_entries: int,
    ) -> None:
        check_algorithms(algorithms, hs_secret)
        if not issuer:
            raise ValueError("MCPGW_AUTH=jwt needs MCPGW_AUTH_ISSUER")
        if not (jwks.url or jwks.file) and not hs_secret:
            raise ValueError("MCPGW_AUTH=jwt needs MCPGW_AUTH_JWKS_URL or MCPGW_AUTH_JWKS_FILE (or an HS* secret)")
        self.issuer = issuer
        self.jwks = jwks
        self.algorithms = algorithms
        self.leeway_s = leeway_s
        self._secret = hs_secret.encode()
        self.cache_entries = cache_entries
        # By the token's bytes, as a request's Authorization header carries them (`held`).
        self._cache: OrderedDict[bytes, Verified] = OrderedDict()
        # The last token `held` found, and its entry: the same token again is found by comparing
        # its bytes in constant time (no hash of a token of a kilobyte). Checked like any entry.
        self._last_token = b""
        self._last: Verified | None = None
        self.counts = {"verified": 0, "cached": 0, "rejected": 0}

    async def start(self) -> None:
        await self.jwks.start()

    async def stop(self) -> None:
        await self.jwks.stop()

    async def authenticate(self, token: str, audiences: Iterable[str]) -> Principal:
        try:
            entry = self._cached(token)
            if entry is None:
                entry = await self._verify(token)
            else:
                self.counts["cached"] += 1
            if entry.audiences.isdisjoint(audiences):
                raise AuthFailure("token audience is not this resource")
        except AuthFailure:
            self.counts["rejected"] += 1
            raise
        return entry.principal

    def held(self, token: bytes) -> Verified | None:
        """The cache's entry for `token` while it may be used without verifying it again (same
        key set, not expired, already valid), else None: the caller then goes the whole way
        (`authenticate`), which decides, answers and counts. Not counted here."""
        entry = self._last
        # In constant time: the last token may be another caller's, and a comparison that stops at
        # the first differing byte would time how much of it a guess got right.
        if (
            entry is None
            or entry.generation != self.jwks.generation
            or not hmac.compare_digest(token, self._last_token)
        ):
            entry = self._cache.get(token)
            if entry is None or entry.generation != self.jwks.generation:
                return None
            self._last_token, self._last = token, entry
        now = time.time()
        if now > entry.expires or now < entry.not_before:
            return None
        return entry

    def _cached(self, token: str) -> Verified | None:
        key = token.encode()
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = time.time()
        if entry.generation != self.jwks.generation or now > entry.expires:
            del self._cache[key]
            return None
        if now < entry.not_before:
            raise AuthFailure("token not yet valid")
        return entry

    async def _verify(self, token: str) -> Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthFailure(f"algorithm {alg!r} not accepted")
        key: Any
        if alg in SYMMETRIC:
            key = self._secret
        else:
            kid = header.get("kid", "")
            found = await self.jwks.key(kid if isinstance(kid, str) else "")
            if found is None:
                raise AuthFailure("unknown signing key (kid)")
            if found.algorithm_name != alg:
                raise AuthFailure(f"key {kid!r} is for {found.algorithm_name}, token says {alg}")
            key = found.key
        generation = self.jwks.generation
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("token not yet valid") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure("token issuer is not the configured issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("bad signature") from None
        except jwt.PyJWTError as exc:
            raise AuthFailure(f"invalid token: {type(exc).__name__}") from None
        aud = claims.get("aud")
        audiences = (
            frozenset([aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)]) if aud else frozenset()
        )
        sub = claims.get("sub")
        principal = Principal(
            "jwt",
            sub if isinstance(sub, str) else str(claims.get("client_id", "")),
            self.issuer,
            scopes_of(claims),
            MappingProxyType(claims),
        )
        nbf = claims.get("nbf")
        entry = Verified(
            principal,
            audiences,
            float(claims["exp"]) + self.leeway_s,
            (float(nbf) if isinstance(nbf, (int, float)) else 0.0) - self.leeway_s,
            generation,
        )
        self.counts["verified"] += 1
        if self.cache_entries:
            self._cache[token.encode()] = entry
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return entry

    def health(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "algorithms": list(self.algorithms),
            "jwks": self.jwks.health() if (self.jwks.url or self.jwks.file) else None,
            "token_cache": {"entries": len(self._cache), "max": self.cache_entries},
            **self.counts,
        }


# -- API keys -------------------------------------------------------------------
KEY_LINE = re.compile(r"(?P<name>[A-Za-z0-9._@-]{1,64})\s+sha256:(?P<hash>[0-9a-f]{64})(?P<scopes>(\s+\S+)*)")


def hash_line(name: str, key: str, scopes: Iterable[str]) -> str:
    """The line `mcpgw auth hash-key` prints for the keys file."""
    if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
        raise ValueError("a key name is 1-64 letters, digits and . _ @ -")
    return " ".join([name, "sha256:" + hashlib.sha256(key.encode()).hexdigest(), *scopes])


def new_key() -> str:
    return "mcpgw_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class _Key:
    name: str
    digest: bytes
    scopes: frozenset[str]


def load_keys(path: str) -> list[_Key]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"MCPGW_AUTH_API_KEYS_FILE {path}: {exc.strerror or exc}") from None
    keys: list[_Key] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        found = KEY_LINE.fullmatch(line)
        if found is None:
            raise ValueError(f"{path}, line {number}: expected `<name> sha256:<64 hex> [scope ...]`")
        if found["name"] in names:
            raise ValueError(f"{path}, line {number}: key name {found['name']!r} is listed twice")
        names.add(found["name"])
        keys.append(_Key(found["name"], bytes.fromhex(found["hash"]), frozenset(found["scopes"].split())))
    if not keys:
        raise ValueError(f"MCPGW_AUTH_API_KEYS_FILE {path}: no keys")
    return keys


class ApiKeyAuthenticator:
    mode = "api-key"

    def __init__(self, path: str) -> None:
        if not path:
            raise ValueError("MCPGW_AUTH=api-key needs MCPGW_AUTH_API_KEYS_FILE")
        self.path = path
        self.keys = load_keys(path)
        self.counts = {"accepted": 0, "rejected": 0}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def held(self, token: bytes) -> Verified | None:
        return None  # nothing cached: every key is compared, in constant time, on every request

    async def authenticate(self, token: str, audiences: Iterable[str]) -> Principal:
        digest = hashlib.sha256(token.encode()).digest()
        found: _Key | None = None
        for key in self.keys:  # every key compared, in constant time each: no early exit
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            self.counts["rejected"] += 1
            raise AuthFailure("unknown API key")
        self.counts["accepted"] += 1
        return Principal("api-key", found.name, "", found.scopes, MappingProxyType({"sub": found.name}))

    def health(self) -> dict[str, Any]:
        return {"file": self.path, "keys": len(self.keys), **self.counts}


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """OAuth's `scope` (space-separated) and the `scp` list some servers issue."""
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        found.update(s for s in scp if isinstance(s, str))
    elif isinstance(scp, str):
        found.update(scp.split())
    return frozenset(found)
