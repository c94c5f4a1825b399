"""Signed documents and product codes, pure: what a product instance's Smart Agent and the licensing authority
exchange, so both sides read them the same way.

Two kinds of text travel between a product instance and the authority:
- **signed** documents (identity certificates, reservation authorization codes): `<body>.<signature>`, the body
  base64url JSON, the signature Ed25519 by the authority's key. Anyone with the authority's public key verifies
  them; a changed byte fails.
- **product codes** (reservation request, confirmation and return codes): the instance has no key of its own before
  it registers, so its codes carry a SHA-256 check instead: `<body>.<check>`. A typo or an edit is caught; the
  authority then checks the content against what it issued.

Every refusal is a `CodeError` whose message says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_CODE = 8192
IDENTITY = "identity-certificate"
AUTHORIZATION_CODE = "reservation-authorization"
REQUEST_CODE = "reservation-request"
CONFIRMATION_CODE = "reservation-confirmation"
RETURN_CODE = "reservation-return"
SYNC_REQUEST = "onprem-sync-request"
"""An SSM On-Prem's usage, signed by its key, for the central authority."""
SYNC_ANSWER = "onprem-sync-answer"
"""The central authority's answer to a sync request: the entitlements, signed by its key."""
MAX_SYNC = 1_000_000


class CodeError(ValueError):
    """A code or signed document that cannot be accepted; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CodeError(f"{what} is not base64url text") from None


def _body(payload: dict[str, Any]) -> str:
    return _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _split(code: str, what: str, limit: int = MAX_CODE) -> tuple[str, str]:
    if not isinstance(code, str):
        raise CodeError(f"{what} must be text")
    code = code.strip()
    if not code or len(code) > limit:
        raise CodeError(f"{what} is empty or longer than {limit} characters")
    if not code.isascii():
        raise CodeError(f"{what} holds characters no code has (codes are base64url text): was it copied whole?")
    body, dot, tail = code.rpartition(".")
    if not dot or not body or not tail:
        raise CodeError(f"{what} is not in the form <body>.<check>: was it copied whole?")
    return body, tail


def _payload(body: str, what: str, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(_unb64(body, what))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CodeError(f"{what} does not hold a JSON document") from None
    if not isinstance(payload, dict):
        raise CodeError(f"{what} does not hold a JSON object")
    if payload.get("kind") != kind:
        raise CodeError(f"{what} is a {payload.get('kind')!r}, not a {kind!r}")
    return payload


# ---------------------------------------------------------------- signed by the authority


def new_key() -> str:
    """A new Ed25519 private key, PEM."""
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CodeError("the authority's key is not an Ed25519 key")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_keys(pem: str) -> tuple[str, ...]:
    """The Ed25519 public keys of a PEM text (one or more `PUBLIC KEY` blocks), each as its own PEM; CodeError says
    which block is not one."""
    marker = "-----END PUBLIC KEY-----"
    blocks = [b.strip() + "\n" + marker + "\n" for b in pem.split(marker) if b.strip()]
    if not blocks or "-----BEGIN PUBLIC KEY-----" not in pem:
        raise CodeError("holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
    out = []
    for n, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except ValueError:
            raise CodeError(f"key {n} is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise CodeError(f"key {n} is not an Ed25519 key")
        out.append(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        )
    return tuple(out)


def sign(key: Ed25519PrivateKey, kind: str, payload: dict[str, Any]) -> str:
    body = _body({**payload, "kind": kind})
    return f"{body}.{_b64(key.sign(body.encode()))}"


def verify(public: Ed25519PublicKey | str, code: str, kind: str, what: str, limit: int = MAX_CODE) -> dict[str, Any]:
    """The payload of a document the authority signed; CodeError when it was changed or is not one. `limit`: its
    longest length (a sync file between authorities is longer than a code a person copies)."""
    if isinstance(public, str):
        loaded = serialization.load_pem_public_key(public.encode())
        if not isinstance(loaded, Ed25519PublicKey):
            raise CodeError("the authority's public key is not an Ed25519 key")
        public = loaded
    body, signature = _split(code, what, limit)
    raw = _unb64(signature, what)
    if _b64(raw) != signature:
        # base64 leaves the last character's low bits unused: another character there decodes to the same bytes.
        # Only the canonical text is the document the authority signed.
        raise CodeError(f"{what} was changed after it was signed (its signature is not as the authority wrote it)")
    try:
        public.verify(raw, body.encode())
    except InvalidSignature:
        raise CodeError(f"{what} was not signed by this authority, or was changed after it was signed") from None
    return _payload(body, what, kind)


def peek(code: str, limit: int = MAX_CODE) -> dict[str, Any]:
    """What a signed document says, unverified (to route a request; `verify` before trusting it). Total: anything
    that is not one is a CodeError."""
    body, _ = _split(code, "the document", limit)
    try:
        payload = json.loads(_unb64(body, "the document"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CodeError("the document does not hold a JSON document") from None
    if not isinstance(payload, dict):
        raise CodeError("the document does not hold a JSON object")
    return payload


# ---------------------------------------------------------------- made by a product instance


def product_code(kind: str, payload: dict[str, Any]) -> str:
    body = _body({**payload, "kind": kind})
    return f"{body}.{hashlib.sha256(body.encode()).hexdigest()[:16]}"


def read_product_code(code: str, kind: str, what: str) -> dict[str, Any]:
    body, check = _split(code, what)
    if hashlib.sha256(body.encode()).hexdigest()[:16] != check:
        raise CodeError(f"{what} fails its check: it was changed or mistyped")
    return _payload(body, what, kind)
