"""Bounces and complaints after sending (R-BOUNCE-SUPPRESS): one service for every source, RFC 3464 DSNs and
RFC 5965 abuse reports read from a bounce mailbox, and the `bounces_read` command. R-NO-PHI-LEAK: no address in
logs, audit details or command output."""
import logging
import mailbox
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending import bounces
from campaigns.sending.bounces import BounceKind, BounceResult, bounce_message_apply, bounce_report_parse
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import message_id_for, message_id_parts
from campaigns.services.launch import campaign_launch
from campaigns.tests.bounce_samples import arf_report, delivery_sent, exchange_dsn, postfix_dsn
from campaigns.tests.factories import campaign_approved_make
from consent import crypto
from consent.models import Revocation, Suppression
from consent.selectors.coverage import authorization_covering_list
from consent.tests.factories import patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _suppression(email: str) -> Suppression | None:
    return Suppression.objects.filter(email_digest=crypto.lookup_digest(email)).first()


def _next_campaign_outcome(delivery: Delivery) -> tuple[str, str]:
    """Launch and dispatch another campaign of the same purpose to the same patient: its delivery's outcome."""
    campaign = campaign_approved_make(purpose=delivery.campaign.purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    delivery_dispatch_batch(campaign_id=campaign.pk)
    later = Delivery.objects.get(campaign=campaign, patient=delivery.patient)
    return later.status, later.block_reason


# --- Parsing reports -------------------------------------------------------------------------------------------


def test_r_bounce_suppress_a_postfix_dsn_with_status_5_is_a_hard_bounce():
    raw = postfix_dsn(recipient="jane@example.org", message_id="<delivery-42@hipaamail.invalid>")

    (report,) = bounce_report_parse(raw)

    assert report.kind == BounceKind.HARD and report.status == "5.1.1" and report.source == "dsn"
    assert report.message_id == "<delivery-42@hipaamail.invalid>"
    assert report.recipients == ("jane@example.org", "jane@example.org")


def test_r_bounce_suppress_an_exchange_dsn_with_the_whole_message_returned_is_read_too():
    raw = exchange_dsn(recipient="jane@example.org", message_id="<delivery-7@hipaamail.invalid>", status="4.2.2")

    (report,) = bounce_report_parse(raw)

    assert (report.kind, report.status, report.recipients) == (BounceKind.SOFT, "4.2.2", ("jane@example.org",))
    assert report.message_id == "<delivery-7@hipaamail.invalid>"


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind", "code"),
    [
        ("5.0.0", "smtp; 550 no", BounceKind.HARD, "5.0.0"),
        ("4.4.7", "smtp; 450 later", BounceKind.SOFT, "4.4.7"),
        ("unknown", "smtp; 554 rejected", BounceKind.HARD, "5.0.0"),  # the class from the SMTP reply
        ("unknown", "smtp; 452 full", BounceKind.SOFT, "4.0.0"),
    ],
)
def test_r_bounce_suppress_the_status_class_decides_hard_or_soft(status, diagnostic, kind, code):
    raw = postfix_dsn(recipient="a@example.org", message_id="<delivery-1@hipaamail.invalid>", status=status,
                      diagnostic=diagnostic)

    (report,) = bounce_report_parse(raw)

    assert (report.kind, report.status) == (kind, code)


@pytest.mark.parametrize("action", ["delayed", "delivered", "relayed", "expanded"])
def test_a_dsn_that_is_not_a_failure_states_no_bounce(action):
    """A delay warning means the server still tries: it counts for nothing."""
    raw = postfix_dsn(recipient="a@example.org", message_id="<delivery-1@hipaamail.invalid>", action=action,
                      status="4.4.1")

    assert bounce_report_parse(raw) == []


def test_a_message_that_is_not_a_report_states_nothing():
    assert bounce_report_parse(b"From: someone@example.org\r\nSubject: hello\r\n\r\nOut of office.\r\n") == []
    assert bounce_report_parse(b"\xff\xfe not mail at all") == []


def test_r_bounce_suppress_an_abuse_report_is_a_complaint_and_not_spam_is_nothing():
    raw = arf_report(recipient="jane@example.org", message_id="<delivery-9@hipaamail.invalid>")

    (report,) = bounce_report_parse(raw)

    assert (report.kind, report.source, report.message_id) == (BounceKind.COMPLAINT, "arf", "<delivery-9@hipaamail.invalid>")
    assert "jane@example.org" in report.recipients
    assert bounce_report_parse(arf_report(recipient="j@example.org", message_id="<x@y>", feedback_type="not-spam")) == []


def test_message_ids_of_ours_are_recognised_and_others_are_not(settings):
    settings.HIPAAMAIL_MESSAGE_ID_DOMAIN = "mail.riverside-health.example"
    ours = message_id_for(42)  # <delivery-42.<tag>@mail.riverside-health.example>
    before, after = message_id_parts()

    assert bounces.delivery_id_from_message_id(ours) == 42
    assert bounces.delivery_id_from_message_id(ours.strip("<>").replace("@mail.", "@MAIL.")) == 42
    for other in ("<delivery-42@mail.riverside-health.example>", ours.replace("@mail.", "@elsewhere."),
                  f"{before}x{after}", f"{before}{after}", "", "<0000014644fe5ef6@email.amazonses.com>",
                  f"{before}99999999999999999999{after}"):
        assert bounces.delivery_id_from_message_id(other) is None, other


def test_r_bounce_suppress_a_message_sent_before_the_install_tag_still_bounces():
    """R-BOUNCE-SUPPRESS: a message sent before issue 11 carries `<delivery-ID@domain>`; its late DSN is still
    applied to the delivery that stored exactly that Message-ID, and a guessed id of that shape is not."""
    patient = patient_make(email="legacy.bounce@example.org")
    delivery = delivery_sent(patient=patient)
    legacy = f"<delivery-{delivery.pk}@hipaamail.invalid>"
    Delivery.objects.filter(pk=delivery.pk).update(message_id=legacy)

    guessed = postfix_dsn(recipient="legacy.bounce@example.org", message_id=f"<delivery-{delivery.pk}@other.example>")
    assert bounce_message_apply(guessed) == [BounceResult.UNKNOWN_MESSAGE]
    results = bounce_message_apply(postfix_dsn(recipient="legacy.bounce@example.org", message_id=legacy))

    assert results == [BounceResult.RECORDED]
    delivery.refresh_from_db()
    assert delivery.bounce_type == "hard"
    assert _suppression("legacy.bounce@example.org").reason == "hard_bounce"


# --- Recording -------------------------------------------------------------------------------------------------


def test_r_bounce_suppress_a_hard_bounce_dsn_marks_the_delivery_and_suppresses_every_later_campaign(caplog):
    """R-BOUNCE-SUPPRESS, R-NO-PHI-LEAK: a 5.x.x DSN marks the delivery hard-bounced and suppresses the address;
    the next campaign's delivery to that patient is blocked "bounced" and no message leaves."""
    patient = patient_make(email="Jane.Doe@example.org")
    delivery = delivery_sent(patient=patient)
    caplog.set_level(logging.DEBUG)

    results = bounce_message_apply(postfix_dsn(recipient="jane.doe@example.org", message_id=delivery.message_id))

    assert results == [BounceResult.RECORDED]
    delivery.refresh_from_db()
    assert delivery.bounce_type == "hard" and delivery.bounced_at is not None and delivery.complained_at is None
    assert delivery.status == "sent"  # it was sent; the bounce is what happened after
    suppression = _suppression("jane.doe@example.org")
    assert (suppression.reason, suppression.smtp_code) == ("hard_bounce", "5.1.1")
    event = AuditEvent.objects.get(action="delivery.bounced")
    assert event.object_id == str(delivery.pk)
    assert event.details == {"kind": "hard", "status": "5.1.1", "source": "dsn", "campaign_id": delivery.campaign_id}
    mail.outbox.clear()
    assert _next_campaign_outcome(delivery) == ("blocked", "bounced")
    assert mail.outbox == []
    assert "jane" not in caplog.text.lower()


def test_r_bounce_suppress_the_third_soft_bounce_within_30_days_suppresses_the_address():
    """R-BOUNCE-SUPPRESS: soft bounces suppress after repeated failure: three soft-bounced messages to the same
    address within 30 days; a soft bounce older than that does not count."""
    patient = patient_make(email="full.mailbox@example.org")
    purpose = purpose_make()
    deliveries = [delivery_sent(patient=patient, purpose=purpose) for _ in range(4)]

    def soft(delivery):
        raw = exchange_dsn(recipient="full.mailbox@example.org", message_id=delivery.message_id, status="4.2.2")
        return bounce_message_apply(raw)

    assert soft(deliveries[0]) == [BounceResult.RECORDED]
    Delivery.objects.filter(pk=deliveries[0].pk).update(bounced_at=deliveries[0].sent_at - timedelta(days=31))
    assert soft(deliveries[1]) == [BounceResult.RECORDED]
    assert soft(deliveries[2]) == [BounceResult.RECORDED]
    assert _suppression("full.mailbox@example.org") is None  # two within the window, one older

    assert soft(deliveries[3]) == [BounceResult.RECORDED]

    suppression = _suppression("full.mailbox@example.org")
    assert (suppression.reason, suppression.smtp_code) == ("soft_bounces", "4.2.2")
    assert sorted(Delivery.objects.filter(patient=patient).values_list("bounce_type", flat=True)) == ["soft"] * 4
    assert _next_campaign_outcome(deliveries[0]) == ("blocked", "suppressed")


def test_r_bounce_suppress_a_soft_bounce_then_a_hard_one_for_the_same_message_ends_hard():
    delivery = delivery_sent(patient=patient_make(email="later.hard@example.org"))

    assert bounce_message_apply(exchange_dsn(recipient="later.hard@example.org", message_id=delivery.message_id,
                                             status="4.4.7")) == [BounceResult.RECORDED]
    assert _suppression("later.hard@example.org") is None
    assert bounce_message_apply(postfix_dsn(recipient="later.hard@example.org",
                                            message_id=delivery.message_id)) == [BounceResult.RECORDED]
    # And a soft one after the hard one changes nothing.
    assert bounce_message_apply(exchange_dsn(recipient="later.hard@example.org", message_id=delivery.message_id,
                                             status="4.4.7")) == [BounceResult.DUPLICATE]

    delivery.refresh_from_db()
    assert delivery.bounce_type == "hard"
    assert _suppression("later.hard@example.org").reason == "hard_bounce"


def test_r_bounce_suppress_the_same_report_twice_records_once():
    delivery = delivery_sent(patient=patient_make(email="twice@example.org"))
    raw = postfix_dsn(recipient="twice@example.org", message_id=delivery.message_id)

    assert bounce_message_apply(raw) == [BounceResult.RECORDED]
    assert bounce_message_apply(raw) == [BounceResult.DUPLICATE]

    assert AuditEvent.objects.filter(action="delivery.bounced").count() == 1
    assert AuditEvent.objects.filter(action="suppression.recorded").count() == 1


def test_r_bounce_suppress_a_complaint_suppresses_without_revoking_the_authorization():
    """R-BOUNCE-SUPPRESS, R-REVOKE-WRITTEN: a spam complaint suppresses the address for every marketing message,
    but is not the patient's written revocation: the authorization stays as signed."""
    patient = patient_make(email="complainer@example.org")
    delivery = delivery_sent(patient=patient)

    results = bounce_message_apply(arf_report(recipient="complainer@example.org", message_id=delivery.message_id))

    assert results == [BounceResult.RECORDED]
    delivery.refresh_from_db()
    assert delivery.complained_at is not None and delivery.bounce_type == ""
    assert _suppression("complainer@example.org").reason == "complaint"
    assert AuditEvent.objects.get(action="delivery.complained").details["kind"] == "complaint"
    covering = authorization_covering_list(purpose_id=delivery.campaign.purpose_id, patient_ids=[patient.pk])
    assert [authorization.patient_id for authorization in covering] == [patient.pk]
    assert not Revocation.objects.exists()
    assert _next_campaign_outcome(delivery) == ("blocked", "suppressed")


def test_r_bounce_suppress_a_forged_report_naming_another_address_changes_nothing(caplog):
    """Delivery ids are sequential: a report that names our Message-ID but another address than the patient's
    is ignored, and the log names the delivery, not the address (R-NO-PHI-LEAK)."""
    delivery = delivery_sent(patient=patient_make(email="victim@example.org"))
    caplog.set_level(logging.DEBUG)

    results = bounce_message_apply(postfix_dsn(recipient="attacker@example.net", message_id=delivery.message_id))

    assert results == [BounceResult.RECIPIENT_MISMATCH]
    delivery.refresh_from_db()
    assert delivery.bounced_at is None and delivery.bounce_type == ""
    assert not Suppression.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["delivery.bounced", "suppression.recorded"]).exists()
    assert f"delivery {delivery.pk}" in caplog.text
    assert "example.net" not in caplog.text and "victim" not in caplog.text


def test_a_report_for_a_message_we_did_not_send_changes_nothing():
    delivery = delivery_sent(patient=patient_make(email="someone@example.org"))
    blocked_patient = patient_make(email="blocked@example.org")  # no authorization: blocked at launch
    campaign = campaign_approved_make(purpose=purpose_make())
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    blocked = Delivery.objects.get(campaign=campaign, patient=blocked_patient)
    assert blocked.status == "blocked"

    outcomes = [
        bounce_message_apply(postfix_dsn(recipient="blocked@example.org", message_id=f"<delivery-{blocked.pk}@hipaamail.invalid>")),
        bounce_message_apply(postfix_dsn(recipient="someone@example.org", message_id=f"<delivery-{delivery.pk}@elsewhere.example>")),
        bounce_message_apply(postfix_dsn(recipient="someone@example.org", message_id="<delivery-999999@hipaamail.invalid>")),
    ]

    assert outcomes == [[BounceResult.UNKNOWN_MESSAGE]] * 3
    assert not Suppression.objects.exists()
    assert not Delivery.objects.filter(bounced_at__isnull=False).exists()


def test_the_service_takes_a_kind_and_a_message_id_from_any_source():
    delivery = delivery_sent(patient=patient_make(email="api@example.org"))

    result = bounces.delivery_bounce_record(
        message_id=delivery.message_id, recipients=["API@example.org "], kind="hard", status="5.7.1 blocked", source="ses"
    )

    assert result == BounceResult.RECORDED
    assert AuditEvent.objects.get(action="delivery.bounced").details["status"] == ""  # not a bare status code
    assert _suppression("api@example.org").reason == "hard_bounce"


# --- The bounces_read command ----------------------------------------------------------------------------------


def _mailbox_with_reports(box, delivery_hard, delivery_complaint):
    box.add(postfix_dsn(recipient="hard@example.org", message_id=delivery_hard.message_id))
    box.add(b"From: colleague@example.org\r\nTo: bounces@riverside-health.example\r\nSubject: hi\r\n\r\nhello\r\n")
    box.add(postfix_dsn(recipient="hard@example.org", message_id=delivery_hard.message_id, action="delayed",
                        status="4.4.1"))
    box.add(arf_report(recipient="complaint@example.org", message_id=delivery_complaint.message_id))
    box.add(postfix_dsn(recipient="nobody@example.org", message_id="<delivery-999999@hipaamail.invalid>"))


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_r_bounce_suppress_bounces_read_applies_the_reports_in_a_mailbox(tmp_path, kind):
    """R-BOUNCE-SUPPRESS, R-NO-PHI-LEAK: the command applies every report in a Maildir or an mbox, counts the
    outcomes without naming anybody, and with --remove deletes the reports it read, leaving other mail."""
    hard = delivery_sent(patient=patient_make(email="hard@example.org"))
    complaint = delivery_sent(patient=patient_make(email="complaint@example.org"))
    path = tmp_path / ("Maildir" if kind == "maildir" else "bounces.mbox")
    box = mailbox.Maildir(path, create=True) if kind == "maildir" else mailbox.mbox(path, create=True)
    _mailbox_with_reports(box, hard, complaint)
    box.flush()
    box.close()

    out = StringIO()
    call_command("bounces_read", str(path), "--remove", stdout=out)

    assert out.getvalue().strip() == (
        "3 reports, 2 other messages; outcomes: 2 recorded, 0 already recorded, 1 for no message of ours, "
        "0 naming another address. Removed 3 reports."
    )
    assert "@" not in out.getvalue()
    assert _suppression("hard@example.org").reason == "hard_bounce"
    assert _suppression("complaint@example.org").reason == "complaint"
    box = mailbox.Maildir(path, create=False) if kind == "maildir" else mailbox.mbox(path, create=False)
    left = sorted(message["Subject"] for message in box)
    assert left == ["Undelivered Mail Returned to Sender", "hi"]  # the delay warning and the ordinary mail

    again = StringIO()
    call_command("bounces_read", str(path), stdout=again)
    assert again.getvalue().startswith("0 reports, 2 other messages")


def test_bounces_read_reading_twice_without_remove_records_once(tmp_path):
    hard = delivery_sent(patient=patient_make(email="hard@example.org"))
    complaint = delivery_sent(patient=patient_make(email="complaint@example.org"))
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    _mailbox_with_reports(box, hard, complaint)

    call_command("bounces_read", str(tmp_path / "Maildir"), stdout=StringIO())
    out = StringIO()
    call_command("bounces_read", str(tmp_path / "Maildir"), stdout=out)

    assert "outcomes: 0 recorded, 2 already recorded" in out.getvalue()
    assert Suppression.objects.count() == 2


def test_bounces_read_refuses_a_path_that_is_not_a_mailbox(tmp_path):
    (tmp_path / "folder").mkdir()

    with pytest.raises(CommandError, match="not a Maildir"):
        call_command("bounces_read", str(tmp_path / "folder"))
    with pytest.raises(CommandError, match="does not exist"):
        call_command("bounces_read", str(tmp_path / "absent"))


def test_r_bounce_suppress_the_periodic_task_reads_the_configured_bounce_mailbox(settings, tmp_path):
    """With BOUNCE_MAILBOX set, beat's task applies the reports and deletes them; unset, it reads nothing."""
    from campaigns.periodic import bounces_read_task

    hard = delivery_sent(patient=patient_make(email="hard@example.org"))
    complaint = delivery_sent(patient=patient_make(email="complaint@example.org"))
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    _mailbox_with_reports(box, hard, complaint)

    settings.HIPAAMAIL_BOUNCE_MAILBOX = ""
    bounces_read_task()
    assert not Suppression.objects.exists() and len(box) == 5

    settings.HIPAAMAIL_BOUNCE_MAILBOX = str(tmp_path / "Maildir")
    bounces_read_task()
    assert Suppression.objects.count() == 2
    assert len(mailbox.Maildir(tmp_path / "Maildir", create=False)) == 2  # the delay warning and the ordinary mail
