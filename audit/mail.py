"""Mail to one staff member (the chain-break alert, campaign review notices): the one way the product mails its own
staff, apart from patients' mail (campaigns' sender) and account mail (allauth). One message per address, text and
HTML, marked `Auto-Submitted: auto-generated` (RFC 3834) so that no out-of-office reply comes back; a mail server
that refuses or is away is logged by the error's type only (its text may name the address) and returns 0."""
import logging
import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

logger = logging.getLogger(__name__)


def staff_mail_send(*, address: str, subject: str, text: str, html: str, what: str) -> int:
    """Mail one staff member; `what` names the message in the log line if it cannot go. Returns 1 or 0."""
    message = EmailMultiAlternatives(
        subject, text, settings.DEFAULT_FROM_EMAIL, [address], headers={"Auto-Submitted": "auto-generated"}
    )
    message.attach_alternative(html, "text/html")
    try:
        return message.send()
    except (smtplib.SMTPException, OSError) as error:
        logger.error("%s was not mailed (%s)", what, type(error).__name__)
        return 0
