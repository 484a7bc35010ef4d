"""Building the parts of auth from the settings (the composition roots call these)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..settings import Settings
from ..state.principal import ANONYMOUS, Principal
from .errors import AuthFailure
from .gate import Gate, ResourceServer
from .jwks import JwksCache
from .policy import Policy
from .tokens import ApiKeyAuthenticator, Authenticator, JwtAuthenticator


def public_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def unauthenticated_exposure(settings: Settings) -> bool:
    """Auth none on an address other machines can reach."""
    return settings.auth == "none" and not settings.loopback_bind


def build_authenticator(settings: Settings) -> Authenticator | None:
    """The authenticator of MCPGW_AUTH (None for none); ValueError says what is missing."""
    if settings.auth == "jwt":
        jwks = JwksCache(
            settings.auth_jwks_url,
            settings.auth_jwks_file,
            settings.auth_algorithms,
            settings.auth_jwks_timeout_s,
            settings.auth_jwks_min_refresh_s,
            settings.auth_jwks_refresh_s,
        )
        return JwtAuthenticator(
            settings.auth_issuer,
            jwks,
            settings.auth_algorithms,
            settings.auth_leeway_s,
            settings.auth_hs_secret,
            settings.auth_token_cache_entries,
        )
    if settings.auth == "api-key":
        return ApiKeyAuthenticator(settings.auth_api_keys_file)
    return None


def build_gate(
    settings: Settings, authenticator: Authenticator | None, policy: Policy, known_server: Callable[[str], bool]
) -> Gate | None:
    if authenticator is None:
        return None
    servers = settings.auth_authorization_servers or ((settings.auth_issuer,) if settings.auth_issuer else ())
    resources = ResourceServer(
        public_url(settings), settings.path_prefix, servers, policy.scopes_supported(), known_server
    )
    return Gate(authenticator, resources, policy, settings.auth_audience)


def stdio_principal(settings: Settings) -> Principal:
    """`mcpgw stdio`: the caller is whoever started the process (the MCP spec's advice for stdio:
    credentials from the environment). With auth none, the anonymous principal; otherwise
    MCPGW_AUTH_TOKEN, verified like an HTTP bearer token (audience: the gateway's resource)."""
    authenticator = build_authenticator(settings)
    if authenticator is None:
        return ANONYMOUS
    if not settings.auth_token:
        raise ValueError(f"mcpgw stdio with MCPGW_AUTH={settings.auth} needs MCPGW_AUTH_TOKEN")
    base = public_url(settings) + settings.path_prefix
    audiences = settings.auth_audience or (base, base + "/mcp")

    async def verify() -> Principal:
        await authenticator.start()
        try:
            return await authenticator.authenticate(settings.auth_token, audiences)
        finally:
            await authenticator.stop()

    try:
        return asyncio.run(verify())
    except AuthFailure as exc:
        raise ValueError(f"MCPGW_AUTH_TOKEN refused: {exc.reason}") from None
