"""DKIM signatures for outgoing campaign messages (RFC 6376), so that the signature covers the one-click
unsubscribe headers (R-RFC8058 section 4) and the headers a reader trusts (From, To, Cc, Reply-To, Subject, Date,
Message-ID).

The transports call `dkim_signer()` once per batch and `signer.sign(raw)` once per message when
`HIPAAMAIL_DKIM_PRIVATE_KEY_PATH` is set (with `HIPAAMAIL_DKIM_SELECTOR` and `HIPAAMAIL_DKIM_DOMAIN`).

Why not `dkim.sign()` as it is: it parses the PEM key on every call and computes RSA in pure Python, about
15 ms a message on our machines (measured), which would cap a worker near 60 messages a second. So the key is
loaded once per process with `cryptography` and the RSA step runs in OpenSSL (about 0.5 ms); everything that
decides what is signed and how — header parsing, relaxed/simple canonicalisation, header selection, folding,
the b= blanking — is dkimpy's own code, and the tests verify the result with dkimpy's verifier.
"""
import base64
import hashlib
import os
import time
from functools import lru_cache

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from dkim.canonicalization import CanonicalizationPolicy

# What the signature covers, in order. Each header of the first list is hashed when present; a name the message
# lacks hashes as nothing, so a Cc added to a message that had none breaks the signature too. The second list
# "oversigns" the headers a forwarder or attacker would most like to add a second copy of: each is listed once
# more than it occurs, so that a copy added anywhere breaks the signature (RFC 6376 sections 5.4 and 8.15). A
# verifier hashes the bottom-most copy first, so without oversigning a copy added above the original (where a
# mail client may show it) would pass. Reply-To and Cc are in both: they decide who gets a patient's answer
# (R-CANSPAM-HEADERS).
OVERSIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
SIGNED_HEADERS = (*OVERSIGNED_HEADERS, b"mime-version", b"content-type")
MINIMUM_KEY_BITS = 1024  # RFC 8301 section 3.2; 2048 recommended

_CANONICALIZATION = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
_SIGNATURE_NAME = b"DKIM-Signature"


class DkimSigner:
    """Signs RFC 5322 messages (bytes, CRLF) with one RSA key for one selector and domain."""

    def __init__(self, *, selector: str, domain: str, private_key_pem: bytes, clock=time.time):
        try:
            key = serialization.load_pem_private_key(private_key_pem, password=None)
        except (ValueError, TypeError) as error:
            raise ImproperlyConfigured(f"The DKIM private key cannot be read ({type(error).__name__}).") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ImproperlyConfigured("The DKIM private key must be an RSA key (rsa-sha256).")
        if key.key_size < MINIMUM_KEY_BITS:
            raise ImproperlyConfigured(f"The DKIM key has {key.key_size} bits; at least {MINIMUM_KEY_BITS}.")
        self.selector = selector.encode("ascii")
        self.domain = domain.lower().encode("ascii")
        self._key = key
        self._clock = clock
        self.include_headers = SIGNED_HEADERS + OVERSIGNED_HEADERS

    def signature_header(self, message: bytes) -> bytes:
        """The `DKIM-Signature: ...\\r\\n` line(s) to put in front of `message`."""
        headers, body = dkim.rfc822_parse(message)
        body_hash = base64.b64encode(hashlib.sha256(_CANONICALIZATION.canonicalize_body(body)).digest())
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", _CANONICALIZATION.to_c_value()),
            (b"d", self.domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector),
            (b"t", str(int(self._clock())).encode("ascii")),
            (b"h", b" : ".join(self.include_headers)),
            (b"bh", body_hash),
            # A placeholder long enough to fold onto a line of its own, so that putting the real value in
            # does not move the folding of the tags before it (as dkimpy does).
            (b"b", b"0" * 60),
        ]
        unsigned = dkim.fold(b"; ".join(b"=".join(field) for field in fields), namelen=len(_SIGNATURE_NAME))
        unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            _CANONICALIZATION,
            _CANONICALIZATION.canonicalize_headers(headers),
            self.include_headers,
            (_SIGNATURE_NAME, b" " + unsigned),
            dict(fields),
        )
        signature = self._key.sign(hasher.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value = dkim.fold(b"; ".join(b"=".join(field) for field in fields) + b"\r\n", namelen=len(_SIGNATURE_NAME))
        return _SIGNATURE_NAME + b": " + value

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header first."""
        return self.signature_header(message) + message


@lru_cache(maxsize=4)
def _signer_for(selector: str, domain: str, path: str, modified: float) -> DkimSigner:
    try:
        with open(path, "rb") as key_file:
            pem = key_file.read()
    except OSError as error:
        raise ImproperlyConfigured(f"The DKIM private key file cannot be read ({type(error).__name__}).") from None
    return DkimSigner(selector=selector, domain=domain, private_key_pem=pem)


def dkim_signer() -> DkimSigner | None:
    """The process's signer for the current settings, or None when no key is configured. The key is read and
    parsed once (again only when the file changes: a rotated key is picked up by the next batch)."""
    path = settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH
    if not path:
        return None
    selector, domain = settings.HIPAAMAIL_DKIM_SELECTOR, settings.HIPAAMAIL_DKIM_DOMAIN
    if not (selector and domain):
        raise ImproperlyConfigured("DKIM_PRIVATE_KEY_PATH is set: DKIM_SELECTOR and DKIM_DOMAIN are needed too.")
    try:
        modified = os.stat(path).st_mtime
    except OSError as error:
        raise ImproperlyConfigured(f"The DKIM private key file cannot be read ({type(error).__name__}).") from None
    return _signer_for(selector, domain, path, modified)
