"""A patient's history on one page (/audit/patients/<id>/): the audit events that name the patient and every
message prepared for them, each with the audit event that recorded its outcome (R-SEC-AUDIT), for compliance
officers only (R-MIN-NECESSARY)."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal
from campaigns.models import Delivery
from campaigns.selectors.campaigns import delivery_history_list
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_cancel
from campaigns.tests.factories import campaign_approved_make
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _dispatch_all(campaign) -> None:
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass


@pytest.fixture
def officer(verified_client):
    verified_client.sign_in(role="compliance officer")
    return verified_client


def _shown_actions(html: str) -> list[str]:
    return re.findall(r'<li class="event" data-action="([^"]+)"', html)


@pytest.fixture
def four_campaigns():
    """One patient, four campaigns: sent; blocked at launch (authorizations for other purposes only); blocked at
    send (revoked between launch and send); blocked by the campaign's cancel. Another patient gets mail too."""
    patient, other = patient_make(), patient_make()
    cpap, diabetes, refills, events = purpose_make(), purpose_make(), purpose_make(), purpose_make()
    for purpose in (cpap, refills, events):
        authorization_make(patient=patient, purpose=purpose)
    authorization_make(patient=other, purpose=cpap)
    officer = staff_make(role="compliance officer")

    sent = campaign_approved_make(purpose=cpap, name="Spring CPAP refill")
    campaign_launch(actor=None, campaign_id=sent.pk)
    _dispatch_all(sent)

    at_launch = campaign_approved_make(purpose=diabetes, name="Diabetes class")
    campaign_launch(actor=None, campaign_id=at_launch.pk)

    at_send = campaign_approved_make(purpose=refills, name="Refill reminder")
    campaign_launch(actor=None, campaign_id=at_send.pk)
    authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=refills.pk, channel="portal")
    _dispatch_all(at_send)

    cancelled = campaign_approved_make(purpose=events, name="Open day")
    campaign_launch(actor=None, campaign_id=cancelled.pk)
    campaign_cancel(actor=officer, campaign_id=cancelled.pk)
    audit_seal()
    return {"patient": patient, "other": other, "sent": sent, "at_launch": at_launch, "at_send": at_send,
            "cancelled": cancelled}


def test_r_sec_audit_each_message_is_tied_to_the_audit_event_that_recorded_it(four_campaigns):
    """R-SEC-AUDIT: sends are audited per batch (one event lists the batch's delivery ids), so each of a
    patient's messages is found in the event that recorded its outcome: the batch for what the sender decided,
    the launch for what was blocked at once, the cancel for what was left queued."""
    world = four_campaigns

    rows = {row.delivery.campaign_id: row for row in delivery_history_list(patient_id=world["patient"].pk)}

    assert set(rows) == {world[key].pk for key in ("sent", "at_launch", "at_send", "cancelled")}
    expected = {
        "sent": ("sent", "", "delivery.batch_dispatched", "sent"),
        "at_launch": ("blocked", "wrong_purpose", "campaign.launched", None),
        "at_send": ("blocked", "revoked", "delivery.batch_dispatched", "blocked_revoked"),
        "cancelled": ("blocked", "campaign_cancelled", "campaign.cancelled", None),
    }
    for key, (status, reason, action, listed_under) in expected.items():
        row = rows[world[key].pk]
        assert (row.delivery.status, row.delivery.block_reason) == (status, reason), key
        event = row.recorded_by
        assert (event.action, event.object_type, event.object_id) == (action, "campaign", str(world[key].pk)), key
        assert event.sequence is not None
        if listed_under:
            assert row.delivery.pk in event.details[listed_under]


def test_the_batch_event_found_is_the_one_that_lists_the_delivery():
    """Two batches of one campaign: each delivery is tied to its own batch's event, not the first one."""
    purpose = purpose_make()
    patients = [patient_make() for _ in range(3)]
    for patient in patients:
        authorization_make(patient=patient, purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=1):
        pass

    batches = AuditEvent.objects.filter(action="delivery.batch_dispatched")
    assert batches.count() == 3
    for patient in patients:
        (row,) = delivery_history_list(patient_id=patient.pk)
        assert row.recorded_by.details["sent"] == [row.delivery.pk]


def test_r_sec_audit_the_patient_history_page_shows_events_and_messages_and_is_recorded(officer, four_campaigns):
    world = four_campaigns
    patient = world["patient"]
    audit_record(actor=None, actor_role="system", action="invitation.created", patient_id=world["other"].pk)

    response = officer.get(f"/audit/patients/{patient.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    messages = html[html.index('id="messages"'):html.index("<h2>Summary</h2>")]
    for key in ("sent", "at_launch", "at_send", "cancelled"):
        assert f'href="/campaigns/{world[key].pk}/"' in messages
    assert "Spring CPAP refill" in messages and "Authorization revoked" in messages
    assert "Campaign cancelled before sending" in messages and "Authorization for another purpose only" in messages
    # The event that recorded each message, in words (audit.sentences): two batches, a launch, a cancellation.
    assert messages.count("Messages sent in a batch") == 2
    assert "Campaign started sending" in messages and "Campaign cancelled<" in messages
    assert "no event found" not in messages
    assert "may have reached the mail server" not in messages
    events = _shown_actions(html[html.index("<h2>Events</h2>"):])
    assert "authorization.revoked" in events and "invitation.created" not in events
    assert f'href="/consent/patients/{patient.pk}/"' in html
    viewed = AuditEvent.objects.get(action="audit.patient_history_viewed")
    assert (viewed.patient_id, viewed.object_type, viewed.object_id, viewed.details) == (
        patient.pk, "patient", str(patient.pk), {}
    )
    assert viewed.actor.groups.filter(name="compliance officer").exists()


def test_r_send_evidence_a_message_that_may_have_reached_the_server_unrecorded_says_so(officer, four_campaigns):
    patient = four_campaigns["patient"]
    Delivery.objects.filter(patient=patient).update(possible_duplicate=True)

    html = officer.get(f"/audit/patients/{patient.pk}/").content.decode()

    assert html.count("may have reached the mail server twice (same Message-ID)") == 1  # the one sent
    assert html.count("was in a worker's batch when that worker stopped") == 3  # the three blocked


def test_the_patient_history_shows_only_that_patient(officer):
    audit_record(actor=None, actor_role="patient", action="authorization.granted", object_type="authorization",
                 object_id=4, patient_id=12)
    audit_record(actor=None, actor_role="system", action="patient.viewed", object_type="patient", object_id=12,
                 patient_id=12, details={"authorization_ids": [4]})
    audit_record(actor=None, actor_role="system", action="patient.viewed", object_type="patient", object_id=13,
                 patient_id=13)

    html = officer.get("/audit/patients/12/").content.decode()

    assert _shown_actions(html[html.index("<h2>Events</h2>"):]) == ["patient.viewed", "authorization.granted"]
    assert "No marketing message was prepared for this patient." in html


def test_older_pages_continue_the_events_without_repeating_the_messages(officer, four_campaigns):
    patient = four_campaigns["patient"]
    newest = AuditEvent.objects.filter(patient_id=patient.pk).order_by("-occurred_at", "-id").first()

    html = officer.get(f"/audit/patients/{patient.pk}/?before={newest.pk}").content.decode()

    assert 'id="messages"' not in html
    assert _shown_actions(html)


@pytest.mark.parametrize("role", ["marketer"])
def test_r_min_necessary_the_patient_history_is_404_for_marketers(verified_client, role, four_campaigns):
    verified_client.sign_in(role=role)

    response = verified_client.get(f"/audit/patients/{four_campaigns['patient'].pk}/")

    assert response.status_code == 404
    assert b"Spring CPAP refill" not in response.content
    assert not AuditEvent.objects.filter(action="audit.patient_history_viewed").exists()


def test_a_queued_message_waits_without_an_event():
    purpose = purpose_make()
    patient = patient_make()
    authorization_make(patient=patient, purpose=purpose, signed_ago=timedelta(days=2))
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)

    (row,) = delivery_history_list(patient_id=patient.pk)

    assert row.delivery.status == Delivery.Status.QUEUED and row.recorded_by is None
    assert row.delivery.created_at <= timezone.now()


def test_r_send_evidence_the_history_shows_each_messages_check_and_send_times_and_a_refusals_code(
    officer, four_campaigns
):
    """R-SEND-EVIDENCE (issue 11, item 4): a sent message shows when the server accepted it and when the check that
    allowed it ran, both its own; a message the server refused shows the SMTP code."""
    world = four_campaigns
    sent = Delivery.objects.get(campaign=world["sent"], patient=world["patient"])
    assert sent.checked_at is not None and sent.checked_at <= sent.sent_at
    refused = Delivery.objects.get(campaign=world["sent"], patient=world["other"])
    # The mail server refused the other patient's message (what leaves the project is simulated).
    Delivery.objects.filter(pk=refused.pk).update(status="failed", smtp_code=550, error="smtp 550", sent_at=None)

    html = officer.get(f"/audit/patients/{world['patient'].pk}/").content.decode()
    other = officer.get(f"/audit/patients/{world['other'].pk}/").content.decode()

    local = timezone.localtime
    assert f"{local(sent.sent_at):%Y-%m-%d %H:%M:%S.%f}" in html
    assert f"sent; checked {local(sent.checked_at):%Y-%m-%d %H:%M:%S.%f}" in html
    assert "refused: SMTP 550" in other
