"""A TLS relay for tests: a CA made for the run and a server certificate it signed (cryptography), and an aiosmtpd
handler that records whether each message came over TLS. With `require_starttls=True` the server refuses MAIL
before STARTTLS, so a message in clear cannot be accepted. Used by the certificate tests of the SMTP clients
(campaigns/tests/sending/test_tls.py) and the production smoke test (hipaamail/tests/test_production_smoke.py)."""
import base64
import contextlib
import datetime
import email
import ipaddress
import ssl
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from campaigns.tests.smtp_server import free_port


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def pki_make(folder: Path, *, host: str = "localhost") -> dict:
    """A CA made for this run and one server certificate it signed, for `host`, localhost and 127.0.0.1. Returns
    the paths of the CA certificate ("ca"), the server's certificate ("cert") and key ("key"), and the base64
    SHA-256 of the server's public key ("spki", what Chromium's --ignore-certificate-errors-spki-list takes)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("hipaamail smoke-test CA")).issuer_name(_name("hipaamail smoke-test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(host), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = (
        x509.CertificateBuilder().subject_name(_name(host)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server-key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
    spki = server.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    paths["spki"] = base64.b64encode(digest.finalize()).decode()
    return paths


class TlsOnlyHandler:
    """Records each message and whether its session had switched to TLS (the server refuses MAIL before STARTTLS)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        with self.lock:
            self.messages.append({"tls": session.ssl is not None, "to": [r.lower() for r in envelope.rcpt_tos],
                                  "message": email.message_from_bytes(raw)})  # fmt: skip
        return "250 accepted"

    def received(self) -> list[dict]:
        with self.lock:
            return list(self.messages)


@contextlib.contextmanager
def tls_relay(pki: dict):
    """An SMTP server on 127.0.0.1 offering STARTTLS with pki's certificate and refusing mail without it; yields
    (handler, port)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    handler = TlsOnlyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="localhost",
                            tls_context=context, require_starttls=True, ready_timeout=10)  # fmt: skip
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
