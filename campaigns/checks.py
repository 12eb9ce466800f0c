"""Deployment checks of the campaign mail set-up (`manage.py check --deploy`).

DMARC: a receiver counts our DKIM signature for the message only when the signing domain (d=, DKIM_DOMAIN) is
aligned with the From address's domain (RFC 7489 section 3.1.1). Every message we send uses DEFAULT_FROM_EMAIL
as From (campaign mail, sign-in codes, invitations, staff mail), so a mismatch there makes DKIM worthless for
DMARC and sends patient mail to spam. Relaxed alignment compares organisational domains, which needs the public
suffix list; this check accepts the same domain or either one under the other, and warns otherwise.
"""
from email.utils import parseaddr

from django.conf import settings
from django.core.checks import Tags, Warning, register


def _aligned(sender_domain: str, signing_domain: str) -> bool:
    return (
        sender_domain == signing_domain
        or sender_domain.endswith("." + signing_domain)
        or signing_domain.endswith("." + sender_domain)
    )


@register(Tags.security, deploy=True)
def dkim_domain_aligned_check(app_configs, **kwargs):
    signing_domain = (settings.HIPAAMAIL_DKIM_DOMAIN or "").strip().lower().rstrip(".")
    if not (settings.HIPAAMAIL_DKIM_PRIVATE_KEY_PATH and signing_domain):
        return []
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    sender_domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    if sender_domain and _aligned(sender_domain, signing_domain):
        return []
    return [
        Warning(
            f"DEFAULT_FROM_EMAIL ({address or 'no address'}) is not in the DKIM signing domain "
            f"({signing_domain}): receivers applying DMARC will not count the signature as aligned.",
            hint="Sign with the From address's domain (DKIM_DOMAIN), or send from an address in DKIM_DOMAIN.",
            id="campaigns.W001",
        )
    ]
