"""Compliance reports (issue 6, item 3): campaign evidence, patient consent ledger and compliance summary, as
PDF and as streamed CSV, for compliance officers and administrators only, each export behind the second factor
and audited. R-SEND-EVIDENCE, R-SEND-COVERED, R-REVOKE-ANYTIME, R-SEC-MFA, R-SEC-AUDIT, R-MIN-NECESSARY,
R-NO-PHI-LEAK."""
import csv
import io
import re
from datetime import UTC, timedelta
from types import GeneratorType
from unittest import mock

import pytest
from django.db.models import QuerySet
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.reports import campaign_evidence, compliance_summary, exports
from campaigns.reports.campaign_evidence import campaign_content_hash
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.services.unsubscribe import delivery_unsubscribe
from campaigns.tests.factories import campaign_approved_make
from conftest import pdf_text, totp_code
from consent import documents
from consent.models import Authorization, Revocation
from consent.services.authorizations import authorization_defect_record, authorization_grant, authorization_revoke
from consent.tests.factories import form_published_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

def _grant(patient, purpose, form, *, name: str, signed_ago=timedelta(days=3), **extra):
    text = documents.form_text(form)
    now = timezone.now()
    return authorization_grant(
        actor=None,
        patient=patient,
        purpose=purpose,
        form_version=form,
        signed_at=now - signed_ago,
        expires_at=now + timedelta(days=365),
        document_text=text,
        text_hash=documents.text_hash(text),
        signature_name=name,
        signed_ip="203.0.113.9",
        user_agent="Mozilla/5.0 (Macintosh) Safari/605.1",
        **extra,
    )


@pytest.fixture
def world():
    """A marketing purpose with a published form; a campaign launched and sent to an audience of five:
    two covered (one later bounces, one later unsubscribes in one click), one revoked before the launch,
    one who never signed, one whose authorization was found defective."""
    purpose = purpose_make(code="cpap-supplies", name="CPAP supplies")
    form = form_published_make(purpose)
    covered = patient_make(external_id="MRN-1001")
    unsubscriber = patient_make(external_id="MRN-1002")
    revoked = patient_make(external_id="MRN-1003")
    never = patient_make(external_id="MRN-1004")
    defective = patient_make(external_id="MRN-1005")
    authorizations = {
        "covered": _grant(covered, purpose, form, name="Margaret Olsen"),
        "unsubscriber": _grant(unsubscriber, purpose, form, name="Peter Olsen"),
        "revoked": _grant(revoked, purpose, form, name="Ruth Ames"),
        "defective": _grant(defective, purpose, form, name="Dan Defoe"),
    }
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel=Revocation.Channel.PORTAL)
    authorization_defect_record(
        actor=None, authorization_id=authorizations["defective"].pk, reason="defect_missing_element"
    )
    campaign = campaign_approved_make(purpose=purpose, name="Spring CPAP refill", subject="New masks are here")
    campaign_launch(actor=campaign.approved_by, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)
    deliveries = {
        name: Delivery.objects.get(campaign=campaign, patient=patient)
        for name, patient in [
            ("covered", covered), ("unsubscriber", unsubscriber), ("revoked", revoked), ("never", never),
            ("defective", defective),
        ]
    }
    delivery_unsubscribe(delivery_id=deliveries["unsubscriber"].pk)
    # The mail provider reports a hard bounce (what leaves the project is simulated, not the evidence).
    Delivery.objects.filter(pk=deliveries["covered"].pk).update(bounced_at=timezone.now(), bounce_type="hard")
    return {
        "purpose": purpose,
        "form": form,
        "campaign": Campaign.objects.get(pk=campaign.pk),
        "patients": {"covered": covered, "unsubscriber": unsubscriber, "revoked": revoked, "never": never,
                     "defective": defective},
        "authorizations": authorizations,
        "deliveries": deliveries,
    }


def _officer(verified_client, role="compliance officer"):
    return verified_client.sign_in(role=role)


def _export(client, user, report: str, *, fmt: str, code: str | None = None, **fields):
    prefix = {"campaign-evidence": "evidence", "patient-ledger": "ledger", "compliance-summary": "summary"}[report]
    data = {f"{prefix}-format": fmt, f"{prefix}-code": totp_code(user) if code is None else code}
    data |= {f"{prefix}-{name}": value for name, value in fields.items()}
    return client.post(f"/reports/{report}/", data)


def _streamed_text(response) -> str:
    assert response.streaming is True
    return b"".join(response.streaming_content).decode("utf-8")


def _table(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The CSV's preamble ('#' lines, as {name: value}) and its table (as dicts)."""
    lines = list(csv.reader(io.StringIO(text)))
    preamble = {line[0].removeprefix("# "): line[1] for line in lines if line and line[0].startswith("#")}
    body = [line for line in lines if line and not line[0].startswith("#")]
    header, rows = body[0], body[1:]
    return preamble, [dict(zip(header, row)) for row in rows]


def _today_period() -> dict:
    today = timezone.localdate()
    return {"date_from": (today - timedelta(days=30)).isoformat(), "date_to": today.isoformat()}


# --- Campaign evidence ---------------------------------------------------------------------------------------


def test_r_send_evidence_campaign_csv_names_each_sends_authorization_and_each_exclusions_reason(verified_client, world):
    """R-SEND-EVIDENCE: every sent delivery shows the authorization (form version, signed date) that covered it;
    every excluded patient shows the reason; bounces and one-click unsubscribes are on their rows."""
    officer = _officer(verified_client)
    campaign = world["campaign"]

    response = _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=campaign.pk)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    preamble, rows = _table(_streamed_text(response))
    by_patient = {int(row["patient_id"]): row for row in rows}
    assert len(rows) == 5
    sent = by_patient[world["patients"]["covered"].pk]
    authorization = world["authorizations"]["covered"]
    assert sent["outcome"] == "sent"
    assert sent["authorization_id"] == str(authorization.pk)
    assert sent["form_version"] == str(world["form"].version)
    assert sent["authorization_signed_at"] == exports.iso_utc(authorization.signed_at)
    assert sent["sent_at"] == exports.iso_utc(Delivery.objects.get(pk=sent["delivery_id"]).sent_at)
    assert sent["bounce_type"] == "hard" and sent["bounced_at"]
    unsubscribed = by_patient[world["patients"]["unsubscriber"].pk]
    assert unsubscribed["revocation_channel"] == "one_click" and unsubscribed["authorization_revoked_at"]
    assert by_patient[world["patients"]["revoked"].pk]["outcome"] == "blocked"
    assert by_patient[world["patients"]["revoked"].pk]["block_reason"] == "revoked"
    assert by_patient[world["patients"]["never"].pk]["block_reason"] == "no_authorization"
    assert by_patient[world["patients"]["defective"].pk]["block_reason"] == "defect_missing_element"
    assert all(row["authorization_id"] == "" for row in rows if row["outcome"] == "blocked")
    # The campaign's facts and the provenance of the report.
    assert preamble["content_sha256"] == campaign_content_hash(campaign)
    assert preamble["author"] == campaign.created_by.email
    assert preamble["approved_by"] == campaign.approved_by.email
    assert preamble["approved_at"] == exports.iso_utc(campaign.approved_at)
    assert preamble["launched_at"] == exports.iso_utc(campaign.launched_at)
    assert preamble["purpose"] == "cpap-supplies (marketing)"
    assert all(row["covered_at_send"] == "True" for row in rows if row["outcome"] == "sent")
    assert all(row["covered_at_send"] == "" for row in rows if row["outcome"] != "sent")
    # Totals at the end, counted from the rows written.
    assert preamble["total: audience"] == "5" and preamble["total: sent"] == "2" and preamble["total: blocked"] == "3"
    assert preamble["total: sent_without_covering_authorization"] == "0"
    assert preamble["generated_by"] == f"{officer.email} (compliance officer)"
    export = AuditEvent.objects.get(action="report.exported")
    assert preamble["export_audit_event"] == f"#{export.pk}"
    head = re.search(r"event #(\d+)", preamble["audit_chain_head"])
    assert head and int(head.group(1)) >= export.pk
    assert preamble["filter: Campaign"] == f"#{campaign.pk} · Spring CPAP refill"


def test_campaign_content_hash_follows_the_stored_content(world):
    """R-SEC-INTEGRITY: the fingerprint is SHA-256 hex of the stored content and changes when the content does."""
    campaign = world["campaign"]
    before = campaign_content_hash(campaign)

    campaign.subject = "Another subject"

    assert len(before) == 64 and int(before, 16) >= 0
    assert campaign_content_hash(campaign) != before


def test_csv_streams_lazily_from_a_server_side_cursor(verified_client, world, monkeypatch):
    """Constant memory: the response is streamed, the rows come from QuerySet.iterator(chunk_size=...), and the
    first piece is sent before the rows after it are even read."""
    officer = _officer(verified_client)
    chunk_sizes = []
    real_iterator = QuerySet.iterator

    def spying_iterator(self, chunk_size=None):
        chunk_sizes.append(chunk_size)
        return real_iterator(self, chunk_size=chunk_size)

    read = []
    real_rows = campaign_evidence.campaign_evidence_rows

    def counted_rows(**kwargs):
        for row in real_rows(**kwargs):
            read.append(row)
            yield row

    monkeypatch.setattr(QuerySet, "iterator", spying_iterator)
    monkeypatch.setattr(campaign_evidence, "campaign_evidence_rows", counted_rows)
    monkeypatch.setattr(exports, "CSV_ROWS_PER_CHUNK", 2)

    response = _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=world["campaign"].pk)

    assert response.streaming is True and not hasattr(response, "content")
    assert read == []  # nothing read yet: the view returned a generator
    content = iter(response.streaming_content)
    first = next(content)
    assert b"delivery_id,patient_id" in first
    assert len(read) == 2  # one piece of two rows, not the five
    rest = b"".join(content)
    assert len(read) == 5 and b"# total: audience,5\r\n" in rest
    assert chunk_sizes and all(size == exports.CURSOR_CHUNK_SIZE for size in chunk_sizes)


def test_csv_stream_is_a_generator_that_holds_one_piece_at_a_time():
    rows = ([n, "x" * 10] for n in range(5000))

    stream = exports.csv_stream(preamble=[["# report", "test"]], header=["n", "x"], rows=rows)

    assert isinstance(stream, GeneratorType)
    pieces = list(stream)
    assert len(pieces) == 5000 // exports.CSV_ROWS_PER_CHUNK
    assert max(len(piece) for piece in pieces) < 40 * exports.CSV_ROWS_PER_CHUNK


def test_free_text_that_a_spreadsheet_would_run_is_quoted(verified_client, world):
    """CSV injection: a campaign name starting with '=' reaches the CSV as text."""
    officer = _officer(verified_client)
    Campaign.objects.filter(pk=world["campaign"].pk).update(name='=HYPERLINK("http://x.example","y")')

    response = _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=world["campaign"].pk)

    preamble, _ = _table(_streamed_text(response))
    assert preamble["campaign_name"].startswith("'=HYPERLINK")


def _pdf_text(pdf: bytes, tmp_path) -> str:
    return " ".join(pdf_text(pdf).split())


def test_campaign_evidence_pdf_has_headings_provenance_and_page_numbers(verified_client, world, tmp_path):
    officer = _officer(verified_client)
    campaign = world["campaign"]

    response = _export(verified_client, officer, "campaign-evidence", fmt="pdf", campaign=campaign.pk)

    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content[:5] == b"%PDF-"
    text = _pdf_text(response.content, tmp_path)
    for heading in [
        "Riverside Health", "Campaign evidence report", "About this report", "Audit chain head at generation",
        "1. Campaign", "2. Outcome", "3. Sent messages and the authorization that covered each",
        "4. Excluded patients and the reason for each", "5. Bounces and complaints", "6. Unsubscribes",
        "Sent without a covering authorization: 0",
    ]:
        assert heading in text, heading
    assert "Page 1 of " in text
    assert officer.email in text
    assert campaign_content_hash(campaign) in text.replace(" ", "")
    assert "Authorization revoked" in text and "No authorization" in text
    assert f"#{world['authorizations']['covered'].pk}" in text


def test_r_send_evidence_the_pdf_says_which_messages_may_have_reached_the_server_unrecorded(
    verified_client, world, tmp_path
):
    """R-SEND-EVIDENCE (DESIGN.md: a message in flight during a crash, and then the delivery says so): a sent
    delivery re-sent after its worker stopped, and a blocked one that was in such a batch, each say so."""
    officer = _officer(verified_client)
    Delivery.objects.filter(pk__in=[world["deliveries"]["covered"].pk, world["deliveries"]["never"].pk]).update(
        possible_duplicate=True
    )

    response = _export(verified_client, officer, "campaign-evidence", fmt="pdf", campaign=world["campaign"].pk)

    text = _pdf_text(response.content, tmp_path)
    assert "may have reached the mail server twice (same Message-ID)" in text
    assert "the message may have reached the mail server before the campaign was cancelled" in text


def test_a_long_pdf_table_says_it_is_cut_and_that_the_csv_has_every_row(verified_client, world, tmp_path, monkeypatch):
    officer = _officer(verified_client)
    monkeypatch.setattr(exports, "PDF_TABLE_ROW_LIMIT", 1)

    response = _export(verified_client, officer, "campaign-evidence", fmt="pdf", campaign=world["campaign"].pk)

    text = _pdf_text(response.content, tmp_path)
    assert "Only the first 1 sent messages are printed. The CSV export of this report lists every one." in text
    assert "Only the first 1 exclusions are printed." in text
    sent_section = text.split("4. Excluded patients")[0].split("3. Sent messages")[1]
    printed = [name for name in ("covered", "unsubscriber")
               if f"#{world['deliveries'][name].pk} #{world['patients'][name].pk}" in sent_section]
    assert printed == ["covered"]  # the first by delivery id, and delivery ids follow the patients


# --- Patient consent ledger ----------------------------------------------------------------------------------


def test_r_auth_esign_patient_ledger_csv_holds_signature_evidence_revocations_and_messages(verified_client, world):
    """R-AUTH-ESIGN, R-AUTH-CORE-6, R-REVOKE-ANYTIME: the ledger shows the decrypted signature evidence, the
    one-click revocation with its channel, and the message the patient received, in time order."""
    officer = _officer(verified_client)
    patient = world["patients"]["unsubscriber"]
    authorization = world["authorizations"]["unsubscriber"]

    response = _export(verified_client, officer, "patient-ledger", fmt="csv", patient=patient.pk)

    preamble, rows = _table(_streamed_text(response))
    assert preamble["patient_id"] == str(patient.pk) and preamble["record_number"] == "MRN-1002"
    events = [row["event"] for row in rows]
    assert events == ["authorization_signed", "message_sent", "authorization_revoked"]
    signed, message, revoked = rows
    assert signed["signer_name"] == "Peter Olsen"
    assert signed["signed_ip"] == "203.0.113.9"
    assert signed["text_sha256"] == authorization.text_hash and len(authorization.text_hash) == 64
    assert signed["form_version"] == str(world["form"].version)
    assert signed["detail"] == "state at generation: Revoked"
    assert message["campaign_id"] == str(world["campaign"].pk) and message["purpose"] == "cpap-supplies"
    assert message["authorization_id"] == str(authorization.pk)
    assert revoked["channel"] == "one_click"
    assert [row["occurred_at"] for row in rows] == sorted(row["occurred_at"] for row in rows)


def test_patient_ledger_shows_blocked_messages_with_their_reason_and_defects(verified_client, world):
    officer = _officer(verified_client)
    patient = world["patients"]["defective"]

    response = _export(verified_client, officer, "patient-ledger", fmt="csv", patient=patient.pk)

    _, rows = _table(_streamed_text(response))
    by_event = {row["event"]: row for row in rows}
    assert sorted(by_event) == ["authorization_signed", "defect_recorded", "message_blocked"]
    assert by_event["defect_recorded"]["detail"] == "Lacks a required element"
    assert by_event["message_blocked"]["block_reason"] == "defect_missing_element"
    assert by_event["message_blocked"]["campaign_id"] == str(world["campaign"].pk)
    assert [row["occurred_at"] for row in rows] == sorted(row["occurred_at"] for row in rows)


def test_patient_ledger_pdf_prints_the_decrypted_evidence_and_page_numbers(verified_client, world, tmp_path):
    officer = _officer(verified_client)
    patient = world["patients"]["covered"]

    response = _export(verified_client, officer, "patient-ledger", fmt="pdf", patient=patient.pk)

    assert response.content[:5] == b"%PDF-"
    text = _pdf_text(response.content, tmp_path)
    for heading in [
        "Patient consent ledger", "1. Patient", "2. Authorizations and signature evidence", "3. Consent ledger",
        "4. Messages sent or blocked", "MRN-1001", "Margaret Olsen", "203.0.113.9", "Page 1 of ",
    ]:
        assert heading in text, heading
    assert world["authorizations"]["covered"].text_hash in text.replace(" ", "")


def test_r_no_phi_leak_export_filename_and_audit_hold_ids_only(verified_client, world):
    """R-NO-PHI-LEAK: the file name names the patient's internal id only; the audit event holds ids and codes.
    R-SEC-AUDIT: the export names the patient as its subject, so it is in the patient's audit history."""
    officer = _officer(verified_client)
    patient = world["patients"]["covered"]

    response = _export(verified_client, officer, "patient-ledger", fmt="pdf", patient=patient.pk)

    disposition = response["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="patient-ledger-patient-{patient.pk}-')
    assert "MRN" not in disposition and "Olsen" not in disposition
    event = AuditEvent.objects.get(action="report.exported")
    assert (event.actor, event.object_type, event.object_id) == (officer, "patient", str(patient.pk))
    assert event.patient_id == patient.pk
    assert event.details == {"kind": "patient_ledger", "format": "pdf"}
    assert "Olsen" not in str(event.details) and "MRN" not in str(event.details)


# --- Compliance summary --------------------------------------------------------------------------------------


def _summary(verified_client, officer, **period):
    response = _export(verified_client, officer, "compliance-summary", fmt="csv", **(period or _today_period()))
    assert response.status_code == 200
    _, rows = _table(_streamed_text(response))
    return {(row["section"], row["measure"], row["breakdown"]): int(float(row["value"])) for row in rows}


def test_compliance_summary_counts_signed_revoked_blocked_and_staff_access(verified_client, world):
    """R-SEC-AUDIT, R-MIN-NECESSARY: figures counted from the rows, staff access to PHI by user from the audit."""
    officer = _officer(verified_client)
    verified_client.get(f"/consent/patients/{world['patients']['covered'].pk}/")  # audited as patient.viewed

    lines = _summary(verified_client, officer)

    assert lines[("authorizations", "signed", "")] == 4
    assert lines[("authorizations", "signed by purpose", "cpap-supplies")] == 4
    assert lines[("authorizations", "revoked", "")] == 2
    assert lines[("authorizations", "revoked by channel", "one_click")] == 1
    assert lines[("authorizations", "revoked by channel", "portal")] == 1
    assert lines[("authorizations", "defects recorded", "")] == 1
    assert lines[("sends", "messages sent", "")] == 2
    assert lines[("sends", "sends blocked by reason", "revoked")] == 1
    assert lines[("sends", "sends blocked by reason", "no_authorization")] == 1
    assert lines[("sends", "sends blocked by reason", "defect_missing_element")] == 1
    assert lines[("sends", "bounces by type", "hard")] == 1
    assert lines[("sends", "sent without a covering authorization (must be 0)", "")] == 0
    assert lines[("staff access to patient data", officer.email, "patient.viewed")] == 1
    assert lines[("revocation to effect", "revocations in the period", "")] == 2
    assert lines[("revocation to effect", "revocations by latency",
                  "Took effect at commit: nothing sent under it afterwards")] == 2
    assert lines[("revocation to effect", "revocations followed by a send attempt blocked as revoked", "")] == 1


def test_r_send_covered_sends_without_coverage_are_computed_not_asserted(verified_client, world, tmp_path):
    """R-SEND-COVERED, R-REVOKE-ANYTIME: a forged sent delivery under a revoked authorization, sent after the
    revocation, is counted (1) by the summary, the campaign evidence and the revocation latency."""
    officer = _officer(verified_client)
    assert _summary(verified_client, officer)[("sends", "sent without a covering authorization (must be 0)", "")] == 0
    revoked_authorization = world["authorizations"]["revoked"]
    revoked_at = Revocation.objects.get(authorization=revoked_authorization).revoked_at
    # Forged evidence: the check constraint holds (a sent row names an authorization), the rule does not.
    Delivery.objects.filter(pk=world["deliveries"]["revoked"].pk).update(
        status=Delivery.Status.SENT, block_reason="", authorization=revoked_authorization,
        checked_at=revoked_at + timedelta(seconds=30), sent_at=revoked_at + timedelta(seconds=30),
    )

    lines = _summary(verified_client, officer)
    evidence = campaign_evidence.campaign_evidence_facts(campaign_id=world["campaign"].pk)

    assert lines[("sends", "sent without a covering authorization (must be 0)", "")] == 1
    assert lines[("sends", "sent without a covering authorization by ground", "Sent after the revocation")] == 1
    assert lines[("revocation to effect", "messages sent under a revoked authorization at or after its revocation",
                  "")] == 1
    assert lines[("revocation to effect", "revocations by latency",
                  "A message was sent under it up to 1 minute later")] == 1
    assert lines[("revocation to effect", "longest latency (seconds)", "")] == 30
    assert evidence.uncovered["total"] == 1 and evidence.uncovered["revoked"] == 1
    preamble, rows = _table(_streamed_text(
        _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=world["campaign"].pk)
    ))
    forged = next(row for row in rows if row["delivery_id"] == str(world["deliveries"]["revoked"].pk))
    assert forged["covered_at_send"] == "False"
    assert preamble["total: sent_without_covering_authorization"] == "1"
    pdf = _export(verified_client, officer, "compliance-summary", fmt="pdf", **_today_period())
    assert "Messages sent without a covering authorization in the period: 1 of 3" in _pdf_text(pdf.content, tmp_path)


@pytest.mark.parametrize(
    "ground, forge",
    [
        ("defective", lambda w: {"authorization": w["authorizations"]["defective"]}),
        ("other_patient", lambda w: {"authorization": w["authorizations"]["covered"]}),
    ],
)
def test_r_auth_defective_each_ground_of_an_uncovered_send_is_counted(world, ground, forge):
    """R-AUTH-DEFECTIVE: a send after a defect was recorded, or under another patient's authorization, counts."""
    delivery = world["deliveries"]["defective"]
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.SENT, block_reason="", checked_at=timezone.now(), sent_at=timezone.now(), **forge(world)
    )

    facts = campaign_evidence.campaign_evidence_facts(campaign_id=world["campaign"].pk)
    rows = {row[0]: row for row in campaign_evidence.campaign_evidence_rows(campaign_id=world["campaign"].pk)}

    assert facts.uncovered["total"] == 1 and facts.uncovered[ground] == 1
    assert rows[delivery.pk][campaign_evidence.HEADER.index("covered_at_send")] is False


def test_r_sec_mfa_second_factor_failures_and_locked_devices_are_reported(verified_client, world):
    """R-SEC-MFA: wrong codes are counted per staff member; a throttled second factor is listed as locked."""
    officer = _officer(verified_client)
    careless = staff_make(role="marketer", with_totp=True)
    device = TOTPDevice.objects.get(user=careless)
    for _ in range(3):
        device.throttle_increment()
    _export(verified_client, officer, "campaign-evidence", fmt="csv", code="000000", campaign=world["campaign"].pk)

    lines = _summary(verified_client, officer)

    assert lines[("second-factor failures", officer.email, "mfa.reentry_failed")] == 1
    assert lines[("locked accounts (at generation)", "second factor throttled now", "")] == 1
    assert any(key[1] == careless.email for key in lines if key[0] == "locked accounts (at generation)")


def test_period_is_whole_days_in_the_organisations_zone(settings):
    from datetime import date

    settings.TIME_ZONE = "America/Chicago"
    period = compliance_summary.Period.of_days(date(2026, 11, 1), date(2026, 11, 30))

    assert exports.utc_text(period.start) == "2026-11-01 05:00:00 UTC"  # CDT, UTC-5
    assert exports.utc_text(period.end) == "2026-12-01 06:00:00 UTC"  # CST, UTC-6


def test_compliance_summary_pdf_has_its_sections_and_page_numbers(verified_client, world, tmp_path):
    officer = _officer(verified_client, role="administrator")

    response = _export(verified_client, officer, "compliance-summary", fmt="pdf", **_today_period())

    assert response.content[:5] == b"%PDF-"
    text = _pdf_text(response.content, tmp_path)
    for heading in [
        "Compliance summary", "1. Key results", "2. Authorizations", "3. Revocation to effect", "4. Sends",
        "5. Staff access to patient data", "6. Second-factor failures and locked accounts",
        "Messages sent without a covering authorization in the period: 0 of 2", "Page 1 of ", "Period in UTC",
    ]:
        assert heading in text, heading


def test_a_spanish_reader_gets_the_compliance_summary_pdf_in_spanish(verified_client, world, tmp_path):
    """The PDF follows the page's language (ADR 0030): headings, footer and page numbers in Spanish, the same
    figures. Kept as docs/screenshots/87-report-compliance-summary-es.png when SCREENSHOT_DIR is set."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    officer = _officer(verified_client, role="administrator")
    verified_client.cookies["django_language"] = "es"

    response = _export(verified_client, officer, "compliance-summary", fmt="pdf", **_today_period())

    assert response.content[:5] == b"%PDF-"
    text = _pdf_text(response.content, tmp_path)
    assert "Compliance summary" not in text and "Page 1 of" not in text
    assert "Página 1 de" in text and "Resumen de cumplimiento" in text
    assert f"{officer.email} (administrador)" in text
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder and shutil.which("pdftoppm"):
        pdf = tmp_path / "summary-es.pdf"
        pdf.write_bytes(response.content)
        out = Path(folder) / "87-report-compliance-summary-es"
        subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(out)],
                       check=True)


# --- Who may export, and how ---------------------------------------------------------------------------------


@pytest.mark.parametrize("report", ["campaign-evidence", "patient-ledger", "compliance-summary"])
def test_r_sec_mfa_a_wrong_code_gives_no_file_and_is_audited(verified_client, world, report):
    """R-SEC-MFA: without the right code there is no file; the failure is audited, the export is not."""
    officer = _officer(verified_client)
    fields = {
        "campaign-evidence": {"campaign": world["campaign"].pk},
        "patient-ledger": {"patient": world["patients"]["covered"].pk},
        "compliance-summary": _today_period(),
    }[report]

    response = _export(verified_client, officer, report, fmt="csv", code="000000", **fields)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert "Content-Disposition" not in response
    assert "That code did not work" in response.content.decode()
    assert 'value="000000"' not in response.content.decode()  # a code is never shown back
    failure = AuditEvent.objects.get(action="mfa.reentry_failed", actor=officer)
    assert failure.details == {"for": "report.exported", "report": report.replace("-", "_")}
    assert not AuditEvent.objects.filter(action="report.exported").exists()


def test_a_missing_code_is_a_form_error_not_an_export(verified_client, world):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, "campaign-evidence", fmt="pdf", code="", campaign=world["campaign"].pk)

    assert response.status_code == 400
    assert "Enter the current code from your authenticator app." in response.content.decode()
    assert not AuditEvent.objects.filter(action__in=["report.exported", "mfa.reentry_failed"]).exists()


@pytest.mark.parametrize("role", ["marketer"])
def test_r_min_necessary_marketers_get_404_for_every_report_page(verified_client, world, role):
    """R-MIN-NECESSARY: the page and the exports do not exist for a marketer; nothing is exported or audited."""
    marketer = verified_client.sign_in(role=role)

    assert verified_client.get("/reports/").status_code == 404
    for report, fields in [
        ("campaign-evidence", {"campaign": world["campaign"].pk}),
        ("patient-ledger", {"patient": world["patients"]["covered"].pk}),
        ("compliance-summary", _today_period()),
    ]:
        assert _export(verified_client, marketer, report, fmt="csv", **fields).status_code == 404
    assert not AuditEvent.objects.filter(action__in=["report.exported", "mfa.reentry_failed"]).exists()


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/reports/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.parametrize("fmt", ["pdf", "csv"])
def test_r_sec_audit_each_export_is_audited_with_kind_format_and_object(verified_client, world, fmt):
    """R-SEC-AUDIT: report.exported, by whom, with the report kind, the format and the object id."""
    officer = _officer(verified_client)
    campaign = world["campaign"]

    response = _export(verified_client, officer, "campaign-evidence", fmt=fmt, campaign=campaign.pk)
    if response.streaming:
        b"".join(response.streaming_content)

    event = AuditEvent.objects.get(action="report.exported")
    assert event.actor == officer
    assert (event.object_type, event.object_id) == ("campaign", str(campaign.pk))
    assert event.details == {"kind": "campaign_evidence", "format": fmt}


def test_summary_export_audits_the_period(verified_client, world):
    officer = _officer(verified_client)

    _summary(verified_client, officer, date_from="2026-01-01", date_to="2026-01-31")

    event = AuditEvent.objects.get(action="report.exported")
    assert event.details == {"kind": "compliance_summary", "format": "csv", "from": "2026-01-01", "to": "2026-01-31"}


def test_reports_page_offers_the_three_reports_and_prefills_a_campaign(verified_client, world):
    _officer(verified_client)
    campaign = world["campaign"]

    page = verified_client.get(f"/reports/?campaign={campaign.pk}").content.decode()

    assert "Campaign evidence" in page and "Patient consent ledger" in page and "Compliance summary" in page
    assert f'<option value="{campaign.pk}" selected>' in page
    assert page.count('autocomplete="one-time-code"') == 3


@pytest.mark.parametrize(
    "report, fields, message",
    [
        ("patient-ledger", {"patient": "999999"}, "No patient has the number 999999."),
        ("patient-ledger", {"patient": "MRN-1001"}, "Enter the patient&#x27;s number as digits only"),
        ("campaign-evidence", {"campaign": "999999"}, "That campaign does not exist."),
        ("campaign-evidence", {}, "Choose the campaign to report on."),
        ("compliance-summary", {"date_from": "2026-02-01", "date_to": "2026-01-01"},
         "The last day must be on or after the first day."),
        ("compliance-summary", {"date_from": "yesterday", "date_to": "2026-01-01"}, "Enter a date, as YYYY-MM-DD."),
    ],
)
def test_bad_input_gets_a_clear_message_never_an_error_page(verified_client, world, report, fields, message):
    officer = _officer(verified_client)

    response = _export(verified_client, officer, report, fmt="pdf", **fields)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not AuditEvent.objects.filter(action__in=["report.exported", "mfa.reentry_failed"]).exists()


def test_exports_are_post_only(verified_client):
    _officer(verified_client)

    assert verified_client.get("/reports/campaign-evidence/").status_code == 405


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "pdf"])
def test_every_report_reads_in_one_read_only_snapshot_outside_a_test_transaction(verified_client, fmt):
    """Outside the test's own transaction, report_snapshot opens the real thing (REPEATABLE READ, READ ONLY on
    PostgreSQL): nothing a report does may write, and each report still comes out whole."""
    purpose = purpose_make()
    form = form_published_make(purpose)
    patient = patient_make(external_id="MRN-7")
    _grant(patient, purpose, form, name="Ann Lee")
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=campaign.approved_by, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    officer = _officer(verified_client)

    for report, fields in [
        ("campaign-evidence", {"campaign": campaign.pk}),
        ("patient-ledger", {"patient": patient.pk}),
        ("compliance-summary", _today_period()),
    ]:
        response = _export(verified_client, officer, report, fmt=fmt, **fields)
        assert response.status_code == 200, report
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body.startswith(b"# report," if fmt == "csv" else b"%PDF-"), report
    assert AuditEvent.objects.filter(action="report.exported").count() == 3


# --- Per-message evidence (issue 11, item 4) ------------------------------------------------------------------


def test_r_send_evidence_each_message_shows_its_own_check_and_send_times_and_a_refusals_smtp_code(
    verified_client, world, tmp_path
):
    """R-SEND-EVIDENCE: the evidence CSV and PDF and the patient ledger carry each sent message's checked_at (the
    coverage check that allowed it) and sent_at (the server's acceptance), and a refused message's SMTP code."""
    officer = _officer(verified_client)
    sent = Delivery.objects.get(pk=world["deliveries"]["covered"].pk)
    assert sent.checked_at is not None and sent.checked_at <= sent.sent_at
    # The mail server refused one recipient (what leaves the project is simulated, not the evidence).
    refused = world["deliveries"]["never"]
    Delivery.objects.filter(pk=refused.pk).update(status="failed", block_reason="", smtp_code=550, error="smtp 550")

    _, rows = _table(_streamed_text(
        _export(verified_client, officer, "campaign-evidence", fmt="csv", campaign=world["campaign"].pk)
    ))
    by_id = {int(row["delivery_id"]): row for row in rows}
    assert (by_id[sent.pk]["checked_at"], by_id[sent.pk]["sent_at"]) == (
        exports.iso_utc(sent.checked_at), exports.iso_utc(sent.sent_at)
    )
    assert by_id[sent.pk]["smtp_code"] == ""
    assert (by_id[refused.pk]["outcome"], by_id[refused.pk]["smtp_code"], by_id[refused.pk]["checked_at"]) == (
        "failed", "550", ""
    )
    _, ledger = _table(_streamed_text(
        _export(verified_client, officer, "patient-ledger", fmt="csv", patient=world["patients"]["covered"].pk)
    ))
    (message,) = [row for row in ledger if row["event"] == "message_sent"]
    assert (message["checked_at"], message["occurred_at"]) == (
        exports.iso_utc(sent.checked_at), exports.iso_utc(sent.sent_at)
    )
    _, refused_ledger = _table(_streamed_text(
        _export(verified_client, officer, "patient-ledger", fmt="csv", patient=world["patients"]["never"].pk)
    ))
    assert [(row["event"], row["smtp_code"]) for row in refused_ledger] == [("message_failed", "550")]
    text = _pdf_text(
        _export(verified_client, officer, "campaign-evidence", fmt="pdf", campaign=world["campaign"].pk).content,
        tmp_path,
    )
    assert f"{sent.checked_at.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}" in text
    assert f"{sent.sent_at.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}" in text
    assert "failed · SMTP 550" in text
    ledger_pdf = _pdf_text(
        _export(verified_client, officer, "patient-ledger", fmt="pdf", patient=world["patients"]["never"].pk).content,
        tmp_path,
    )
    assert "Refused: SMTP 550" in ledger_pdf


def _times_around(instant, *, checked: float, sent: float) -> dict:
    return {"checked_at": instant + timedelta(seconds=checked), "sent_at": instant + timedelta(seconds=sent)}


@pytest.mark.parametrize(
    "ground, times",
    [
        # Signed between the check and the send: the check that allowed the message cannot have found it.
        ("not_yet_signed", lambda a: _times_around(a.signed_at, checked=-0.4, sent=0.3)),
        # An expiry date inside the window: the sender checks against the window's end, so this is uncovered.
        ("expired", lambda a: _times_around(a.expires_at, checked=-0.5, sent=0.0)),
        # Evidence out of order (checked after sent), the expiry between the two: not in force at the check.
        ("expired", lambda a: _times_around(a.expires_at, checked=0.2, sent=-0.2)),
        # Revoked inside the window.
        ("revoked", lambda a: _times_around(a.revocation.revoked_at, checked=-0.5, sent=0.1)),
    ],
    ids=["signed-inside-the-window", "expired-at-the-send", "expired-by-the-check", "revoked-inside-the-window"],
)
def test_r_send_covered_a_send_is_uncovered_when_its_authorization_was_not_in_force_from_check_to_send(
    world, ground, times
):
    """R-SEND-COVERED, R-AUTH-DEFECTIVE: the coverage check uses both of a message's instants: the authorization
    must be in force at checked_at, and no time-based end, revocation or defect may fall at or before sent_at."""
    delivery = world["deliveries"]["unsubscriber"]  # sent; its authorization was revoked by one click afterwards
    authorization = Authorization.objects.select_related("revocation").get(pk=delivery.authorization_id)
    Delivery.objects.filter(pk=delivery.pk).update(**times(authorization))

    facts = campaign_evidence.campaign_evidence_facts(campaign_id=world["campaign"].pk)
    rows = {row[0]: row for row in campaign_evidence.campaign_evidence_rows(campaign_id=world["campaign"].pk)}

    assert facts.uncovered["total"] == 1 and facts.uncovered[ground] == 1
    assert rows[delivery.pk][campaign_evidence.HEADER.index("covered_at_send")] is False
    assert rows[world["deliveries"]["covered"].pk][campaign_evidence.HEADER.index("covered_at_send")] is True


def test_r_send_covered_a_send_just_inside_its_authorizations_life_is_covered(world):
    """The boundary: checked just after signing and sent just before the revocation is covered."""
    delivery = world["deliveries"]["unsubscriber"]
    authorization = Authorization.objects.select_related("revocation").get(pk=delivery.authorization_id)
    Delivery.objects.filter(pk=delivery.pk).update(
        checked_at=authorization.signed_at, sent_at=authorization.revocation.revoked_at - timedelta(microseconds=1)
    )

    facts = campaign_evidence.campaign_evidence_facts(campaign_id=world["campaign"].pk)

    assert facts.uncovered["total"] == 0
