"""Deliveries are tamper-evident through the chain (issue 11, item 5): audit_verify, and the nightly verify, compare
every delivery row with the sealed batch event that recorded it and name each mismatch; the compliance summary
shows the last result. R-SEC-INTEGRITY, R-SEND-EVIDENCE, R-SEC-AUDIT.

The attacker is simulated as one with the application's database access: a raw SQL UPDATE of campaigns_delivery
(which has no append-only trigger), leaving the audit trail alone (which the chain guards).
"""
import csv
import io
from datetime import UTC, timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal
from audit.tasks import audit_verify_task
from audit.verification import verifier_list
from campaigns import delivery_verification
from campaigns.models import Delivery
from campaigns.reports import exports
from campaigns.selectors.coverage import sent_without_coverage_counts
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from conftest import pdf_text, totp_code
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

@pytest.fixture(autouse=True)
def checkpoint_key(settings):
    settings.AUDIT_CHECKPOINT_KEYS = "test-only-audit-checkpoint-key-for-deliveries-0123456789"
    settings.AUDIT_CHECKPOINT_FILE = ""


def _dispatch_all(campaign_id: int) -> None:
    while delivery_dispatch_batch(campaign_id=campaign_id):
        pass


@pytest.fixture
def sent_campaign():
    """One campaign sent through the real sender: two patients covered (sent), one revoked between the launch and
    the send (blocked by the sender, so recorded as blocked_revoked in the sealed batch event), one blocked at
    launch (no authorization: counted by campaign.launched, never listed by id)."""
    purpose = purpose_make()
    first, second, revoked, never = patient_make(), patient_make(), patient_make(), patient_make()
    authorizations = {
        "first": authorization_make(patient=first, purpose=purpose, signed_ago=timedelta(days=3)),
        "second": authorization_make(patient=second, purpose=purpose, signed_ago=timedelta(days=3)),
        "revoked": authorization_make(patient=revoked, purpose=purpose, signed_ago=timedelta(days=3)),
    }
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    authorization_revoke(actor=None, patient_id=revoked.pk, purpose_id=purpose.pk, channel="portal")
    _dispatch_all(campaign.pk)
    audit_seal()
    deliveries = {
        name: Delivery.objects.get(campaign=campaign, patient=patient)
        for name, patient in [("first", first), ("second", second), ("revoked", revoked), ("never", never)]
    }
    assert [deliveries[name].status for name in ("first", "second", "revoked", "never")] == [
        "sent", "sent", "blocked", "blocked"
    ]
    assert deliveries["revoked"].block_reason == "revoked"
    return {"campaign": campaign, "purpose": purpose, "authorizations": authorizations, "deliveries": deliveries}


def _forge(delivery_id: int, **columns) -> None:
    """What an attacker with the application's database access can do: rewrite a delivery row in place."""
    assignments = ", ".join(f"{name} = %s" for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE campaigns_delivery SET {assignments} WHERE id = %s", [*columns.values(), delivery_id])


def _verify(*args) -> tuple[int, str]:
    """Run manage.py audit_verify; (exit status, what it printed)."""
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def _mismatch_line(delivery: Delivery, what: str) -> str:
    return f"delivery {delivery.pk} (campaign {delivery.campaign_id}): {what}"


# --- audit_verify names each mismatch ------------------------------------------------------------------------


def test_r_sec_integrity_an_honest_campaign_verifies_clean(sent_campaign):
    """R-SEC-INTEGRITY, R-SEND-EVIDENCE: every sent and every send-time-blocked delivery matches its sealed record;
    those blocked at launch are in no batch and are not expected to be."""
    status, output = _verify()

    assert status == 0, output
    assert "Deliveries: 3 compared with their sealed batch records (3 sealed records), 0 mismatches." in output
    verified = AuditEvent.objects.filter(action="audit.verified").latest("id")
    check = verified.details["checks"]["deliveries"]
    assert (check["ok"], check["compared"], check["mismatches"], check["named"]) == (True, 3, 0, [])


def test_r_sec_integrity_a_blocked_delivery_forged_to_sent_is_named_by_audit_verify_and_the_summary(
    sent_campaign, verified_client, tmp_path
):
    """R-SEC-INTEGRITY, R-SEND-EVIDENCE, R-SEC-AUDIT: the issue's forgery. A delivery the sender blocked (its
    authorization was revoked) is rewritten as sent, back-dated to before the revocation, under its old
    authorization. Every check made from the delivery rows alone passes (the constraint, the coverage check);
    the sealed batch event still says blocked_revoked, and audit_verify says so."""
    world = sent_campaign
    delivery = world["deliveries"]["revoked"]
    authorization = world["authorizations"]["revoked"]
    revoked_at = authorization.revocation.revoked_at
    back_dated = revoked_at - timedelta(hours=2)
    _forge(
        delivery.pk,
        status="sent",
        block_reason="",
        authorization_id=authorization.pk,
        checked_at=back_dated,
        sent_at=back_dated + timedelta(milliseconds=180),
    )
    # The rows alone cannot tell: the forged send is "covered" at its back-dated time.
    assert sent_without_coverage_counts(Delivery.objects.filter(campaign=world["campaign"]))["total"] == 0

    status, output = _verify()

    assert status == 1
    assert _mismatch_line(delivery, "sent but sealed as blocked_revoked") in output
    assert "Deliveries: 3 compared with their sealed batch records (3 sealed records), 1 mismatch." in output
    check = AuditEvent.objects.filter(action="audit.verified").latest("id").details["checks"]["deliveries"]
    assert check["ok"] is False and check["mismatches"] == 1
    assert check["named"] == [
        {"delivery": delivery.pk, "campaign": delivery.campaign_id, "what": "outcome", "found": "sent",
         "sealed": "blocked_revoked"}
    ]

    # The compliance summary shows the last verify's result, each mismatch named.
    officer = verified_client.sign_in(role="compliance officer")
    lines = _summary_lines(verified_client, officer, fmt="csv")
    assert lines[("delivery verification", "deliveries compared with their sealed record", "")] == "3"
    assert lines[("delivery verification", "mismatches (must be 0)", "")] == "1"
    assert lines[("delivery verification", "mismatch", _mismatch_line(delivery, "sent but sealed as blocked_revoked"))] == "1"
    assert lines[("delivery verification", "deliveries that differ from their sealed record", "")] == "1"
    text = " ".join(pdf_text(_summary_response(verified_client, officer, fmt="pdf").content).split())
    assert "Deliveries that differ from their sealed record: 1 of 3" in text
    assert _mismatch_line(delivery, "sent but sealed as blocked_revoked") in text


def test_r_sec_integrity_a_forged_authorization_on_a_sent_delivery_is_named(sent_campaign):
    """R-SEND-EVIDENCE: a genuinely sent row given another authorization id (of the right purpose, so no coverage
    ground catches it) differs from the authorization its sealed batch recorded."""
    world = sent_campaign
    delivery = world["deliveries"]["first"]
    genuine = delivery.authorization_id
    forged = world["authorizations"]["second"].pk
    _forge(delivery.pk, authorization_id=forged)

    status, output = _verify()

    assert status == 1
    assert _mismatch_line(delivery, f"authorization {forged} but sealed {genuine}") in output


def test_r_sec_integrity_a_forged_send_time_is_named(sent_campaign):
    world = sent_campaign
    delivery = world["deliveries"]["second"]
    _forge(delivery.pk, sent_at=delivery.sent_at - timedelta(minutes=5), checked_at=delivery.checked_at - timedelta(minutes=5))

    status, output = _verify()

    assert status == 1
    assert _mismatch_line(delivery, "sent_at differs") in output
    assert _mismatch_line(delivery, "checked_at differs") in output


def test_r_sec_integrity_a_sent_delivery_in_no_sealed_batch_is_named(sent_campaign):
    """R-SEND-EVIDENCE: a delivery blocked at launch (recorded only as a count) forged to sent has no batch."""
    world = sent_campaign
    delivery = world["deliveries"]["never"]
    now = timezone.now()
    _forge(
        delivery.pk, status="sent", block_reason="", authorization_id=world["authorizations"]["first"].pk,
        checked_at=now, sent_at=now,
    )

    status, output = _verify()

    assert status == 1
    assert _mismatch_line(delivery, "sent but in no sealed batch") in output


def test_r_sec_integrity_a_sealed_record_whose_delivery_row_is_gone_is_named(sent_campaign):
    world = sent_campaign
    delivery = world["deliveries"]["second"]
    # A superuser removing the row (the foreign keys would stop the application's role).
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM campaigns_delivery WHERE id = %s", [delivery.pk])
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = origin")

    status, output = _verify()

    assert status == 1
    assert _mismatch_line(delivery, "sealed as sent but no delivery row") in output


def test_r_sec_audit_the_nightly_verify_alerts_at_a_delivery_mismatch(sent_campaign):
    """R-SEC-AUDIT: the scheduled verify compares the deliveries too, and mails the compliance officers."""
    officer = staff_make(role="compliance officer")
    delivery = sent_campaign["deliveries"]["revoked"]
    _forge(delivery.pk, status="sent", block_reason="", authorization_id=sent_campaign["authorizations"]["revoked"].pk,
           checked_at=timezone.now(), sent_at=timezone.now())
    mail.outbox.clear()

    assert audit_verify_task() is False

    assert [officer.email] in [message.to for message in mail.outbox]
    for message in mail.outbox:
        assert message.subject == "Audit verification: 1 record differs from the sealed trail"
        assert _mismatch_line(delivery, "sent but sealed as blocked_revoked") in message.body
        assert _mismatch_line(delivery, "sent but sealed as blocked_revoked") in message.alternatives[0][0]
        assert delivery.patient.email not in message.body
    alerted = AuditEvent.objects.get(action="audit.break_alerted")
    assert alerted.details["mismatches"] == {"deliveries": 1}


def test_the_delivery_verifier_is_registered_with_the_audit_app():
    assert "deliveries" in [name for name, _ in verifier_list()]


# --- What counts as sealed -----------------------------------------------------------------------------------


def _batch_event(campaign_id: int, details: dict) -> AuditEvent:
    return audit_record(
        actor=None, actor_role="system", action="delivery.batch_dispatched", object_type="campaign",
        object_id=campaign_id, details=details,
    )


def test_only_sealed_events_the_walk_covered_are_compared(sent_campaign):
    """A batch recorded after the walk's last sequence (or not sealed yet) is not evidence the chain vouches for:
    its deliveries are counted as pending, not named as mismatches."""
    world = sent_campaign
    delivery = world["deliveries"]["never"]
    now = timezone.now()
    _forge(delivery.pk, status="sent", block_reason="", authorization_id=world["authorizations"]["first"].pk,
           checked_at=now, sent_at=now)
    through = AuditEvent.objects.exclude(sequence=None).order_by("-sequence").values_list("sequence", flat=True)[0]
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _batch_event(world["campaign"].pk, {"checked_at": stamp, "sent": [delivery.pk],
                                        "sent_authorization": [world["authorizations"]["first"].pk], "sent_at": [stamp]})

    before_seal = delivery_verification.deliveries_verify(through_sequence=through)
    audit_seal()
    after_seal = delivery_verification.deliveries_verify(through_sequence=through + 1)

    assert (before_seal.mismatches, before_seal.pending) == (0, 1)
    assert (after_seal.mismatches, after_seal.pending) == (0, 0)


def test_a_legacy_batch_event_is_compared_on_outcome_only(sent_campaign):
    """Batch events written before per-message evidence list ids by outcome only: a sent row recorded there is
    compared on its outcome (a forged outcome is still named), not on authorization or time."""
    world = sent_campaign
    old = world["deliveries"]["never"]
    now = timezone.now()
    _forge(old.pk, status="sent", block_reason="", authorization_id=world["authorizations"]["first"].pk,
           checked_at=now, sent_at=now)
    _batch_event(world["campaign"].pk, {"sent": [old.pk]})
    audit_seal()

    result = delivery_verification.deliveries_verify(through_sequence=10**9)

    assert (result.mismatches, result.legacy) == (0, 1)
    _forge(old.pk, status="blocked", block_reason="revoked", authorization_id=None, checked_at=None, sent_at=None)
    result = delivery_verification.deliveries_verify(through_sequence=10**9)
    assert result.mismatches == 1
    assert result.lines() == [_mismatch_line(old, "blocked_revoked but sealed as sent")]


def test_mismatches_are_counted_in_full_and_named_up_to_the_cap(sent_campaign, monkeypatch):
    monkeypatch.setattr(delivery_verification, "NAMED_LIMIT", 1)
    world = sent_campaign
    for name in ("first", "second"):
        _forge(world["deliveries"][name].pk, sent_at=world["deliveries"][name].sent_at + timedelta(seconds=1))

    result = delivery_verification.deliveries_verify(through_sequence=10**9)

    assert result.mismatches == 2
    assert len(result.named) == 1 and result.named[0]["delivery"] == min(
        world["deliveries"]["first"].pk, world["deliveries"]["second"].pk
    )


# --- The compliance summary ----------------------------------------------------------------------------------


def _summary_response(client, officer, *, fmt: str):
    today = timezone.localdate()
    return client.post("/reports/compliance-summary/", {
        "summary-format": fmt, "summary-code": totp_code(officer),
        "summary-date_from": (today - timedelta(days=30)).isoformat(), "summary-date_to": today.isoformat(),
    })


def _summary_lines(client, officer, *, fmt: str) -> dict:
    response = _summary_response(client, officer, fmt=fmt)
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8")
    rows = [row for row in csv.reader(io.StringIO(text)) if row and not row[0].startswith("#")]
    return {(row[0], row[1], row[2]): row[3] for row in rows[1:]}


def test_the_summary_says_when_deliveries_were_never_verified(sent_campaign, verified_client):
    officer = verified_client.sign_in(role="compliance officer")

    lines = _summary_lines(verified_client, officer, fmt="csv")

    assert lines[("delivery verification", "last verified (audit.verified event)", "never")] == "0"


def test_the_summary_shows_a_clean_verify_with_its_time(sent_campaign, verified_client):
    officer = verified_client.sign_in(role="compliance officer")
    _verify()
    verified = AuditEvent.objects.filter(action="audit.verified").latest("id")

    lines = _summary_lines(verified_client, officer, fmt="csv")

    assert lines[("delivery verification", "last verified (audit.verified event)", exports.iso_utc(verified.occurred_at))] == (
        str(verified.pk)
    )
    assert not any(key[1] == "mismatch" for key in lines)
    assert lines[("delivery verification", "mismatches (must be 0)", "")] == "0"
    assert lines[("delivery verification", "deliveries compared with their sealed record", "")] == "3"


def test_r_sec_audit_the_audit_pages_show_the_last_delivery_comparison(sent_campaign, verified_client):
    verified_client.sign_in(role="compliance officer")
    delivery = sent_campaign["deliveries"]["revoked"]
    _forge(delivery.pk, status="sent", block_reason="", authorization_id=sent_campaign["authorizations"]["revoked"].pk,
           checked_at=timezone.now(), sent_at=timezone.now())
    _verify()

    html = verified_client.get("/audit/").content.decode()

    assert "Checked against the chain, deliveries: 3 compared, <strong>1 mismatch</strong>" in html
    assert 'class="chain-status bad ok"' in html  # the chain is intact, the deliveries are not: shown as bad
