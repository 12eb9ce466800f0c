"""A throwaway DKIM key for tests, and the settings that point the signer at it (test_dkim, test_mail_backend)."""
import base64
import email
import re
from collections.abc import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from campaigns.sending import dkim as campaign_dkim

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


def dns_resolver(public: bytes):
    """dkimpy's DNS lookup (`dnsfunc`), answered with `public` for our selector and nothing for anything else;
    the names it was asked are kept in `.looked_up`."""
    looked_up: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        looked_up.append(name)
        if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode():
            return b"v=DKIM1; k=rsa; p=" + public
        return None

    dnsfunc.looked_up = looked_up
    return dnsfunc


def signature_tags(raw: bytes) -> dict[str, str]:
    """The tags of a message's (first) DKIM-Signature header, unfolded."""
    value = email.message_from_bytes(raw)["DKIM-Signature"]
    unfolded = re.sub(r"\s+", "", str(value))
    return dict(tag.split("=", 1) for tag in unfolded.split(";") if tag)


def replaced(old: bytes, new: bytes):
    """A tampering: the first `old` in the raw message becomes `new`."""
    return lambda raw: raw.replace(old, new, 1)


def substituted(pattern: bytes, replacement: bytes):
    """A tampering: the first match of `pattern` in the raw message is substituted."""
    return lambda raw: re.sub(pattern, replacement, raw, count=1)


def added(header: bytes, *, first: bool = False):
    """A tampering: `header` (b"Name: value") added as the last field of the header block, or with `first` in
    front of every other (where relays put theirs). A verifier hashes the bottom-most copy of a header for each
    time h= names it, so only over-signing (RFC 6376 section 5.4) catches a copy added above the original."""
    if first:
        return lambda raw: header + b"\r\n" + raw
    return lambda raw: raw.replace(b"\r\n\r\n", b"\r\n" + header + b"\r\n\r\n", 1)


def header_count(raw: bytes, name: bytes) -> int:
    """How many fields named `name` the message's header block has."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    return len(re.findall(rb"(?im)^" + re.escape(name) + rb"[ \t]*:", head))
