"""The TLS context every SMTP connection of the product uses (R-SEC-TLS): the campaign transport's STARTTLS or
implicit TLS (campaigns.sending.transport) and Django's SMTP backend for account and alert mail
(campaigns.sending.backend.SmtpEmailBackend).

The relay's certificate and host name are always verified. The trusted CAs are the system's store and, when
`EMAIL_CA_FILE` (settings.HIPAAMAIL_EMAIL_CA_FILE) names a PEM file, the CA certificates in it too: a relay whose
certificate comes from a private CA is trusted by adding that CA, never by switching verification off. (OpenSSL's
SSL_CERT_FILE would also work, but it replaces the whole system store for every TLS connection of the process.)
"""
import ssl

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def smtp_tls_context() -> ssl.SSLContext:
    """A new certificate-verifying client context: the system's CAs, plus EMAIL_CA_FILE's when set."""
    context = ssl.create_default_context()
    ca_file = settings.HIPAAMAIL_EMAIL_CA_FILE
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ImproperlyConfigured(
                f"EMAIL_CA_FILE ({ca_file}) must be a readable PEM file of CA certificates ({type(error).__name__})."
            ) from None
    return context
