"""The launch (DESIGN.md, the send pipeline, step 1): one delivery per patient of the campaign's segment, made on
PostgreSQL by `INSERT … SELECT` in batches, the uncovered created blocked with their reason (R-SEND-EVIDENCE);
and a campaign launched at most once, however many launches race (two clicks, two workers, the scheduler and
the button): no duplicate delivery, no message sent twice."""
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.periodic import campaign_launch_due_task
from campaigns.segments import segment_patient_ids
from campaigns.selectors.campaigns import delivery_block_reason_list
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services import launch
from campaigns.services.launch import CampaignAlreadyLaunched, campaign_launch
from campaigns.services.lifecycle import campaign_schedule
from campaigns.services.segments import segment_save
from campaigns.tests.factories import campaign_approved_make
from conftest import requires_postgresql, totp_code
from consent.models import AuthorizationDefect, Suppression
from consent.services.authorizations import (
    authorization_defect_record,
    authorization_grant,
    authorization_revoke,
    expiry_event_record,
)
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

THREAD_TIMEOUT = 60


def _mixed_audience(purpose, *, state: str = "IL") -> dict[str, object]:
    """One patient per case, all in `state`, plus one covered patient elsewhere (outside the segment)."""
    other = purpose_make()
    cases = {name: patient_make(state=state) for name in (
        "covered", "no_authorization", "wrong_purpose", "expired", "revoked", "expiry_event", "defective",
        "bounced", "suppressed", "covered_too",
    )}
    authorization_make(patient=cases["covered"], purpose=purpose)
    authorization_make(patient=cases["covered_too"], purpose=purpose)
    authorization_make(patient=cases["wrong_purpose"], purpose=other)
    authorization_make(patient=cases["expired"], purpose=purpose, expires_in=timedelta(days=-1), signed_ago=timedelta(days=30))
    authorization_make(patient=cases["revoked"], purpose=purpose)
    authorization_revoke(actor=None, patient_id=cases["revoked"].pk, purpose_id=purpose.pk, channel="portal")
    event = authorization_grant(
        actor=None, patient=cases["expiry_event"], purpose=purpose, expires_at=None,
        expiry_event="when you no longer rent equipment from us", signed_at=timezone.now() - timedelta(days=2),
    )
    expiry_event_record(actor=None, authorization_id=event.pk, occurred_at=timezone.now() - timedelta(hours=1))
    defective = authorization_make(patient=cases["defective"], purpose=purpose)
    authorization_defect_record(actor=None, authorization_id=defective.pk, reason=AuthorizationDefect.Reason.COMPOUND)
    for name, reason in (("bounced", Suppression.Reason.HARD_BOUNCE), ("suppressed", Suppression.Reason.COMPLAINT)):
        authorization_make(patient=cases[name], purpose=purpose)
        suppression_record(actor=None, email=cases[name].email, reason=reason)
    cases["outside"] = patient_make(state="WI")
    authorization_make(patient=cases["outside"], purpose=purpose)
    return cases


def _segmented_campaign(purpose, state: str = "IL") -> Campaign:
    campaign = campaign_approved_make(purpose=purpose)
    segment = segment_save(
        actor=campaign.created_by, name=state, rules={"op": "and", "rules": [{"field": "state", "in": [state]}]}
    )
    Campaign.objects.filter(pk=campaign.pk).update(segment=segment)
    return campaign


def _rows(campaign) -> dict[int, tuple[str, str]]:
    return {d.patient_id: (d.status, d.block_reason) for d in Delivery.objects.filter(campaign=campaign)}


@pytest.mark.parametrize("batch", [10_000, 3], ids=["one-batch", "batches-of-3"])
def test_r_send_evidence_launch_creates_the_segment_with_each_blocked_reason(batch):
    """R-SEND-EVIDENCE, R-AUTH-DEFECTIVE, R-BOUNCE-SUPPRESS: the launch makes one delivery per patient of the
    segment and no other; the covered are queued; every other one is created blocked with consent's own
    reason — the same reasons `delivery_block_reason_list` gives the screens — whatever the batch size."""
    purpose = purpose_make()
    cases = _mixed_audience(purpose)
    campaign = _segmented_campaign(purpose)

    with (
        mock.patch.object(launch, "_LAUNCH_INSERT_BATCH", batch),
        mock.patch("campaigns.tasks.campaign_dispatch_task.delay"),
    ):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    rows = _rows(campaign)
    assert rows == {
        cases["covered"].pk: ("queued", ""),
        cases["covered_too"].pk: ("queued", ""),
        cases["no_authorization"].pk: ("blocked", "no_authorization"),
        cases["wrong_purpose"].pk: ("blocked", "wrong_purpose"),
        cases["expired"].pk: ("blocked", "expired"),
        cases["revoked"].pk: ("blocked", "revoked"),
        cases["expiry_event"].pk: ("blocked", "expiry_event"),
        cases["defective"].pk: ("blocked", "defect_compound"),
        cases["bounced"].pk: ("blocked", "bounced"),
        cases["suppressed"].pk: ("blocked", "suppressed"),
    }
    audience = list(segment_patient_ids(segment_id=campaign.segment_id).values_list("id", flat=True))
    expected = delivery_block_reason_list(purpose_id=purpose.pk, patient_ids=audience)
    assert {pid: reason for pid, (status, reason) in rows.items() if status == "blocked"} == expected
    launched = AuditEvent.objects.get(action="campaign.launched")
    assert launched.actor_role == "system"
    assert launched.details == {
        "audience": 10,
        "queued": 2,
        "blocked": {reason: 1 for reason in expected.values()},
    }
    campaign.refresh_from_db()
    assert campaign.status == "sending" and campaign.launched_at is not None
    # Delivery ids follow patient ids, whatever join the planner picked for the blocked ones.
    by_id = list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("patient_id", flat=True))
    assert by_id == sorted(by_id)


@requires_postgresql
def test_launch_on_postgresql_is_insert_select_in_batches_not_rows_from_python():
    """DESIGN.md step 1: on PostgreSQL the deliveries are written by `INSERT … SELECT` statements, one per batch
    of patients (here 7 covered patients, batches of 3: three statements), not by a multi-row VALUES insert;
    the covered patients' ids never travel through Python."""
    purpose = purpose_make()
    for _ in range(7):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)

    with (
        mock.patch.object(launch, "_LAUNCH_INSERT_BATCH", 3),
        mock.patch("campaigns.tasks.campaign_dispatch_task.delay"),
    ):
        with CaptureQueriesContext(connection) as queries:
            campaign_launch(actor=None, campaign_id=campaign.pk)

    inserts = [q["sql"] for q in queries.captured_queries if 'INSERT INTO "campaigns_delivery"' in q["sql"]]
    assert len(inserts) == 3
    assert all("SELECT" in sql.split('INSERT INTO "campaigns_delivery"')[1] and "VALUES" not in sql for sql in inserts)
    assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 7


def test_launch_of_an_empty_audience_creates_nothing_and_still_finishes():
    purpose = purpose_make()
    patient_make(state="WI")
    campaign = _segmented_campaign(purpose, state="AK")

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)

    assert not Delivery.objects.filter(campaign=campaign).exists()
    assert AuditEvent.objects.get(action="campaign.launched").details == {"audience": 0, "queued": 0, "blocked": {}}
    assert campaign_finish_if_done(campaign_id=campaign.pk) is True


def test_a_second_launch_is_refused_creates_nothing_and_sends_nothing_twice():
    """Two clicks (or the scheduler after the button): the second launch raises CampaignAlreadyLaunched and
    leaves the deliveries, the audit trail and the mail as the first left them."""
    purpose = purpose_make()
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    officer = staff_make(role="compliance officer")
    campaign_launch(actor=officer, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)

    for actor in (officer, None):
        with pytest.raises(CampaignAlreadyLaunched, match="cannot be launched"):
            campaign_launch(actor=actor, campaign_id=campaign.pk)

    assert Delivery.objects.filter(campaign=campaign).count() == 3
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1
    assert len(mail.outbox) == 3


def test_marketer_cannot_launch_through_the_service():
    campaign = campaign_approved_make(purpose=purpose_make())

    with pytest.raises(PermissionDenied):
        campaign_launch(actor=staff_make(role="marketer"), campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == "approved" and not Delivery.objects.exists()


def test_posting_the_launch_form_twice_launches_once(verified_client):
    """Double launch through the UI: the second POST (a double click, a reload) with a valid code lands on the
    campaign page saying it was already launched; one set of deliveries, one launch audited, one wake."""
    purpose = purpose_make()
    for _ in range(4):
        authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        with TestCase.captureOnCommitCallbacks(execute=True):
            first = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": totp_code(officer)})
        with TestCase.captureOnCommitCallbacks(execute=True):
            second = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": totp_code(officer)}, follow=True)

    assert first.status_code == 302 and first["Location"] == f"/campaigns/{campaign.pk}/"
    assert second.redirect_chain == [(f"/campaigns/{campaign.pk}/", 302)]
    assert "already launched: nothing was sent twice" in second.content.decode()
    assert Delivery.objects.filter(campaign=campaign).count() == 5
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["blocked"] + ["queued"] * 4
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1
    wake.assert_called_once_with(campaign.pk)


def test_the_scheduler_after_the_button_launches_nothing(verified_client):
    """Beat plus button: the button launched a scheduled campaign before its time; when the time comes, the
    scheduler's task finds nothing due and creates nothing."""
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    officer = staff_make(role="compliance officer")
    at = timezone.now() + timedelta(hours=2)
    campaign_schedule(actor=officer, campaign_id=campaign.pk, send_at=at, timezone_name="UTC")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=officer, campaign_id=campaign.pk)

        with mock.patch("django.utils.timezone.now", return_value=at + timedelta(seconds=1)):
            campaign_launch_due_task()

    assert Delivery.objects.filter(campaign=campaign).count() == 1
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1


def test_the_button_after_the_scheduler_is_refused_with_a_clear_message(verified_client):
    """Beat plus button, the other way round: the scheduler launched it at its time; a compliance officer who
    then presses "Send now" is told it was already launched, and nothing more is created."""
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")
    at = timezone.now() + timedelta(hours=2)
    campaign_schedule(actor=officer, campaign_id=campaign.pk, send_at=at, timezone_name="UTC")
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        with mock.patch("django.utils.timezone.now", return_value=at):
            campaign_launch_due_task()
        response = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": totp_code(officer)}, follow=True)

    assert "already launched" in response.content.decode()
    assert Delivery.objects.filter(campaign=campaign).count() == 1
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1


@requires_postgresql
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("actors", [("officer", "officer"), ("officer", "scheduler")], ids=["two-clicks", "beat-and-button"])
def test_two_concurrent_launches_on_postgresql_make_one_set_of_deliveries_and_send_each_message_once(actors):
    """Two launches of the same campaign at the same instant, in two threads with their own connections (two
    workers, or the scheduler and the button): exactly one launches; the other waits for the campaign's row
    lock and is refused; each patient has one delivery and, once sent, got one message."""
    purpose = purpose_make()
    covered = [patient_make() for _ in range(40)]
    for patient in covered:
        authorization_make(patient=patient, purpose=purpose)
    uncovered = [patient_make() for _ in range(5)]
    campaign = campaign_approved_make(purpose=purpose)
    officer = staff_make(role="compliance officer")
    start = threading.Barrier(2, timeout=THREAD_TIMEOUT)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def launch(who: str) -> None:
        try:
            start.wait()
            campaign_launch(actor=officer if who == "officer" else None, campaign_id=campaign.pk)
            outcomes.append("launched")
        except CampaignAlreadyLaunched:
            outcomes.append("refused")
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        threads = [threading.Thread(target=launch, args=(who,)) for who in actors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(THREAD_TIMEOUT)

    assert errors == []
    assert sorted(outcomes) == ["launched", "refused"]
    assert Delivery.objects.filter(campaign=campaign).count() == 45
    assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 40
    assert set(Delivery.objects.filter(campaign=campaign, status="blocked").values_list("patient_id", flat=True)) == {
        p.pk for p in uncovered
    }
    assert AuditEvent.objects.filter(action="campaign.launched").count() == 1

    mail.outbox.clear()  # the review's notices to staff, mailed at each commit here (campaigns.notices)
    while delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=7):
        pass
    recipients = sorted(to for message in mail.outbox for to in message.to)
    assert recipients == sorted(p.email for p in covered)


@pytest.mark.parametrize(("dispatchers", "covered", "wake_ups"), [(1, 3, 1), (6, 3, 6), (6, 0, 1)])
def test_a_launch_wakes_send_dispatchers_senders_and_one_when_nothing_is_queued(settings, dispatchers, covered, wake_ups):
    """SEND_DISPATCHERS (docs/scaling.md): every host's senders share a big campaign from its first second; a
    campaign with nothing queued still gets the one wake-up that finishes it."""
    settings.HIPAAMAIL_SEND_DISPATCHERS = dispatchers
    purpose = purpose_make()
    for _ in range(covered):
        authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = campaign_approved_make(purpose=purpose)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        with TestCase.captureOnCommitCallbacks(execute=True):
            campaign_launch(actor=None, campaign_id=campaign.pk)

    assert wake.call_args_list == [mock.call(campaign.pk)] * wake_ups
