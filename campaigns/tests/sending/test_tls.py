"""R-SEC-TLS: both SMTP clients of the product (the campaign transport and Django's backend under production's DKIM
backend) verify the relay's certificate and host name; a relay whose certificate comes from a private CA is trusted
by adding that CA (EMAIL_CA_FILE, campaigns.sending.tls), never by switching verification off."""
import ssl

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

from campaigns.sending import transport
from campaigns.sending.backend import SmtpEmailBackend
from campaigns.sending.tls import smtp_tls_context
from campaigns.tests.tls_relay import pki_make, tls_relay


@pytest.fixture
def relay(tmp_path, settings):
    """A relay offering only STARTTLS with a certificate from a CA made for the test; the transport's cached TLS
    context is reset around the test (it is built once per process)."""
    pki = pki_make(tmp_path)
    transport._TLS_CONTEXT = None
    with tls_relay(pki) as (handler, port):
        settings.EMAIL_HOST, settings.EMAIL_PORT = "localhost", port
        settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = True, False
        settings.HIPAAMAIL_SMTP_ALLOW_PLAINTEXT_LOOPBACK = False
        yield pki, handler, port
    transport._TLS_CONTEXT = None


def _django_send(port: int) -> int:
    backend = SmtpEmailBackend(host="localhost", port=port, use_tls=True, fail_silently=False, timeout=10)
    message = EmailMessage("Your code", "Your code is: 123456", "news@riverside-health.org", ["ana@example.org"])
    return backend.send_messages([message])


def test_r_sec_tls_the_transport_refuses_a_relay_certificate_from_an_unknown_ca(relay, settings):
    pki, handler, port = relay
    settings.HIPAAMAIL_EMAIL_CA_FILE = ""

    with pytest.raises(ssl.SSLCertVerificationError):
        transport.SmtpTransport().open()

    assert handler.received() == []


def test_r_sec_tls_the_transport_trusts_the_relay_when_email_ca_file_names_its_ca(relay, settings):
    pki, handler, port = relay
    settings.HIPAAMAIL_EMAIL_CA_FILE = str(pki["ca"])
    sender = transport.SmtpTransport()

    sender.open()
    sender._smtp.sendmail("news@riverside-health.org", ["ana@example.org"], b"Subject: hello\r\n\r\nhello\r\n")
    sender.close()

    assert [(message["tls"], message["to"]) for message in handler.received()] == [(True, ["ana@example.org"])]


def test_r_sec_tls_django_s_backend_refuses_an_unknown_ca_and_trusts_email_ca_file(relay, settings):
    pki, handler, port = relay
    settings.HIPAAMAIL_EMAIL_CA_FILE = ""
    with pytest.raises(ssl.SSLCertVerificationError):
        _django_send(port)
    assert handler.received() == []

    settings.HIPAAMAIL_EMAIL_CA_FILE = str(pki["ca"])
    assert _django_send(port) == 1
    assert [(message["tls"], message["to"]) for message in handler.received()] == [(True, ["ana@example.org"])]


def test_r_sec_tls_the_context_always_verifies_the_certificate_and_the_host_name(settings, tmp_path):
    settings.HIPAAMAIL_EMAIL_CA_FILE = str(pki_make(tmp_path)["ca"])

    context = smtp_tls_context()

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_an_unreadable_email_ca_file_is_a_clear_configuration_error(settings, tmp_path):
    settings.HIPAAMAIL_EMAIL_CA_FILE = str(tmp_path / "missing.pem")

    with pytest.raises(ImproperlyConfigured, match=r"EMAIL_CA_FILE .* must be a readable PEM file"):
        smtp_tls_context()
