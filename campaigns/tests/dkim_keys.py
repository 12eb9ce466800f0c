"""A throwaway DKIM key for tests, and the settings that point the signer at it (test_dkim, test_mail_backend)."""
import base64
from collections.abc import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from campaigns import dkim as campaign_dkim

SELECTOR, DOMAIN = "hm2026", "riverside-health.example"
SENDER = f"Riverside Health <news@{DOMAIN}>"


def rsa_key_pair(bits: int = 2048) -> tuple[bytes, bytes]:
    """(private key PEM, public key as the base64 DER a DKIM TXT record's p= holds)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pem, public


def dkim_configured(settings, tmp_path, pem: bytes) -> Iterator:
    """For a fixture to `yield from`: the key on disk and the DKIM settings naming it, the signer's cache cleared
    before and after."""
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem)
    settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH = str(path)
    settings.HIPAAMAIL_DKIM_SELECTOR = SELECTOR
    settings.HIPAAMAIL_DKIM_DOMAIN = DOMAIN
    settings.DEFAULT_FROM_EMAIL = SENDER
    campaign_dkim._signer_for.cache_clear()
    yield settings
    campaign_dkim._signer_for.cache_clear()
