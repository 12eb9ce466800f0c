"""Encryption of direct identifiers at rest (R-SEC-ENCRYPT-REST) and keyed hashes to look them up.

AES-256-GCM with a key ring: settings.FIELD_ENCRYPTION_KEYS is a list of "key-id:base64-key" entries; the
first encrypts, every one decrypts, so a key is rotated by putting a new one first and running
`manage.py encryption_rotate`, which re-encrypts every value under the new key. A stored value reads
"hm1.<key-id>.<base64(nonce|ciphertext)>". Lookups (an email on import, a patient signing in) use an HMAC of
the normalised value under settings.IDENTIFIER_HASH_KEY, which is not rotated with the encryption keys.
"""
import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_PREFIX = "hm1"


@lru_cache(maxsize=8)
def _ring(keys: tuple[str, ...]) -> tuple[str, dict[str, AESGCM]]:
    ring: dict[str, AESGCM] = {}
    for entry in keys:
        key_id, _, encoded = entry.partition(":")
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if not key_id or len(raw) != 32:
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS entries are 'key-id:base64 of 32 bytes'.")
        ring[key_id] = AESGCM(raw)
    if not ring:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    return keys[0].partition(":")[0], ring


def _keys() -> tuple[str, dict[str, AESGCM]]:
    return _ring(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    current, ring = _keys()
    nonce = os.urandom(12)
    sealed = ring[current].encrypt(nonce, plaintext.encode("utf-8"), current.encode())
    return f"{_PREFIX}.{current}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def decrypt(token: str) -> str:
    prefix, key_id, payload = token.split(".", 2)
    if prefix != _PREFIX:
        raise ValueError("not an encrypted value")
    _, ring = _keys()
    blob = base64.urlsafe_b64decode(payload)
    return ring[key_id].decrypt(blob[:12], blob[12:], key_id.encode()).decode("utf-8")


def key_id_of(token: str) -> str:
    return token.split(".", 2)[1]


def current_key_id() -> str:
    return _keys()[0]


@lru_cache(maxsize=4)
def _keyed(key: str):
    return hmac.new(key.encode(), digestmod=hashlib.sha256)


def lookup_digest(value: str) -> str:
    """A keyed hash of a normalised identifier (trimmed, lower-cased): equal inputs give equal digests.
    The keyed state is prepared once per key and copied per value (an import hashes 200,000 of them)."""
    mac = _keyed(settings.IDENTIFIER_HASH_KEY).copy()
    mac.update(value.strip().lower().encode("utf-8"))
    return mac.hexdigest()


def new_key_entry(key_id: str) -> str:
    """A fresh "key-id:base64-key" entry for FIELD_ENCRYPTION_KEYS."""
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode().rstrip('=')}"
