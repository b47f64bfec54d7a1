"""API keys: made here, shown once, stored only as their SHA-256."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import uuid

from ..domain.records import ApiKey
from .deps import Deps

KEY_PREFIX = "pf_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(deps: Deps, client_id: str | None = None, label: str = "") -> tuple[str, ApiKey]:
    """A new key for ``client_id`` (a new client when None); returns the key and its record."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        key_hash=hash_key(key),
        client_id=client_id or f"client-{uuid.uuid4().hex[:12]}",
        prefix=key[:10],
        created_at=deps.now(),
        label=label,
    )
    deps.store.put_api_key(record)
    return key, record


def authenticate(deps: Deps, key: str | None) -> str | None:
    """The client id of a valid, unrevoked key; None otherwise."""
    if not key:
        return None
    digest = hash_key(key)
    record = deps.store.get_api_key(digest)
    # The lookup is by hash; comparing again in constant time keeps the check itself free
    # of early exits even if a store ever returned a near match.
    if record is None or not hmac.compare_digest(record.key_hash, digest) or record.revoked:
        return None
    return record.client_id


def revoke_key(deps: Deps, prefix_or_hash: str) -> list[ApiKey]:
    """Revoke the keys whose prefix or hash matches; returns them."""
    hits = [k for k in deps.store.list_api_keys() if prefix_or_hash in (k.prefix, k.key_hash) and not k.revoked]
    for key in hits:
        deps.store.put_api_key(dataclasses.replace(key, revoked_at=deps.now()))
    return hits
