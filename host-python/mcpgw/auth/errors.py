"""Why a request is not let in: what the client is told (RFC 6750) and what the log says."""

from __future__ import annotations


class AuthFailure(Exception):
    """401: no usable credentials. `presented` says whether a token was sent (then the challenge
    carries error="invalid_token"); `reason` is for the log and /health, never a secret."""

    def __init__(self, reason: str, presented: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.presented = presented


class Forbidden(Exception):
    """403 insufficient_scope: the token is good, the policy wants more."""

    def __init__(self, scopes: tuple[str, ...], reason: str) -> None:
        super().__init__(reason)
        self.scopes = scopes
        self.reason = reason
