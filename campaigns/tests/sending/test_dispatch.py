"""The one sender and the central invariant (R-SEND-COVERED, R-SEND-EVIDENCE, R-REVOKE-ANYTIME)."""
import time
from datetime import UTC, timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.selectors.campaigns import delivery_sent_without_coverage_count
from campaigns.sending.dispatch import TransientSendError, campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_approve, campaign_submit
from campaigns.tests.factories import campaign_approved_make, campaign_make
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _queue_unchecked(campaign, patient) -> Delivery:
    """A queued delivery that skipped the launch's advisory check: the sender must not trust the queue."""
    return Delivery.objects.create(campaign=campaign, patient=patient, status=Delivery.Status.QUEUED)


def _dispatch_all(campaign) -> None:
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass


def _no_authorization(patient, purpose, other_purpose):
    pass


def _wrong_purpose(patient, purpose, other_purpose):
    authorization_make(patient=patient, purpose=other_purpose)


def _expired_exactly_now(patient, purpose, other_purpose):
    # Covered when queued, expired a few milliseconds later, when the sender checks.
    authorization_make(patient=patient, purpose=purpose, expires_in=timedelta(milliseconds=30))
    time.sleep(0.05)


def _revoked(patient, purpose, other_purpose):
    authorization_make(patient=patient, purpose=purpose)
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")


def _another_patients(patient, purpose, other_purpose):
    authorization_make(patient=patient_make(), purpose=purpose)


def _valid(patient, purpose, other_purpose):
    authorization_make(patient=patient, purpose=purpose)


@pytest.mark.parametrize(
    ("arrange", "expected_status", "expected_reason"),
    [
        (_no_authorization, "blocked", "no_authorization"),
        (_wrong_purpose, "blocked", "wrong_purpose"),
        (_expired_exactly_now, "blocked", "expired"),
        (_revoked, "blocked", "revoked"),
        (_another_patients, "blocked", "no_authorization"),
        (_valid, "sent", ""),
    ],
    ids=["none", "wrong-purpose", "expired-exactly-now", "revoked", "another-patients", "valid"],
)
def test_r_send_covered_matrix_only_a_covering_authorization_sends(arrange, expected_status, expected_reason):
    """R-SEND-COVERED, R-SEND-EVIDENCE: the sender re-checks each queued delivery at send time; only a
    covering authorization sends, and every refusal leaves a blocked delivery with its reason, no mail,
    and an audit event that lists it."""
    purpose, other_purpose = purpose_make(), purpose_make()
    campaign = campaign_approved_make(purpose=purpose)
    patient = patient_make(email="matrix@example.org")
    arrange(patient, purpose, other_purpose)
    delivery = _queue_unchecked(campaign, patient)

    decided = delivery_dispatch_batch(campaign_id=campaign.pk)

    delivery.refresh_from_db()
    assert decided == 1
    assert delivery.status == expected_status
    assert delivery.block_reason == expected_reason
    batch = AuditEvent.objects.get(action="delivery.batch_dispatched")
    if expected_status == "sent":
        assert [m.to for m in mail.outbox] == [["matrix@example.org"]]
        assert delivery.authorization.patient_id == patient.pk
        assert delivery.authorization.purpose_id == purpose.pk
        assert delivery.checked_at <= delivery.sent_at <= delivery.checked_at + timedelta(seconds=1)
        assert batch.details == {
            "checked_at": delivery.checked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "sent": [delivery.pk],
            "sent_authorization": [delivery.authorization_id],
            "sent_at": [delivery.sent_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")],
        }
    else:
        assert mail.outbox == []
        assert delivery.authorization is None and delivery.sent_at is None
        assert batch.details == {f"blocked_{expected_reason}": [delivery.pk]}
    assert delivery_sent_without_coverage_count(campaign_id=campaign.pk) == 0


def test_r_send_evidence_launch_materialises_whole_audience_with_reasons():
    """R-SEND-EVIDENCE: launch creates one delivery per patient; the uncovered start blocked with a reason."""
    purpose, other = purpose_make(), purpose_make()
    covered, wrong, nothing = patient_make(), patient_make(), patient_make()
    authorization_make(patient=covered, purpose=purpose)
    authorization_make(patient=wrong, purpose=other)
    campaign = campaign_approved_make(purpose=purpose)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        campaign_launch(actor=None, campaign_id=campaign.pk)

    rows = {d.patient_id: (d.status, d.block_reason) for d in Delivery.objects.filter(campaign=campaign)}
    assert rows == {
        covered.pk: ("queued", ""),
        wrong.pk: ("blocked", "wrong_purpose"),
        nothing.pk: ("blocked", "no_authorization"),
    }
    launched = AuditEvent.objects.get(action="campaign.launched")
    assert launched.details == {
        "audience": 3,
        "queued": 1,
        "blocked": {"wrong_purpose": 1, "no_authorization": 1},
    }
    assert wake.call_count == 0  # the test's transaction never commits; see the next test for the wake


def test_launch_wakes_the_workers_after_commit(django_capture_on_commit_callbacks):
    campaign = campaign_approved_make(purpose=purpose_make())

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        with django_capture_on_commit_callbacks(execute=True):
            campaign_launch(actor=None, campaign_id=campaign.pk)

    wake.assert_called_once_with(campaign.pk)


def test_double_launch_is_refused_and_creates_no_second_delivery():
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    with pytest.raises(ValidationError, match="cannot be launched"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    assert Delivery.objects.filter(campaign=campaign).count() == 1
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1


def test_revocation_after_launch_blocks_the_queued_delivery():
    """R-REVOKE-ANYTIME: a revocation committed after launch and before the send stops the message."""
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="one_click")
    _dispatch_all(campaign)

    delivery = Delivery.objects.get(campaign=campaign)
    assert (delivery.status, delivery.block_reason) == ("blocked", "revoked")
    assert mail.outbox == []


def test_campaign_is_sent_when_nothing_is_queued():
    purpose = purpose_make()
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    _dispatch_all(campaign)
    finished = campaign_finish_if_done(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert finished is True
    assert campaign.status == Campaign.Status.SENT
    assert len(mail.outbox) == 3
    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == 3


def test_r_rfc8058_every_message_has_one_click_unsubscribe_and_postal_address(settings):
    """R-RFC8058, R-CANSPAM-ADDRESS: List-Unsubscribe with an https URL, the One-Click POST header, the
    postal address in the footer, and a Message-ID derived from the delivery."""
    settings.SITE_URL = "https://mail.riverside-health.example"
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    _dispatch_all(campaign)

    (message,) = mail.outbox
    delivery = Delivery.objects.get(campaign=campaign)
    assert message.extra_headers["List-Unsubscribe"].startswith("<https://mail.riverside-health.example/unsubscribe/")
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.extra_headers["Message-ID"] == delivery.message_id
    assert settings.HIPAAMAIL_POSTAL_ADDRESS in message.body
    assert settings.HIPAAMAIL_POSTAL_ADDRESS in message.alternatives[0][0]


def test_database_refuses_a_sent_delivery_without_authorization():
    """R-SEND-COVERED in the database: the check constraint, not only the code, forbids it."""
    campaign = campaign_make(purpose=purpose_make())
    delivery = _queue_unchecked(campaign, patient_make())

    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(status="sent")


def test_database_refuses_a_second_delivery_for_the_same_patient():
    campaign = campaign_make(purpose=purpose_make())
    patient = patient_make()
    _queue_unchecked(campaign, patient)

    with pytest.raises(IntegrityError), transaction.atomic():
        _queue_unchecked(campaign, patient)


def test_the_author_cannot_approve_their_own_campaign():
    campaign = campaign_make(purpose=purpose_make())
    campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)

    with pytest.raises(PermissionDenied):
        campaign_approve(actor=campaign.created_by, campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SUBMITTED
    assert not AuditEvent.objects.filter(action="campaign.approved").exists()


def test_a_transient_smtp_error_keeps_what_was_sent_and_leaves_the_rest_queued():
    """A server that defers mid-batch: messages already accepted stay recorded as sent (no duplicate on
    retry); the rest stay queued for the retry."""
    import smtplib

    purpose = purpose_make()
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    from django.core.mail.backends.locmem import EmailBackend

    real_send = EmailBackend.send_messages
    calls = {"n": 0}

    def flaky(self, messages):
        calls["n"] += 1
        if calls["n"] == 2:
            raise smtplib.SMTPResponseException(421, b"try again later")
        return real_send(self, messages)

    with mock.patch.object(EmailBackend, "send_messages", flaky), pytest.raises(TransientSendError):
        delivery_dispatch_batch(campaign_id=campaign.pk)

    statuses = sorted(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == ["queued", "queued", "sent"]
    _dispatch_all(campaign)
    assert len(mail.outbox) == 3


def test_a_batch_shares_one_smtp_session(settings):
    """DESIGN.md: one reused SMTP connection per batch, not one per message."""
    from campaigns.tests.smtp_server import smtp_sink

    purpose = purpose_make()
    for _ in range(5):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    with smtp_sink() as sink:
        for name, value in sink.email_settings().items():
            setattr(settings, name, value)
        decided = delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=5)
        records = sink.records

    assert decided == 5
    assert len(records) == 5
    assert len({record.peer for record in records}) == 1


def test_launch_materialises_only_the_campaigns_segment():
    """The audience is the segment's patients; the uncovered among them are blocked with their reason."""
    from campaigns.models import Campaign
    from campaigns.services.segments import segment_save

    purpose = purpose_make()
    in_covered = patient_make(postal_code="62701")
    in_uncovered = patient_make(postal_code="62702")
    outside = patient_make(postal_code="10001")
    authorization_make(patient=in_covered, purpose=purpose)
    authorization_make(patient=outside, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    segment = segment_save(
        actor=campaign.created_by,
        name="Springfield",
        rules={"op": "and", "rules": [{"field": "postal_code", "prefix": "627"}]},
    )
    Campaign.objects.filter(pk=campaign.pk).update(segment=segment)

    campaign_launch(actor=None, campaign_id=campaign.pk)

    rows = {d.patient_id: (d.status, d.block_reason) for d in Delivery.objects.filter(campaign=campaign)}
    assert rows == {in_covered.pk: ("queued", ""), in_uncovered.pk: ("blocked", "no_authorization")}
    assert outside.pk not in rows
