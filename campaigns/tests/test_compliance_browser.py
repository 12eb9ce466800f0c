"""In Chromium, a compliance officer new to the product, after a small clinic's month of consent and two
campaigns: signs in with a password and an authenticator code, opens a patient's record, then the audit log
from the menu (the hash chain's status on top), filters it by action and by patient, opens that patient's
full history (the events, and each message with the audit event that recorded it), then Reports, and
downloads each report as a PDF after typing a code again (a wrong code first: no file, an error on the
page). Each PDF is read back (pypdf) and, with SCREENSHOT_DIR set, its pages are kept as PNGs for
docs/screenshots (pdftoppm -png -r 80). Every page passes axe-core. Marked `browser`.
R-SEC-MFA, R-SEC-AUDIT, R-SEC-INTEGRITY, R-SEND-EVIDENCE, R-MIN-NECESSARY.

Screenshots: 80-audit-log (filtered), 81-patient-history, 88-reports-page, 85/86/87 the reports' pages."""
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.services.unsubscribe import delivery_unsubscribe
from campaigns.tests.factories import campaign_approved_make
from conftest import assert_accessible, browser_sign_in, pdf_text, screenshot, totp_code
from consent import documents
from consent.models import Authorization, Revocation
from consent.services.authorizations import authorization_grant, authorization_revoke
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST = ["Margaret", "Peter", "Ruth", "Daniel", "Grace", "Alan", "Frances", "John", "Radia", "Ken", "Ada", "Edsger"]
LAST = ["Olsen", "Ames", "Hopper", "Turing", "Allen", "Backus", "Perlman", "Thompson", "Lovelace", "Dijkstra"]


@pytest.fixture
def browser_context_args() -> dict:
    return {"viewport": {"width": 1280, "height": 900}, "accept_downloads": True}


def _grant(patient, purpose, form, *, name: str, days_ago: int, **extra) -> Authorization:
    text = documents.form_text(form)
    now = timezone.now()
    return authorization_grant(
        actor=extra.pop("actor", None),
        patient=patient,
        purpose=purpose,
        form_version=form,
        signed_at=now - timedelta(days=days_ago),
        expires_at=now + timedelta(days=730 - days_ago),
        document_text=text,
        text_hash=documents.text_hash(text),
        signature_name=name,
        signed_ip=extra.pop("signed_ip", "198.51.100.23"),
        user_agent=extra.pop("user_agent", "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) Safari/604.1"),
        **extra,
    )


def _send(campaign) -> None:
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):  # sent in-process here, not by a worker
        campaign_launch(actor=campaign.approved_by, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)


def _clinic():
    """A small clinic's month: two purposes, a dozen patients, two campaigns of the same purpose; the patient
    whose ledger is read signed both forms (one by her son as her representative, recorded from paper),
    received the first campaign, unsubscribed in one click, and was left out of the second."""
    cpap = purpose_make(code="cpap-supplies", name="CPAP supplies", description="New masks and filters.")
    cpap_form = form_published_make(cpap)
    diabetes = purpose_make(code="diabetes-education", name="Diabetes education program",
                            description="Classes about living well with diabetes.")
    diabetes_form = form_published_make(diabetes)
    staff = staff_make(role="compliance officer", email="records@riverside-health.example")
    margaret = patient_make(email="margaret.olsen@example.org", full_name="Margaret Olsen", external_id="MRN-20931")
    _grant(margaret, cpap, cpap_form, name="Margaret Olsen", days_ago=40)
    _grant(margaret, diabetes, diabetes_form, name="Peter Olsen", days_ago=12, channel=Authorization.Channel.WRITTEN,
           actor=staff, signed_by_representative=True, representative_authority="Son, health care power of attorney",
           signed_ip="", user_agent="")
    others = []
    for n in range(11):
        patient = patient_make(full_name=f"{FIRST[n]} {LAST[n % len(LAST)]}", external_id=f"MRN-3{n:04d}")
        others.append(patient)
        if n < 8:
            _grant(patient, cpap, cpap_form, name=patient.full_name, days_ago=30 - n)
    authorization_revoke(actor=None, patient_id=others[7].pk, purpose_id=cpap.pk, channel=Revocation.Channel.PORTAL)
    spring = campaign_approved_make(purpose=cpap, name="Spring CPAP refill", subject="New masks are here")
    _send(spring)
    margaret_delivery = Delivery.objects.get(campaign=spring, patient=margaret)
    delivery_unsubscribe(delivery_id=margaret_delivery.pk)
    bounced = Delivery.objects.get(campaign=spring, patient=others[2])
    # The mail provider's report of a hard bounce (what comes from outside the project is simulated).
    Delivery.objects.filter(pk=bounced.pk).update(bounced_at=timezone.now(), bounce_type="hard")
    summer = campaign_approved_make(purpose=cpap, name="Summer travel kit", subject="Travelling with your CPAP")
    _send(summer)
    return {"spring": spring, "summer": summer, "margaret": margaret}


def _pdf_text(path: Path) -> str:
    return " ".join(pdf_text(path.read_bytes()).split())


def _keep_pages(path: Path, name: str) -> None:
    """Every page as <name>-<n>.png (pdftoppm numbers them), the first also as <name>.png for the README."""
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder and shutil.which("pdftoppm"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(["pdftoppm", "-png", "-r", "80", str(path), str(Path(folder) / name)], check=True)
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(path), str(Path(folder) / name)],
            check=True,
        )


def _download(page, form_id: str, officer, tmp_path: Path, name: str) -> tuple[Path, str]:
    form = page.locator(f"form#{form_id}")
    form.get_by_label("PDF document").check()
    form.get_by_label("Code from your authenticator app").fill(totp_code(officer))
    with page.expect_download() as download_info:
        form.get_by_role("button").click()
    download = download_info.value
    path = tmp_path / f"{name}.pdf"
    download.save_as(path)
    assert path.read_bytes()[:5] == b"%PDF-"
    return path, download.suggested_filename


def test_compliance_officer_reads_the_audit_trail_and_downloads_each_report(
    page, live_server, axe_js, tmp_path, settings
):
    """The issue's walk-through: the audit log filtered, a patient's history, each report as a PDF."""
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-0123456789abcdef"
    world = _clinic()
    margaret = world["margaret"]
    call_command("audit_checkpoint")
    call_command("audit_verify")
    officer = staff_make(role="compliance officer", email="c.ramirez@riverside-health.example", with_totp=True)

    browser_sign_in(page, live_server, officer)
    # The officer looks at the patient's record first: that view is itself audited, with the patient's id.
    page.goto(f"{live_server.url}/consent/patients/{margaret.pk}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"{live_server.url}/audit/")
    chain = page.get_by_role("region", name="Hash chain status")
    assert "intact through sequence" in chain.inner_text() and "Last signed checkpoint" in chain.inner_text()

    page.select_option("select[name=action]", "authorization.granted")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit/?*action=authorization.granted*")
    rows = page.locator("ol.audit-events > li")
    assert rows.count() == 10  # ten authorizations were signed, two of them by Margaret (or for her)
    assert {row.get_attribute("data-action") for row in rows.all()} == {"authorization.granted"}

    page.fill("input[name=patient]", str(margaret.pk))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(f"**/audit/?*patient={margaret.pk}*")
    assert page.locator("ol.audit-events > li").count() == 2
    assert "Olsen" not in page.content()  # ids and codes only
    assert_accessible(page, axe_js)
    screenshot(page, "80-audit-log")

    page.get_by_role("link", name=f"Patient #{margaret.pk}: full history on one page").click()
    page.wait_for_url(f"{live_server.url}/audit/patients/{margaret.pk}/")
    messages = page.locator("table[aria-labelledby=messages] tbody tr")
    assert messages.count() == 2
    by_campaign = {row.locator("td:nth-child(2)").inner_text().split("\n")[-1]: row.inner_text() for row in messages.all()}
    assert "Messages sent in a batch" in by_campaign["Spring CPAP refill"] and "Sent" in by_campaign["Spring CPAP refill"]
    assert "Campaign started sending" in by_campaign["Summer travel kit"]
    assert "Authorization revoked" in by_campaign["Summer travel kit"]  # she had unsubscribed in one click
    events = [row.get_attribute("data-action") for row in page.locator("ol.audit-events > li").all()]
    assert events[:2] == ["audit.log_viewed", "patient.viewed"]
    assert {"authorization.granted", "authorization.revoked", "patient.created"} <= set(events)
    assert page.get_by_role("link", name="Open the patient record").get_attribute("href") == (
        f"/consent/patients/{margaret.pk}/"
    )
    assert "Olsen" not in page.content()
    assert_accessible(page, axe_js)
    screenshot(page, "81-patient-history")
    recorded = AuditEvent.objects.filter(actor=officer, patient_id=margaret.pk).values_list("action", flat=True)
    assert set(recorded) == {"patient.viewed", "audit.log_viewed", "audit.patient_history_viewed"}

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.wait_for_url("**/reports/")
    assert page.locator("h1").inner_text() == "Reports"
    assert_accessible(page, axe_js)

    # A wrong code: no file, a clear error, the failure audited.
    evidence = page.locator("form#campaign-evidence")
    evidence.get_by_label("Campaign").select_option(str(world["spring"].pk))
    evidence.get_by_label("Code from your authenticator app").fill("000000")
    evidence.get_by_role("button").click()
    page.wait_for_selector("form#campaign-evidence .errorlist")
    assert "That code did not work" in page.locator("form#campaign-evidence").inner_text()
    assert AuditEvent.objects.filter(action="mfa.reentry_failed", actor=officer).count() == 1
    assert not AuditEvent.objects.filter(action="report.exported").exists()
    screenshot(page, "88-reports-page")

    path, filename = _download(page, "campaign-evidence", officer, tmp_path, "evidence")
    assert filename.startswith(f"campaign-evidence-campaign-{world['spring'].pk}-")
    text = _pdf_text(path)
    if text:
        assert "Campaign evidence report" in text and "Spring CPAP refill" in text and "Page 1 of" in text
        assert "Sent without a covering authorization: 0" in text
    _keep_pages(path, "85-report-campaign-evidence")

    page.locator("form#patient-ledger").get_by_label("Patient number").fill(str(world["margaret"].pk))
    path, filename = _download(page, "patient-ledger", officer, tmp_path, "ledger")
    assert filename.startswith(f"patient-ledger-patient-{world['margaret'].pk}-") and "Olsen" not in filename
    text = _pdf_text(path)
    if text:
        for expected in ["Patient consent ledger", "MRN-20931", "Margaret Olsen", "Son, health care power of attorney",
                         "Authorization revoked", "Spring CPAP refill", "Summer travel kit", "Page 1 of"]:
            assert expected in text, expected
    _keep_pages(path, "86-report-patient-ledger")

    summary = page.locator("form#compliance-summary")
    today = timezone.localdate()
    summary.get_by_label("From (first day)").fill((today - timedelta(days=60)).isoformat())
    summary.get_by_label("To (last day, included)").fill(today.isoformat())
    path, filename = _download(page, "compliance-summary", officer, tmp_path, "summary")
    text = _pdf_text(path)
    if text:
        for expected in ["Compliance summary", "Revocation to effect", "Staff access to patient data",
                         "Messages sent without a covering authorization in the period: 0", "Page 1 of"]:
            assert expected in text, expected
    _keep_pages(path, "87-report-compliance-summary")

    exports = AuditEvent.objects.filter(action="report.exported", actor=officer).order_by("id")
    assert [event.details["kind"] for event in exports] == ["campaign_evidence", "patient_ledger", "compliance_summary"]
