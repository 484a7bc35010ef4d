"""Ed25519 signatures on edge components (`MCPGW_EDGE_SIGNING_KEYS`).

When keys are configured, a component serves only with a detached signature
that one of them verifies: over the component's bytes exactly as uploaded or
read from disk. At start-up the signature is the file next to the component,
`<component>.sig`; on the admin API it is `?signature=` or the
`Mcpgw-Signature` header. Signatures and key files are base64 (standard or
URL-safe alphabet) of the raw 64-byte signature / 32-byte key; a key file may
also be a PEM `PUBLIC KEY`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

SIGNATURE_SUFFIX = ".sig"
MAX_SIGNATURE_TEXT = 200


def _b64(text: str | bytes) -> bytes:
    data = text.strip() if isinstance(text, bytes) else text.strip().encode("ascii", "replace")
    try:
        if b"-" in data or b"_" in data:
            return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def load_keys(specs: Iterable[str]) -> tuple[Ed25519PublicKey, ...]:
    """Each entry is a key file (PEM, or base64 of the raw 32 bytes) or the base64 itself.
    Raises ValueError naming the entry by position (keys are public, but an entry that is
    neither may be a secret pasted in the wrong place)."""
    keys = []
    for n, spec in enumerate(specs, 1):
        path = Path(spec)
        try:
            raw: str | bytes = path.read_bytes() if path.is_file() else spec
        except OSError as exc:
            raise ValueError(f"entry {n}: cannot read the key file: {exc.strerror}") from None
        try:
            if isinstance(raw, bytes) and raw.lstrip().startswith(b"-----BEGIN"):
                key = load_pem_public_key(raw)
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError("a PEM public key, but not an Ed25519 one")
            else:
                key = Ed25519PublicKey.from_public_bytes(_b64(raw))
        except ValueError as exc:
            raise ValueError(f"entry {n}: not an Ed25519 public key file or base64 key ({exc})") from None
        keys.append(key)
    return tuple(keys)


def decode_signature(text: str | bytes) -> bytes:
    """A detached signature as uploaded: base64 of 64 bytes. ValueError otherwise."""
    if len(text) > MAX_SIGNATURE_TEXT:
        raise ValueError("the signature is longer than any base64 Ed25519 signature")
    sig = _b64(text)
    if len(sig) != 64:
        raise ValueError(f"an Ed25519 signature is 64 bytes, this one {len(sig)}")
    return sig


def signature_problem(wasm: bytes, signature: bytes | None, keys: tuple[Ed25519PublicKey, ...]) -> str | None:
    """None when no keys are configured or one of them verifies `signature` over `wasm`."""
    if not keys:
        return None
    if signature is None:
        return "unsigned: MCPGW_EDGE_SIGNING_KEYS is set and no signature came with the component"
    for key in keys:
        try:
            key.verify(signature, wasm)
        except InvalidSignature:
            continue
        return None
    return f"the signature does not verify with any of the {len(keys)} configured keys"


def sidecar_signature(component: Path) -> bytes | None:
    """The start-up component's signature, `<component>.sig`, or None when there is none.
    ValueError when it exists but is not a signature."""
    sig = component.with_name(component.name + SIGNATURE_SUFFIX)
    try:
        text = sig.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {sig.name}: {exc.strerror}") from None
    return decode_signature(text)
