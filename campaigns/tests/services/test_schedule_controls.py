"""Pause, resume and cancel (issue 5, item 4). Pausing stops the workers' claims (a batch already claimed
finishes); resuming wakes them; cancelling — with the second factor re-entered (R-SEC-MFA) — turns every delivery
still queued into a blocked one with the reason campaign_cancelled, so no queued delivery is left behind.
Compliance officers and administrators may; marketers see the status only (R-MIN-NECESSARY). All audited."""
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns import tasks
from campaigns.models import Campaign, Delivery
from campaigns.periodic import campaign_launch_due_task, campaign_rewake_task
from campaigns.sending import dispatch
from campaigns.sending.dispatch import _deliveries_claim, campaign_finish_if_done, delivery_dispatch_batch
from campaigns.services import lifecycle
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_cancel, campaign_pause, campaign_resume, campaign_schedule
from campaigns.tests.factories import campaign_approved_make
from campaigns.tests.smtp_server import smtp_sink
from conftest import requires_postgresql, totp_code
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

THREAD_TIMEOUT = 60


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _launched(n: int, *, uncovered: int = 0) -> Campaign:
    purpose = purpose_make()
    for _ in range(n):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(uncovered):
        patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign


def _statuses(campaign) -> list[tuple[str, str]]:
    return sorted(Delivery.objects.filter(campaign=campaign).values_list("status", "block_reason"))


def _actions(campaign) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


@pytest.fixture
def officer():
    return staff_make(role="compliance officer")


# --- Pause and resume --------------------------------------------------------------------------------------


def test_pause_stops_the_claims_and_resume_continues(officer, django_capture_on_commit_callbacks):
    """A paused campaign's queued deliveries are not claimed: the sender decides nothing and sends nothing.
    Resuming wakes the workers after commit; they send the rest, and the campaign ends sent."""
    campaign = _launched(6)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=2)
    assert len(mail.outbox) == 2

    paused = campaign_pause(actor=officer, campaign_id=campaign.pk)

    assert paused.status == "paused"
    assert delivery_dispatch_batch(campaign_id=campaign.pk) == 0
    assert campaign_finish_if_done(campaign_id=campaign.pk) is False
    assert len(mail.outbox) == 2
    assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 4
    assert Delivery.objects.filter(campaign=campaign, lease_expires_at__isnull=False).count() == 0

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake:
        with django_capture_on_commit_callbacks(execute=True):
            resumed = campaign_resume(actor=officer, campaign_id=campaign.pk)
    wake.assert_called_once_with(campaign.pk)
    assert resumed.status == "sending"
    tasks.campaign_dispatch_task(campaign.pk)  # what the woken worker runs

    campaign.refresh_from_db()
    assert campaign.status == "sent"
    assert len(mail.outbox) == 6
    assert sorted(to for message in mail.outbox for to in message.to) == sorted(
        Delivery.objects.filter(campaign=campaign).values_list("patient__email", flat=True)
    )
    assert _actions(campaign)[-4:] == ["campaign.paused", "campaign.resumed", "delivery.batch_dispatched", "campaign.sent"]
    assert AuditEvent.objects.get(action="campaign.paused").details == {"from": "sending", "to": "paused"}
    assert AuditEvent.objects.get(action="campaign.resumed").details == {"from": "paused", "to": "sending"}


def test_a_batch_claimed_before_the_pause_finishes(officer):
    """In flight means claimed: a batch whose claim committed before the pause is still sent and recorded; the
    next claim finds the campaign paused."""
    campaign = _launched(5)
    real_claim = _deliveries_claim

    def claim_then_pause(**kwargs):
        claimed = real_claim(**kwargs)
        campaign_pause(actor=officer, campaign_id=campaign.pk)
        return claimed

    with mock.patch.object(dispatch, "_deliveries_claim", claim_then_pause):
        assert delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=3) == 3

    assert delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=3) == 0
    assert _statuses(campaign) == [("queued", "")] * 2 + [("sent", "")] * 3
    assert len(mail.outbox) == 3


def test_the_reconciler_leaves_a_paused_campaign_alone(officer):
    campaign = _launched(3)
    campaign_pause(actor=officer, campaign_id=campaign.pk)

    with mock.patch.object(tasks.campaign_dispatch_task, "delay") as delay:
        campaign_rewake_task()

    delay.assert_not_called()


def test_pause_and_resume_are_refused_from_the_wrong_state(officer):
    campaign = _launched(1)
    campaign_pause(actor=officer, campaign_id=campaign.pk)

    with pytest.raises(ValidationError, match="A paused campaign cannot be paused"):
        campaign_pause(actor=officer, campaign_id=campaign.pk)
    campaign_resume(actor=officer, campaign_id=campaign.pk)
    with pytest.raises(ValidationError, match="A sending campaign cannot be resumed"):
        campaign_resume(actor=officer, campaign_id=campaign.pk)
    draft = campaign_approved_make(purpose=campaign.purpose)
    with pytest.raises(ValidationError, match="An? approved campaign cannot be paused"):
        campaign_pause(actor=officer, campaign_id=draft.pk)


def test_paused_state_is_on_the_progress_bar_and_the_campaign_page(verified_client):
    """The live progress bar's endpoint reports the pause (the page's script stops polling and reloads), and
    the page says where sending stopped; the buttons offer Resume and Cancel to a compliance officer."""
    campaign = _launched(4)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1)
    officer = verified_client.sign_in(role="compliance officer")

    paused = verified_client.post(f"/campaigns/{campaign.pk}/pause/", follow=True)

    page = paused.content.decode()
    assert paused.redirect_chain == [(f"/campaigns/{campaign.pk}/", 302)]
    assert "Paused. No more messages are handed to the mail server" in page
    assert "Paused at 25% of the messages that can be sent" in page
    assert 'role="progressbar"' in page and 'aria-valuenow="25"' in page
    assert f'action="/campaigns/{campaign.pk}/resume/"' in page and f'action="/campaigns/{campaign.pk}/pause/"' not in page
    progress = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()
    assert (progress["percent"], progress["status"]) == (25, "paused")
    assert AuditEvent.objects.get(action="campaign.paused").actor_id == officer.pk

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        resumed = verified_client.post(f"/campaigns/{campaign.pk}/resume/", follow=True)
    assert "Resumed: sending continues." in resumed.content.decode()
    progress = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()
    assert (progress["percent"], progress["status"]) == (25, "sending")


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_r_min_necessary_marketers_see_the_status_but_cannot_pause_resume_or_cancel(verified_client, action):
    """R-MIN-NECESSARY: to a marketer the control URLs do not exist (404), the services refuse, and the campaign
    page shows the status without the buttons."""
    campaign = _launched(2)
    if action == "resume":
        campaign_pause(actor=staff_make(role="administrator"), campaign_id=campaign.pk)
    before = Campaign.objects.get(pk=campaign.pk).status
    marketer = verified_client.sign_in(role="marketer")

    response = verified_client.post(f"/campaigns/{campaign.pk}/{action}/", {"cancel-code": "123456"})
    with pytest.raises(PermissionDenied):
        getattr(lifecycle, f"campaign_{action}")(actor=marketer, campaign_id=campaign.pk)
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()

    assert response.status_code == 404
    assert Campaign.objects.get(pk=campaign.pk).status == before
    assert f'badge {before}' in page
    assert "/pause/" not in page and "/resume/" not in page and "Cancel the campaign" not in page
    assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 2


# --- Cancel --------------------------------------------------------------------------------------------------


def test_r_sec_mfa_cancel_needs_the_code_and_a_wrong_code_changes_nothing(verified_client):
    """R-SEC-MFA: cancelling asks for the second factor again. A wrong code cancels nothing (every delivery
    still queued, the campaign still sending, the failure audited); the right one blocks every queued delivery
    with the reason campaign_cancelled, keeps what was sent, and nothing is sent afterwards."""
    campaign = _launched(5, uncovered=1)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=2)
    officer = verified_client.sign_in(role="administrator")

    wrong = verified_client.post(f"/campaigns/{campaign.pk}/cancel/", {"cancel-code": _wrong(totp_code(officer))})

    campaign.refresh_from_db()
    assert wrong.status_code == 200 and "That code did not work" in wrong.content.decode()
    assert campaign.status == "sending"
    assert _statuses(campaign) == [("blocked", "no_authorization"), ("queued", ""), ("queued", ""), ("queued", ""),
                                   ("sent", ""), ("sent", "")]
    assert AuditEvent.objects.get(action="mfa.reentry_failed").details == {"for": "campaign.cancel"}
    assert not AuditEvent.objects.filter(action="campaign.cancelled").exists()

    right = verified_client.post(f"/campaigns/{campaign.pk}/cancel/", {"cancel-code": totp_code(officer)})

    campaign.refresh_from_db()
    assert right.status_code == 302 and right["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.status == "cancelled"
    assert not Delivery.objects.filter(campaign=campaign, status="queued").exists()
    assert _statuses(campaign) == [("blocked", "campaign_cancelled")] * 3 + [("blocked", "no_authorization"),
                                                                              ("sent", ""), ("sent", "")]
    event = AuditEvent.objects.get(action="campaign.cancelled")
    assert (event.actor_id, event.details) == (officer.pk, {"from": "sending", "to": "cancelled", "blocked": 3})

    assert delivery_dispatch_batch(campaign_id=campaign.pk) == 0
    assert campaign_finish_if_done(campaign_id=campaign.pk) is False
    assert len(mail.outbox) == 2
    assert Campaign.objects.get(pk=campaign.pk).status == "cancelled"
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Blocked: campaign cancelled before sending" in page


def test_cancelling_a_paused_campaign_leaves_no_queued_delivery(officer):
    campaign = _launched(4)
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1)
    campaign_pause(actor=officer, campaign_id=campaign.pk)

    campaign_cancel(actor=officer, campaign_id=campaign.pk)

    assert _statuses(campaign) == [("blocked", "campaign_cancelled")] * 3 + [("sent", "")]
    with pytest.raises(ValidationError, match="A cancelled campaign cannot be resumed"):
        campaign_resume(actor=officer, campaign_id=campaign.pk)


def test_r_send_evidence_a_delivery_in_a_dead_workers_batch_is_cancelled_as_possibly_sent(officer):
    """R-SEND-EVIDENCE (DESIGN.md: a message in flight during a crash, and then the delivery says so): a worker
    claimed two deliveries and died before recording them (its message may have reached the mail server); the
    campaign is then cancelled. Those two read campaign_cancelled AND possible_duplicate; the never-claimed ones
    are plainly cancelled."""
    campaign = _launched(4)
    claimed = {pk for pk, _ in _deliveries_claim(campaign_id=campaign.pk, batch_size=2)}  # then dies

    campaign_cancel(actor=officer, campaign_id=campaign.pk)

    rows = {d.pk: (d.status, d.block_reason, d.possible_duplicate, d.lease_expires_at) for d in
            Delivery.objects.filter(campaign=campaign)}
    assert len(claimed) == 2
    assert {pk: row[:3] for pk, row in rows.items()} == {
        pk: ("blocked", "campaign_cancelled", pk in claimed) for pk in rows
    }
    assert all(row[3] is None for row in rows.values())


def test_a_scheduled_campaign_cancelled_before_its_time_is_never_launched(officer):
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    at = timezone.now() + timedelta(hours=1)
    campaign_schedule(actor=officer, campaign_id=campaign.pk, send_at=at, timezone_name="UTC")

    campaign_cancel(actor=officer, campaign_id=campaign.pk)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"), mock.patch("django.utils.timezone.now", return_value=at):
        campaign_launch_due_task()
        with pytest.raises(ValidationError, match="A cancelled campaign cannot be launched"):
            campaign_launch(actor=officer, campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).status == "cancelled"
    assert not Delivery.objects.exists()
    assert AuditEvent.objects.get(action="campaign.cancelled").details == {
        "from": "scheduled", "to": "cancelled", "blocked": 0
    }


@pytest.mark.parametrize("status", ["draft", "submitted", "sent"])
def test_only_a_campaign_not_yet_finished_can_be_cancelled(officer, status):
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    if status == "sent":
        campaign_launch(actor=None, campaign_id=campaign.pk)
        while delivery_dispatch_batch(campaign_id=campaign.pk):
            pass
        campaign_finish_if_done(campaign_id=campaign.pk)
    else:
        Campaign.objects.filter(pk=campaign.pk).update(status=status)

    with pytest.raises(ValidationError, match="cannot be cancelled"):
        campaign_cancel(actor=officer, campaign_id=campaign.pk)

    assert Campaign.objects.get(pk=campaign.pk).status == status


# --- On PostgreSQL, with a batch in flight ------------------------------------------------------------------


def _use_sink(settings, sink) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    # The sink counts campaign mail; the author's "finished sending" notice stays in the product here.
    settings.HIPAAMAIL_NOTICE_EMAIL = False


def _send_in_thread(campaign, errors: list, batch_size: int) -> threading.Thread:
    def run():
        try:
            while delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=batch_size):
                pass
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    return threading.Thread(target=run)


def _wait_for_first_message(sink) -> None:
    deadline = time.monotonic() + THREAD_TIMEOUT
    while not sink.records:
        assert time.monotonic() < deadline, "the sender never reached the mail server"
        time.sleep(0.002)


@requires_postgresql
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", ["cancel", "pause"])
def test_stopping_while_a_batch_is_in_flight_lets_it_finish_and_loses_no_delivery(settings, stop):
    """On PostgreSQL, with a worker in the middle of a batch (its messages going to a slow mail server): a pause
    or a cancel lets that batch finish — whole batches only — and stops the rest. After a cancel nothing is left
    queued: every delivery is sent (and the server got it) or blocked campaign_cancelled (and it did not).
    After a pause, resuming sends the rest, each message once."""
    campaign = _launched(30)
    officer = staff_make(role="compliance officer")
    errors: list[BaseException] = []

    with smtp_sink(delay=0.02) as sink:
        _use_sink(settings, sink)
        sender = _send_in_thread(campaign, errors, batch_size=5)
        sender.start()
        _wait_for_first_message(sink)
        getattr(lifecycle, f"campaign_{stop}")(actor=officer, campaign_id=campaign.pk)
        sender.join(THREAD_TIMEOUT)
        received = [record.recipients[0] for record in sink.records]

        assert errors == []
        sent = set(Delivery.objects.filter(campaign=campaign, status="sent").values_list("patient__email", flat=True))
        assert sorted(received) == sorted(sent)  # every sent delivery reached the server, and only those
        assert 5 <= len(sent) < 30 and len(sent) % 5 == 0
        if stop == "cancel":
            assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 0
            assert Delivery.objects.filter(campaign=campaign, block_reason="campaign_cancelled").count() == 30 - len(sent)
            return
        assert Delivery.objects.filter(campaign=campaign, status="queued").count() == 30 - len(sent)
        with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
            campaign_resume(actor=officer, campaign_id=campaign.pk)
        tasks.campaign_dispatch_task(campaign.pk)
        received = [record.recipients[0] for record in sink.records]

    assert len(received) == len(set(received)) == 30
    assert Campaign.objects.get(pk=campaign.pk).status == "sent"


def test_cancel_through_the_ui_then_the_page_offers_nothing_more(verified_client):
    campaign = _launched(2)
    officer = verified_client.sign_in(role="compliance officer")
    review = verified_client.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    assert 'id="cancel"' in review and "cancel-code" in review

    with TestCase.captureOnCommitCallbacks(execute=True):
        verified_client.post(f"/campaigns/{campaign.pk}/cancel/", {"cancel-code": totp_code(officer)})
    review = verified_client.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()

    assert 'id="cancel"' not in review
    assert "/pause/" not in page and "/resume/" not in page and "Cancel the campaign" not in page
    assert "badge cancelled" in page
