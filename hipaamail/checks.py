"""System checks of the project's own settings (`manage.py check`, and every command that runs the checks).

Passkeys need a domain name. WebAuthn binds every passkey to a relying party id, which must be a domain, never an
IP address, and browsers offer WebAuthn only on https or http://localhost. A SITE_URL on an IP address (the demo
opened from another machine of the network) therefore cannot carry passkeys. That is worth a clear warning, not a
failure of every command: base.py keeps the passkey origin on http://localhost, staff sign in with their
authenticator app (TOTP) at the IP address, and this check says why passkeys are not offered there.
(production.py still refuses a relying party id that is not a domain: there, passkeys are part of R-SEC-MFA.)
"""
import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Tags, Warning, register

PASSKEYS_NEED_A_DOMAIN = "hipaamail.W001"


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@register(Tags.security)
def passkeys_need_a_domain_check(app_configs, **kwargs):
    host = urlsplit(settings.SITE_URL).hostname
    if not host or not _is_ip_address(host):
        return []
    origins = ", ".join(settings.OTP_WEBAUTHN_ALLOWED_ORIGINS) or "no origin"
    return [
        Warning(
            f"SITE_URL ({settings.SITE_URL}) is on an IP address, and passkeys need a domain name: staff cannot "
            f"register or use passkeys at that address (only at {origins}); they sign in there with their "
            "authenticator app (TOTP).",
            hint="Serve hipaamail at a domain name and set SITE_URL (and ALLOWED_HOSTS) to it, or set WEBAUTHN_RP_ID "
            "and WEBAUTHN_ALLOWED_ORIGINS to a domain you serve over https.",
            id=PASSKEYS_NEED_A_DOMAIN,
        )
    ]
