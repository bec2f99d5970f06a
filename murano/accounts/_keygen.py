"""API key material: generated from `secrets`, stored only as a SHA-256 digest.

A plain digest (no salt, no slow KDF) is enough because the keys carry ~238 random bits:
there is nothing to brute-force or to precompute. Lookups go by the non-secret prefix and
the digest is then compared in constant time, so no timing ever depends on the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

__all__ = ["KEY_SCHEME", "PREFIX_LENGTH", "generate_key", "hash_key", "key_prefix", "verify"]

KEY_SCHEME = "mur_"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_CHARS = 40
# "mur_" and 8 random characters: shown in listings, logs and the CLI to name a key.
PREFIX_LENGTH = len(KEY_SCHEME) + 8


def generate_key() -> str:
    return KEY_SCHEME + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The displayable head of a key. Keys given in settings may be short: a key of
    fewer than 24 characters shows only its first quarter, so the prefix never gives
    most of a weak key away."""
    length = PREFIX_LENGTH if len(key) >= 24 else len(key) // 4
    return key[:length]


def verify(key: str, digest: str) -> bool:
    return hmac.compare_digest(hash_key(key), digest)
