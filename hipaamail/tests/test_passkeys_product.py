"""Passkeys where they meet the rest of the product: production settings bind them to the served domain, and the
step-up by passkey approves a campaign and exports a report (R-SEC-MFA). The passkey pages themselves are tested in
accounts/tests/test_passkeys.py."""
import pytest

from accounts.tests.factories import staff_make
from accounts.tests.test_passkeys import (  # noqa: F401  (relying_party: the same autouse fixture)
    Authenticator,
    _reentry_failures,
    _stepup,
    _verified_with,
    relying_party,
)
from audit.models import AuditEvent
from campaigns.services.lifecycle import campaign_submit
from campaigns.tests.factories import campaign_make
from consent.tests.factories import purpose_make
from hipaamail.tests.test_settings import PRODUCTION_ENV, _manage

pytestmark = pytest.mark.django_db


def _production_check(**env: str):
    show = "from django.conf import settings as s; print(s.OTP_WEBAUTHN_RP_ID, s.OTP_WEBAUTHN_ALLOWED_ORIGINS)"
    return _manage("shell", "--no-imports", "-c", show, env=PRODUCTION_ENV | env)


def test_r_sec_mfa_production_passkeys_are_bound_to_the_served_domain_over_https():
    """R-SEC-MFA: unless set, production binds passkeys to the first of ALLOWED_HOSTS, over https."""
    result = _production_check()

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "mail.riverside-health.example ['https://mail.riverside-health.example']"


@pytest.mark.parametrize(
    "env",
    [
        {"WEBAUTHN_RP_ID": "localhost"},
        {"WEBAUTHN_RP_ID": "10.0.0.5"},
        {"WEBAUTHN_ALLOWED_ORIGINS": "http://mail.riverside-health.example"},
        {"WEBAUTHN_ALLOWED_ORIGINS": "https://riverside-health.example.phish"},
    ],
    ids=["localhost", "an-ip-address", "plain-http", "another-domain"],
)
def test_r_sec_mfa_production_refuses_a_passkey_setting_that_is_not_https_on_its_domain(env):
    result = _production_check(**env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "WEBAUTHN_" in result.stderr


def test_r_sec_mfa_approve_and_export_with_a_passkey_instead_of_a_code(client):
    """R-SEC-MFA: the review and export forms take a passkey step-up in place of the code, once each; a spent
    step-up is refused with its own message and audited as a wrong code is."""
    campaign = campaign_make(purpose=purpose_make(name="CPAP supplies"))
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    officer = staff_make(role="compliance officer", with_totp=True)
    authenticator = Authenticator(officer)
    _verified_with(client, officer, officer.totpdevice_set.get())

    page = client.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    assert "Confirm with a passkey" in page and 'name="approve-passkey_stepup"' in page

    nonce = _stepup(client, authenticator).json()["nonce"]
    approved = client.post(f"/campaigns/{campaign.pk}/review/",
                           {"decision": "approve", "approve-code": "", "approve-passkey_stepup": nonce})
    campaign.refresh_from_db()
    assert approved.status_code == 302 and campaign.status == "approved"
    assert AuditEvent.objects.get(action="campaign.approved").actor == officer

    data = {"evidence-campaign": campaign.pk, "evidence-format": "csv", "evidence-code": ""}
    spent = client.post("/reports/campaign-evidence/", data | {"evidence-passkey_stepup": nonce})
    assert spent.status_code == 400 and "Content-Disposition" not in spent
    assert "The passkey confirmation has expired or was already used" in spent.content.decode()
    assert nonce not in spent.content.decode()
    assert _reentry_failures(officer) == [{"for": "report.exported", "report": "campaign_evidence"}]

    nonce = _stepup(client, authenticator).json()["nonce"]
    exported = client.post("/reports/campaign-evidence/", data | {"evidence-passkey_stepup": nonce})
    assert exported.status_code == 200 and exported["Content-Disposition"].startswith("attachment")
    b"".join(exported.streaming_content)
    assert AuditEvent.objects.get(action="report.exported").actor == officer
