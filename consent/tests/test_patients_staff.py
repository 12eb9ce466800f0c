"""The staff patient record: who may see it (R-MIN-NECESSARY), that each view is audited (R-SEC-AUDIT), and
what staff record on a patient's behalf: written authorizations and revocations with their scans
(R-REVOKE-WRITTEN, R-AUTH-CORE-6), expiry events and defects (R-AUTH-DEFECTIVE)."""
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from conftest import screenshot
from consent.models import Authorization, AuthorizationDefect, ExpiryEvent, Revocation
from consent.selectors.coverage import CoverageGap, authorization_covering_list, authorization_gap_list
from consent.services.authorizations import authorization_grant, authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _scan(content=PDF, name="Jane Doe signed form.pdf", content_type="application/pdf"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def _covered(authorization, at=None) -> bool:
    return (
        authorization_covering_list(
            purpose_id=authorization.purpose_id, patient_ids=[authorization.patient_id], at=at
        )
        .filter(id=authorization.pk)
        .exists()
    )


def _event_based(patient, purpose):
    return authorization_grant(
        actor=None,
        patient=patient,
        purpose=purpose,
        signed_at=timezone.now() - timedelta(days=30),
        expires_at=None,
        expiry_event="when you no longer rent equipment from us",
    )


def _written_post(purpose, **overrides):
    data = {
        "purpose": purpose.pk,
        "signed_on": (timezone.localdate() - timedelta(days=2)).isoformat(),
        "expires_on": (timezone.localdate() + timedelta(days=365)).isoformat(),
        "expiry_event": "",
        "signature_name": "Jane Q. Doe",
        "scan": _scan(),
    }
    data |= overrides
    return {key: value for key, value in data.items() if value is not None}


# --- who may see the record -------------------------------------------------------------------------------


def test_r_min_necessary_marketer_gets_404_for_every_patient_page(verified_client):
    """R-MIN-NECESSARY: marketers never see a patient's record, the search, a document or a FHIR export;
    the answer is the same 404 as for a record that does not exist, and nothing is audited as viewed."""
    patient = patient_make(email="jane@example.org")
    authorization = authorization_make(patient=patient, purpose=purpose_make())
    verified_client.sign_in(role="marketer")

    urls = [
        "/consent/patients/",
        f"/consent/patients/{patient.pk}/",
        f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/revoke/",
        f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/defect/",
        f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/scan/",
        f"/consent/fhir/authorizations/{authorization.pk}/r4.json",
        "/consent/fhir/import/",
    ]
    for url in urls:
        assert verified_client.get(url).status_code == 404, url
    assert verified_client.post("/consent/patients/", {"email": "jane@example.org"}).status_code == 404
    assert not AuditEvent.objects.filter(action__in=["patient.viewed", "patient.searched"]).exists()
    assert not AuditEvent.objects.filter(action="authorization.fhir_exported").exists()


def test_r_sec_audit_each_view_of_the_record_is_audited_with_ids_only(verified_client):
    """R-SEC-AUDIT, R-NO-PHI-LEAK: the compliance officer sees the decrypted identifiers; each view writes
    one "patient.viewed" event whose details are ids only."""
    patient = patient_make(email="jane.doe@example.org", full_name="Jane Doe", external_id="MRN-4471")
    authorization = authorization_make(patient=patient, purpose=purpose_make(name="CPAP supplies"))
    officer = verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/consent/patients/{patient.pk}/").content.decode()
    verified_client.get(f"/consent/patients/{patient.pk}/")

    assert "jane.doe@example.org" in page and "Jane Doe" in page and "MRN-4471" in page
    assert "CPAP supplies" in page and "Active" in page
    assert f'href="/audit/patients/{patient.pk}/"' in page  # the record leads to its audit history
    events = AuditEvent.objects.filter(action="patient.viewed", actor=officer)
    assert events.count() == 2
    assert {event.object_id for event in events} == {str(patient.pk)}
    assert events.first().details == {"authorization_ids": [authorization.pk]}


def test_administrator_sees_the_record_and_a_missing_patient_is_404(verified_client):
    patient = patient_make()
    verified_client.sign_in(role="administrator")

    assert verified_client.get(f"/consent/patients/{patient.pk}/").status_code == 200
    assert verified_client.get("/consent/patients/999999/").status_code == 404


def test_r_no_phi_leak_search_posts_the_email_and_redirects_to_the_numeric_id(verified_client):
    """R-NO-PHI-LEAK: the identifier travels in a POST body, never in a URL; the record's URL is its id."""
    patient = patient_make(email="Jane.Doe@Example.org", external_id="MRN-1")
    verified_client.sign_in(role="compliance officer")

    by_email = verified_client.post("/consent/patients/", {"email": "jane.doe@example.org"})
    by_record = verified_client.post("/consent/patients/", {"external_id": " mrn-1 "})
    missing = verified_client.post("/consent/patients/", {"email": "nobody@example.org"})
    neither = verified_client.post("/consent/patients/", {})

    assert by_email.status_code == 302 and by_email["Location"] == f"/consent/patients/{patient.pk}/"
    assert by_record["Location"] == f"/consent/patients/{patient.pk}/"
    assert missing.status_code == 200 and b"No patient has that email address" in missing.content
    assert b"nobody@example.org" not in missing.content.split(b"<form")[0]
    assert b"Enter either an email address or a record number." in neither.content
    searches = AuditEvent.objects.filter(action="patient.searched").order_by("id")
    assert [event.details["found"] for event in searches] == [True, True, False]
    assert "example.org" not in str([event.details for event in searches])


# --- written authorizations --------------------------------------------------------------------------------


def test_r_revoke_written_a_written_authorization_requires_a_scan(verified_client):
    """R-REVOKE-WRITTEN (evidence on paper is scanned): no scan, a scan of the wrong kind or one over 10 MB is
    refused with a clear message, and nothing is recorded."""
    patient, purpose = patient_make(), purpose_make()
    verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/written-authorization/"

    missing = verified_client.post(url, _written_post(purpose, scan=None))
    wrong = verified_client.post(url, _written_post(purpose, scan=_scan(b"MZ\x90\x00 not a scan", "x.pdf")))
    large = verified_client.post(url, _written_post(purpose, scan=_scan(b"%PDF-" + b"0" * (10 * 1024 * 1024))))

    assert missing.status_code == 400 and b"Attach the scan of the signed paper." in missing.content
    assert wrong.status_code == 400 and b"The scan must be a PDF, PNG or JPEG file." in wrong.content
    assert large.status_code == 400 and b"The scan is larger than 10 MB." in large.content
    assert Authorization.objects.count() == 0
    assert not AuditEvent.objects.filter(action="authorization.granted").exists()


def test_r_revoke_written_a_written_authorization_is_recorded_by_the_staff_member_and_covers(verified_client):
    """R-REVOKE-WRITTEN, R-SEC-AUDIT: the paper authorization is stored with its scan under a name of our
    own (the uploaded name may hold the patient's name, R-NO-PHI-LEAK), attributed to the staff member,
    audited, and it covers the patient for its purpose."""
    patient, purpose = patient_make(), purpose_make()
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        f"/consent/patients/{patient.pk}/written-authorization/", _written_post(purpose, scan=_scan(PNG, "Jane.png"))
    )

    assert response.status_code == 302
    authorization = Authorization.objects.get()
    assert authorization.channel == Authorization.Channel.WRITTEN
    assert authorization.recorded_by == officer
    assert authorization.signature_name == "Jane Q. Doe"
    assert authorization.scan.name.startswith("scans/") and authorization.scan.name.endswith(".png")
    assert "Jane" not in authorization.scan.name
    assert authorization.scan.read() == PNG
    assert timezone.localtime(authorization.signed_at).date() == timezone.localdate() - timedelta(days=2)
    assert _covered(authorization)
    event = AuditEvent.objects.get(action="authorization.granted")
    assert event.actor == officer and event.details["channel"] == "written" and event.details["has_scan"] is True


def test_r_auth_core_6_a_representative_must_state_their_authority(verified_client):
    """R-AUTH-CORE-6: a personal representative's authority is required and stored with the authorization."""
    patient, purpose = patient_make(), purpose_make()
    verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/written-authorization/"

    refused = verified_client.post(url, _written_post(purpose, signed_by_representative="on"))
    accepted = verified_client.post(
        url, _written_post(purpose, signed_by_representative="on", representative_authority="Legal guardian")
    )

    assert refused.status_code == 400
    assert b"Describe the representative&#x27;s authority to act for the patient." in refused.content
    assert accepted.status_code == 302
    authorization = Authorization.objects.get()
    assert authorization.signed_by_representative is True
    assert authorization.representative_authority == "Legal guardian"


def test_r_auth_core_5_a_written_authorization_needs_an_end_date_or_event(verified_client):
    """R-AUTH-CORE-5: neither an end date nor an end event is refused; an event alone is accepted."""
    patient, purpose = patient_make(), purpose_make()
    verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/written-authorization/"

    refused = verified_client.post(url, _written_post(purpose, expires_on=""))
    accepted = verified_client.post(url, _written_post(purpose, expires_on="", expiry_event="when I move away"))

    assert refused.status_code == 400 and b"Give the date or the event" in refused.content
    assert accepted.status_code == 302
    assert Authorization.objects.get().expiry_event == "when I move away"


# --- written revocations -----------------------------------------------------------------------------------


def test_r_revoke_written_a_written_revocation_ends_coverage_and_is_audited(verified_client):
    """R-REVOKE-WRITTEN, R-SEC-AUDIT: a confirmation first; then the revocation with its scan ends coverage
    at once (the predicate), is attributed to the staff member and audited."""
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/revoke/"

    confirm_page = verified_client.get(url)
    unconfirmed = verified_client.post(url, {"scan": _scan()})
    assert confirm_page.status_code == 200 and b"Record the revocation" in confirm_page.content
    assert unconfirmed.status_code == 400 and b"Tick the box to confirm." in unconfirmed.content
    assert _covered(authorization)

    done = verified_client.post(url, {"scan": _scan(), "confirm": "on"})

    assert done.status_code == 302
    revocation = Revocation.objects.get(authorization=authorization)
    assert revocation.channel == Revocation.Channel.WRITTEN and revocation.recorded_by == officer
    assert revocation.scan.read() == PDF
    assert not _covered(authorization)
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {patient.pk: CoverageGap.REVOKED}
    event = AuditEvent.objects.get(action="authorization.revoked")
    assert event.actor == officer and event.object_id == str(patient.pk)
    assert event.details == {
        "purpose_id": purpose.pk,
        "channel": "written",
        "authorization_ids": [authorization.pk],
        "has_scan": True,
    }
    page = verified_client.get(f"/consent/patients/{patient.pk}/").content.decode()
    assert "Revoked" in page and "Revocation scan" in page


def test_r_revoke_written_a_revocation_needs_its_scan_and_an_already_revoked_one_is_refused(verified_client):
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/revoke/"

    no_scan = verified_client.post(url, {"confirm": "on"})
    assert no_scan.status_code == 400 and b"Attach the scan" in no_scan.content
    assert _covered(authorization)

    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
    again = verified_client.post(url, {"scan": _scan(), "confirm": "on"})

    assert again.status_code == 400 and b"already revoked" in again.content
    assert Revocation.objects.get().channel == "portal"


def test_r_revoke_written_a_written_revocation_ends_every_authorization_for_that_purpose():
    """R-REVOKE-WRITTEN, R-REVOKE-ANYTIME: like the patient's own revocation, the letter ends every
    authorization the patient has for the purpose (and none for another), with one audit event."""
    from accounts.tests.factories import staff_make
    from consent.services.written import revocation_written_record

    patient, purpose, other = patient_make(), purpose_make(), purpose_make()
    first = authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=9))
    second = authorization_make(patient=patient, purpose=purpose)
    kept = authorization_make(patient=patient, purpose=other)
    officer = staff_make(role="compliance officer")

    revocations = revocation_written_record(actor=officer, authorization_id=second.pk, scan=_scan())

    assert sorted(r.authorization_id for r in revocations) == [first.pk, second.pk]
    assert {r.scan.name for r in revocations} == {revocations[0].scan.name}
    assert not _covered(first) and not _covered(second) and _covered(kept)
    event = AuditEvent.objects.get(action="authorization.revoked")
    assert event.details["authorization_ids"] == [first.pk, second.pk]


def test_authorization_of_another_patient_is_404(verified_client):
    authorization = authorization_make(patient=patient_make(), purpose=purpose_make())
    other = patient_make()
    verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        f"/consent/patients/{other.pk}/authorizations/{authorization.pk}/revoke/", {"scan": _scan(), "confirm": "on"}
    )

    assert response.status_code == 404
    assert not Revocation.objects.exists()


# --- expiry events and defects ------------------------------------------------------------------------------


def test_r_auth_defective_an_expiry_event_recorded_by_staff_ends_coverage_from_when_it_occurred(verified_client):
    """R-AUTH-DEFECTIVE: staff record that the expiry event happened; coverage ends from the start of that day,
    not from when it was recorded, and the gap reason is the expiry event's own."""
    patient, purpose = patient_make(), purpose_make()
    authorization = _event_based(patient, purpose)
    officer = verified_client.sign_in(role="compliance officer")
    occurred_on = timezone.localdate() - timedelta(days=3)
    url = f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/expiry-event/"
    assert b"Record expiry event" in verified_client.get(f"/consent/patients/{patient.pk}/").content

    response = verified_client.post(url, {"occurred_on": occurred_on.isoformat(), "confirm": "on"})

    assert response.status_code == 302
    event = ExpiryEvent.objects.get(authorization=authorization)
    assert event.source == "staff" and event.recorded_by == officer
    assert timezone.localtime(event.occurred_at).date() == occurred_on
    assert _covered(authorization, at=event.occurred_at - timedelta(seconds=1))
    assert not _covered(authorization, at=event.occurred_at)
    assert not _covered(authorization)
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {
        patient.pk: CoverageGap.EXPIRY_EVENT
    }
    assert AuditEvent.objects.get(action="authorization.expiry_event_recorded").actor == officer
    assert "Ended by its expiry event" in verified_client.get(f"/consent/patients/{patient.pk}/").content.decode()


def test_an_expiry_event_in_the_future_or_twice_is_refused_without_an_error_page(verified_client):
    patient, purpose = patient_make(), purpose_make()
    authorization = _event_based(patient, purpose)
    dated = authorization_make(patient=patient, purpose=purpose_make())
    verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/expiry-event/"
    today = timezone.localdate()

    future = verified_client.post(url, {"occurred_on": (today + timedelta(days=1)).isoformat(), "confirm": "on"})
    first = verified_client.post(url, {"occurred_on": today.isoformat(), "confirm": "on"})
    twice = verified_client.post(url, {"occurred_on": today.isoformat(), "confirm": "on"})
    on_dated = verified_client.post(
        f"/consent/patients/{patient.pk}/authorizations/{dated.pk}/expiry-event/",
        {"occurred_on": today.isoformat(), "confirm": "on"},
    )

    assert future.status_code == 400 and b"The event cannot be in the future." in future.content
    assert first.status_code == 302
    assert twice.status_code == 400 and b"already recorded" in twice.content
    assert on_dated.status_code == 400 and b"expires on a date, not on an event" in on_dated.content
    assert ExpiryEvent.objects.count() == 1


def test_r_auth_defective_a_defect_recorded_by_staff_ends_coverage_with_its_own_reason(verified_client):
    """R-AUTH-DEFECTIVE: a recorded defect ends coverage when it commits and is a gap reason of its own."""
    patient, purpose = patient_make(), purpose_make()
    authorization = authorization_make(patient=patient, purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")
    url = f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/defect/"
    reason = AuthorizationDefect.Reason.FALSE_INFORMATION

    unconfirmed = verified_client.post(url, {"reason": reason})
    assert unconfirmed.status_code == 400 and _covered(authorization)

    response = verified_client.post(url, {"reason": reason, "confirm": "on"})
    again = verified_client.post(url, {"reason": reason, "confirm": "on"})

    assert response.status_code == 302
    assert again.status_code == 400 and b"already recorded" in again.content
    defect = AuthorizationDefect.objects.get()
    assert defect.reason == reason and defect.recorded_by == officer
    assert not _covered(authorization)
    assert authorization_gap_list(purpose_id=purpose.pk, patient_ids=[patient.pk]) == {
        patient.pk: CoverageGap.DEFECT_FALSE_INFORMATION
    }
    assert AuditEvent.objects.get(action="authorization.defect_recorded").details["reason"] == reason
    assert "Defective" in verified_client.get(f"/consent/patients/{patient.pk}/").content.decode()


def test_the_record_shows_each_state_with_the_predicate(verified_client):
    """Active, expired and revoked side by side, each from the predicate and the rows that end it."""
    patient = patient_make()
    active = authorization_make(patient=patient, purpose=purpose_make(name="Active purpose"))
    authorization_make(
        patient=patient,
        purpose=purpose_make(name="Expired purpose"),
        signed_ago=timedelta(days=400),
        expires_in=-timedelta(days=1),
    )
    revoked = authorization_make(patient=patient, purpose=purpose_make(name="Revoked purpose"))
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=revoked.purpose_id, channel="portal")
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/consent/patients/{patient.pk}/").content.decode()

    assert page.count('class="badge ok">Active<') == 1
    assert '>Expired<' in page and '>Revoked<' in page
    assert f"/consent/patients/{patient.pk}/authorizations/{active.pk}/revoke/" in page
    assert f"/consent/patients/{patient.pk}/authorizations/{revoked.pk}/revoke/" not in page


# --- documents --------------------------------------------------------------------------------------------


def test_r_sec_audit_a_scan_is_streamed_through_the_permission_check_and_audited(verified_client):
    """R-SEC-AUDIT, R-MIN-NECESSARY: the scan is downloaded only through the view, under a name that says
    nothing about the patient, and each download is audited."""
    patient, purpose = patient_make(), purpose_make()
    officer = verified_client.sign_in(role="compliance officer")
    verified_client.post(f"/consent/patients/{patient.pk}/written-authorization/", _written_post(purpose))
    authorization = Authorization.objects.get()

    response = verified_client.get(f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/scan/")
    missing_pdf = verified_client.get(f"/consent/patients/{patient.pk}/authorizations/{authorization.pk}/pdf/")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="authorization-{authorization.pk}-scan.pdf"' in response["Content-Disposition"]
    assert missing_pdf.status_code == 404
    event = AuditEvent.objects.get(action="patient.document_downloaded")
    assert event.actor == officer and event.details == {"kind": "scan"} and event.patient_id == patient.pk


# --- in a real browser ------------------------------------------------------------------------------------


@pytest.fixture
def browser_context_args() -> dict:
    """Overrides conftest's: this module's browser test (and its screenshots) use a wider window."""
    return {"viewport": {"width": 1400, "height": 900}}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r_revoke_written_staff_find_a_patient_record_paper_evidence_and_import_fhir_in_a_browser(
    browser_context, live_server, verified_client, tmp_path
):
    """R-REVOKE-WRITTEN, R-MIN-NECESSARY, R-NO-PHI-LEAK, as a compliance officer would in Chromium: find the
    patient by email (a POST: the address is in no URL), record a paper authorization with its scan, then a
    written revocation with its scan, and import a FHIR Bundle with a report of what was rejected."""
    import json

    from consent import fhir

    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    other = purpose_make(code="diabetes-education", name="Diabetes education program")
    patient = patient_make(
        email="margaret.olsen@example.org",
        full_name="Margaret Olsen",
        external_id="MRN-20931",
        postal_code="62701",
        state="IL",
        sex="F",
        condition_codes=["G47.33"],
    )
    web = authorization_grant(
        actor=None,
        patient=patient,
        purpose=purpose,
        signed_at=timezone.now() - timedelta(days=40),
        expires_at=timezone.now() + timedelta(days=325),
        signature_name="Margaret Olsen",
        signed_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) Safari/604.1",
        text_hash="9f2c" * 16,
    )
    _event_based(patient, other)
    verified_client.sign_in(role="compliance officer")
    browser_context.add_cookies(
        [{"name": "sessionid", "value": verified_client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = browser_context.new_page()
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(PDF)

    page.goto(f"{live_server.url}/consent/patients/")
    page.fill("input[name=email]", "margaret.olsen@example.org")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/consent/patients/{patient.pk}/")
    assert "example.org" not in page.url
    page.select_option("select[name=purpose]", str(other.pk))
    page.fill("input[name=signed_on]", (timezone.localdate() - timedelta(days=1)).isoformat())
    page.fill("input[name=expiry_event]", "when you no longer use our diabetes program")
    page.fill("input[name=signature_name]", "Peter Olsen")
    page.check("input[name=signed_by_representative]")
    page.fill("input[name=representative_authority]", "Son, health care power of attorney")
    page.set_input_files("input[name=scan]", str(scan))
    page.click("text=Record the written authorization")
    page.wait_for_selector(".messages li.success")
    body = page.locator("main").inner_text()
    assert "Written authorization" in body and "Son, health care power of attorney" in body

    page.click(f"a[href='/consent/patients/{patient.pk}/authorizations/{web.pk}/revoke/']")
    page.set_input_files("input[name=scan]", str(scan))
    page.check("input[name=confirm]")
    screenshot(page, "31-written-revocation")
    page.click("text=Record the revocation")
    page.wait_for_selector(".messages li.success")
    assert Revocation.objects.get(authorization=web).channel == "written"
    assert not _covered(web)
    assert "Revocation scan" in page.locator("main").inner_text()
    screenshot(page, "30-staff-patient-record")

    newcomer = patient_make(external_id="MRN-55120")
    with transaction.atomic():  # a Consent from elsewhere: exported, then rolled back here
        exported = fhir.authorization_to_fhir(authorization_make(patient=newcomer, purpose=purpose), version="r5")
        transaction.set_rollback(True)
    foreign = json.loads(json.dumps(exported))
    foreign["subject"]["identifier"]["value"] = "MRN-99999"
    no_hmarkt = json.loads(json.dumps(exported))
    no_hmarkt["provision"][0]["purpose"] = no_hmarkt["provision"][0]["purpose"][1:]
    event_based = Authorization.objects.get(patient=patient, purpose=other, channel="web")
    inactive = dict(fhir.authorization_to_fhir(event_based, version="r4"), status="inactive")
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {"resource": resource}
                    for resource in (exported, inactive, foreign, no_hmarkt, dict(exported, status="on"))
                ],
            }
        )
    )
    page.goto(f"{live_server.url}/consent/fhir/import/")
    page.set_input_files("input[name=bundle]", str(bundle))
    page.click("main button[type=submit]")
    page.wait_for_selector("text=Import report")
    report = page.locator("main").inner_text()
    assert "unknown_patient" in report and "missing_hmarkt" in report and "bad_status" in report
    assert "MRN-99999" not in report
    assert Authorization.objects.filter(patient=newcomer, channel="import").count() == 1
    assert not _covered(event_based)
    screenshot(page, "32-fhir-import-report")


def test_staff_invites_a_patient_by_email_and_by_qr_code(verified_client, django_capture_on_commit_callbacks):
    """A compliance officer invites a patient to sign: by email (the link is mailed), or with a QR code shown
    once (nothing mailed). The link names nothing but a random token (R-NO-PHI-LEAK)."""
    from django.core import mail

    from consent.models import Invitation
    from consent.tests.services.test_signing import form_published_make

    verified_client.sign_in(role="compliance officer")
    patient = patient_make(email="invitee@example.org")
    form = form_published_make(purpose_make())

    with django_capture_on_commit_callbacks(execute=True):
        emailed = verified_client.post(
            f"/consent/patients/{patient.pk}/invite/", {"invite-purpose": form.purpose_id, "invite-channel": "email"}
        )
    shown = verified_client.post(f"/consent/patients/{patient.pk}/invite/", {"invite-purpose": form.purpose_id, "invite-channel": "qr"})

    assert emailed.status_code == 302
    assert [m.to for m in mail.outbox] == [["invitee@example.org"]]
    assert shown.status_code == 200 and b"<svg" in shown.content and b"/my/invite/" in shown.content
    assert b"invitee" not in shown.content
    assert Invitation.objects.filter(patient=patient).count() == 2


def test_marketer_cannot_invite(verified_client):
    verified_client.sign_in(role="marketer")
    patient = patient_make()

    response = verified_client.post(f"/consent/patients/{patient.pk}/invite/", {"invite-purpose": 1, "invite-channel": "email"})

    assert response.status_code == 404
