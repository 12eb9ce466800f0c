"""Passkeys in Chromium (R-SEC-MFA), with the DevTools protocol's virtual authenticator standing in for a laptop's
fingerprint reader: a staff member adds a passkey, then uses it instead of the code at the next sign-in; without
the authenticator the attempt fails with a message and the code still works. Marked `browser` (slow).

live_server serves http://localhost:<port>; browsers allow WebAuthn over plain http on localhost only, so the
relying party is "localhost" and the allowed origin live_server's own. Screenshots: passkey-devices, passkey-verify,
passkey-stepup-review.
"""
import pytest
from django_otp_webauthn.models import WebAuthnCredential

from accounts.tests.factories import PASSWORD, staff_make
from audit.models import AuditEvent
from campaigns.services.lifecycle import campaign_submit
from campaigns.tests.factories import campaign_make
from conftest import browser_sign_in, screenshot, totp_code
from consent.tests.factories import purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_context_args() -> dict:
    return {"viewport": {"width": 1280, "height": 860}, "accept_downloads": True}


@pytest.fixture
def relying_party(settings, live_server):
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [live_server.url]
    # Without an authenticator Chromium waits for one until the ceremony's timeout: keep that short.
    settings.OTP_WEBAUTHN_TIMEOUT_SECONDS = 3


def _virtual_authenticator(page):
    client = page.context.new_cdp_session(page)
    client.send("WebAuthn.enable")
    authenticator = client.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return client, authenticator["authenticatorId"]


def _add_passkey(page, live_server, name: str) -> None:
    page.goto(f"{live_server.url}/account/two-factor/devices/")
    page.get_by_label("Passkey name").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_selector("text=Your passkey was added.")


def _password_only(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/campaigns/segments/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/account/two-factor/**")


def _sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/login/**")


def test_r_sec_mfa_staff_member_adds_a_passkey_and_signs_in_with_it(page, live_server, relying_party):
    """R-SEC-MFA: password + TOTP, add a passkey on the devices page; next time password + passkey opens the
    staff pages. Without the authenticator the passkey attempt fails with a message, and the code still works."""
    marketer = staff_make(role="marketer", email="marketer@demo.hipaamail.test", with_totp=True)
    cdp, authenticator_id = _virtual_authenticator(page)
    browser_sign_in(page, live_server, marketer)

    _add_passkey(page, live_server, "Work laptop")

    passkey = WebAuthnCredential.objects.get(user=marketer)
    assert passkey.name == "Work laptop" and passkey.confirmed
    row = page.locator("tr", has_text="Work laptop")
    assert row.locator("td").nth(1).inner_text() == "Passkey"
    assert row.get_by_role("button", name="Remove").is_visible()
    enrolled = AuditEvent.objects.get(actor=marketer, action="mfa.device_enrolled")
    assert (enrolled.object_id, enrolled.details) == (f"passkey/{passkey.pk}", {"kind": "passkey"})
    screenshot(page, "passkey-devices")

    # Next sign-in: the password, then the passkey instead of the code.
    _sign_out(page)
    _password_only(page, live_server, marketer)
    assert page.get_by_role("button", name="Use a passkey").is_visible()
    screenshot(page, "passkey-verify")
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(f"{live_server.url}/campaigns/segments/")
    assert page.locator("h1").inner_text() == "Segments"
    verified = AuditEvent.objects.filter(actor=marketer, action="mfa.verified").latest("id")
    assert verified.object_id == f"passkey/{passkey.pk}"

    # The authenticator is gone (another computer, a lost key): a message, no way in, and the code still works.
    _sign_out(page)
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator_id})
    _password_only(page, live_server, marketer)
    page.get_by_role("button", name="Use a passkey").click()
    status = page.locator("#passkey-verify-status")
    status.wait_for(state="visible")
    page.wait_for_function("!document.querySelector('[data-passkey=verify]').disabled", timeout=15000)
    assert "The passkey was not used" in status.inner_text()
    assert "/account/two-factor/" in page.url
    page.goto(f"{live_server.url}/campaigns/segments/")
    assert "/account/two-factor/" in page.url  # still no staff page
    page.fill("input[name=token]", totp_code(marketer))
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/campaigns/segments/")
    assert page.locator("h1").inner_text() == "Segments"


def test_r_sec_mfa_a_passkey_alone_is_a_second_factor_and_a_wrong_one_is_refused(page, live_server, relying_party):
    """R-SEC-MFA: the devices page keeps the last authenticator app while a passkey remains (its code works on any
    computer); an account left with a passkey only (its app deleted by an
    administrator) still passes the second factor with it; a passkey the server does not know (a wrong
    credential) is refused with a message, audited."""
    officer = staff_make(role="compliance officer", with_totp=True)
    _virtual_authenticator(page)
    browser_sign_in(page, live_server, officer)
    _add_passkey(page, live_server, "Security key")
    page.locator("tr", has_text="Authenticator app").get_by_role("button", name="Remove").click()
    page.wait_for_selector("text=Keep one authenticator app")
    assert officer.totpdevice_set.count() == 1
    officer.totpdevice_set.all().delete()  # as an administrator could, in the admin
    assert [d.name for d in WebAuthnCredential.objects.filter(user=officer)] == ["Security key"]

    _sign_out(page)
    _password_only(page, live_server, officer)
    assert page.locator("input[name=token]").is_visible()  # recovery codes still go here
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(f"{live_server.url}/campaigns/segments/")

    # The server forgets the passkey while the browser still offers it: refused, with the reason, and audited.
    _sign_out(page)
    _password_only(page, live_server, officer)
    WebAuthnCredential.objects.filter(user=officer).update(credential_id_sha256="0" * 64)
    page.get_by_role("button", name="Use a passkey").click()
    status = page.locator("#passkey-verify-status")
    status.wait_for(state="visible")
    page.wait_for_function("!document.querySelector('[data-passkey=verify]').disabled")
    assert "That passkey was not accepted" in status.inner_text()
    assert "/account/two-factor/" in page.url
    failed = AuditEvent.objects.get(actor=officer, action="mfa.verification_failed")
    assert failed.details == {"kind": "passkey", "reason": "credential_not_found"}


def test_r_sec_mfa_compliance_officer_approves_and_exports_with_a_passkey_instead_of_a_code(
    page, live_server, relying_party, tmp_path
):
    """R-SEC-MFA: the step-up before approving and before exporting takes a passkey: "Confirm with a passkey"
    (no code typed) approves a submitted campaign, then downloads its evidence report as a PDF; the audit trail
    records the approval and the export by the officer, and no refused re-entry."""
    campaign = campaign_make(purpose=purpose_make(name="CPAP supplies"), name="Spring CPAP refill")
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)
    officer = staff_make(role="compliance officer", with_totp=True)
    _virtual_authenticator(page)
    browser_sign_in(page, live_server, officer)
    _add_passkey(page, live_server, "Work laptop")

    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/review/")
    approve = page.locator("form", has=page.get_by_role("button", name="Approve", exact=True))
    assert approve.get_by_label("Code from your authenticator app").input_value() == ""
    screenshot(page, "passkey-stepup-review")
    approve.get_by_role("button", name="Confirm with a passkey").click()
    page.wait_for_selector("text=Approved. It can be sent now.")
    campaign.refresh_from_db()
    assert campaign.status == "approved" and campaign.approved_by == officer

    page.goto(f"{live_server.url}/reports/?campaign={campaign.pk}")
    evidence = page.locator("form#campaign-evidence")
    evidence.get_by_label("PDF document").check()
    with page.expect_download() as download_info:
        evidence.get_by_role("button", name="Confirm with a passkey").click()
    path = tmp_path / "evidence.pdf"
    download_info.value.save_as(path)
    assert path.read_bytes()[:5] == b"%PDF-"
    assert evidence.locator("input[data-passkey-stepup]").input_value() == ""  # spent, not kept on the page

    approved = AuditEvent.objects.get(action="campaign.approved")
    exported = AuditEvent.objects.get(action="report.exported")
    assert (approved.actor, approved.object_id) == (officer, str(campaign.pk))
    assert (exported.actor, exported.object_id, exported.details) == (
        officer, str(campaign.pk), {"kind": "campaign_evidence", "format": "pdf"}
    )
    assert not AuditEvent.objects.filter(action="mfa.reentry_failed").exists()
