"""Campaign pages: marketers see aggregates with small counts suppressed, compliance officers see the
evidence per delivery, and the one-click unsubscribe works without a login."""
import pytest
from django.core import mail

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.sending.messages import unsubscribe_token
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.models import Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_campaign():
    purpose = purpose_make()
    for _ in range(12):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(3):
        patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    campaign_finish_if_done(campaign_id=campaign.pk)
    return campaign


def test_r_small_cell_marketer_sees_fewer_than_11_and_no_patient_ids(verified_client, sent_campaign):
    """R-SMALL-CELL, R-MIN-NECESSARY: counts 1 to 10 read "fewer than 11"; no patient-level rows."""
    verified_client.sign_in(role="marketer")

    page = verified_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()

    assert "12" in page  # sent
    assert "fewer than 11" in page  # 3 blocked for no authorization
    assert "Evidence for each patient" not in page
    assert not AuditEvent.objects.filter(action="campaign.evidence_viewed").exists()


def test_compliance_officer_sees_evidence_and_the_view_is_audited(verified_client, sent_campaign):
    """R-MIN-NECESSARY, R-SEC-AUDIT: patient-level evidence for compliance, and each view of it audited."""
    officer = verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()

    assert "Every sent message names an authorization" in page
    for delivery in Delivery.objects.filter(campaign=sent_campaign):
        assert f"#{delivery.patient_id}" in page
    assert AuditEvent.objects.filter(action="campaign.evidence_viewed", actor=officer).count() == 1


def test_unknown_campaign_is_not_found(verified_client):
    verified_client.sign_in(role="marketer")

    assert verified_client.get("/campaigns/999999/").status_code == 404


def test_r_rfc8058_one_click_post_revokes_without_login(client, sent_campaign):
    """R-RFC8058, R-CANSPAM-OPTOUT: a POST with no cookie and no login revokes that purpose at once."""
    delivery = Delivery.objects.filter(campaign=sent_campaign, status="sent").first()
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"

    response = client.post(url, {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert b"no more of these messages" in response.content
    assert not authorization_covering_list(
        purpose_id=sent_campaign.purpose_id, patient_ids=[delivery.patient_id]
    ).exists()
    assert Revocation.objects.get(authorization__patient_id=delivery.patient_id).channel == "one_click"
    assert AuditEvent.objects.filter(action="authorization.revoked", object_id=str(delivery.patient_id)).exists()


def test_one_click_get_only_asks_for_confirmation(client, sent_campaign):
    delivery = Delivery.objects.filter(campaign=sent_campaign, status="sent").first()

    response = client.get(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/")

    assert response.status_code == 200 and b"Yes, stop these messages" in response.content
    assert Revocation.objects.count() == 0
    assert AuditEvent.objects.filter(action="unsubscribe.viewed", object_id=str(delivery.pk)).count() == 1


# Bad links (counted per interval, not audited per request), methods and throttling: test_unsubscribe.py.


def test_unsubscribe_link_in_a_sent_message_works(client, sent_campaign):
    message = mail.outbox[0]
    url = message.extra_headers["List-Unsubscribe"].strip("<>").split("://", 1)[1].split("/", 1)[1]

    client.post("/" + url)

    assert Revocation.objects.count() == 1


def test_a_reused_unsubscribe_link_says_it_was_already_done(client, sent_campaign):
    """Token reuse: the second POST (and a later GET) revokes nothing and says so plainly, never a 500."""
    delivery = Delivery.objects.filter(campaign=sent_campaign, status="sent").first()
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"
    client.post(url)

    again = client.post(url)
    later = client.get(url)

    assert again.status_code == 200 and b"You already stopped these messages" in again.content
    assert later.status_code == 200 and b"You already stopped these messages" in later.content
    assert Revocation.objects.count() == 1


def test_progress_endpoint_follows_the_deliveries(verified_client):
    """The live progress bar: sent, blocked and remaining as the viewer may read them, the share of what can be
    sent that was sent, and the status; nothing per patient."""
    purpose = purpose_make()
    for _ in range(4):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    verified_client.sign_in(role="marketer")

    before = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=2)
    halfway = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()

    # A marketer reads 1 to 10 as "fewer than 11" (R-SMALL-CELL), each segment drawn at its range's middle.
    assert (before["status"], before["percent"], before["remaining"]) == ("sending", 0, True)
    assert [(s["key"], s["text"]) for s in before["segments"]] == [
        ("sent", "0"), ("blocked", "0"), ("remaining", "fewer than 11")
    ]
    assert (halfway["status"], halfway["percent"]) == ("sending", 50)
    assert [(s["key"], s["text"], s["width"]) for s in halfway["segments"]] == [
        ("sent", "fewer than 11", 50.0), ("blocked", "0", 0.0), ("remaining", "fewer than 11", 50.0)
    ]
    assert set(before) == {"status", "percent", "remaining", "summary", "segments"}  # nothing per patient
    assert f"/campaigns/{campaign.pk}/progress/" in page  # the page polls while sending
