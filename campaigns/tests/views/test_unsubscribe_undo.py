"""Undo after a one-click unsubscribe (issue 17, item 5; ADR 0027): "Changed your mind? Subscribe again" restores
exactly the authorizations the one click revoked, within UNDO_SECONDS, CSRF-protected, audited. R-REVOKE-ANYTIME,
R-RFC8058, R-SEC-AUDIT."""
import re
import time
from types import SimpleNamespace

import pytest
from django.core import signing
from django.core.cache import cache
from django.test import Client

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import unsubscribe_token
from campaigns.services import unsubscribe as unsubscribe_services
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import campaign_approved_make
from consent.models import Authorization, Revocation
from consent.selectors.coverage import authorization_covering_list
from consent.services.authorizations import authorization_revoke
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def delivery():
    purpose = purpose_make(name="CPAP supplies")
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    return Delivery.objects.select_related("campaign").get(campaign=campaign, status="sent")


def _covered(delivery) -> list[Authorization]:
    return list(
        authorization_covering_list(purpose_id=delivery.campaign.purpose_id, patient_ids=[delivery.patient_id])
    )


def _unsubscribe(client, delivery) -> str:
    """Press "Yes, stop these messages" as a person would: the confirmation page, then its form."""
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"
    client.get(url)
    done = client.post(url, {"List-Unsubscribe": "One-Click", "from": "page"})
    assert done.status_code == 200
    return done.content.decode()


def _undo_token(page: str) -> str:
    return re.search(r'name="undo" value="([^"]+)"', page).group(1)


def test_undo_restores_exactly_what_the_one_click_revoked():
    """The authorization revoked by the one click is stored again (a new row naming it), with the same text,
    signature and end; the revocation stays; the undo is audited with the ids."""
    client = Client(enforce_csrf_checks=True)
    purpose = purpose_make(name="CPAP supplies")
    patient = patient_make()
    original = authorization_make(patient=patient, purpose=purpose, document_text="The form.", text_hash="ab" * 32,
                                  signature_name="Margaret Ellen Jones")
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    delivery = Delivery.objects.select_related("campaign").get(campaign=campaign, status="sent")
    page = _unsubscribe(client, delivery)
    assert "Changed your mind?" in page and "Subscribe again" in page
    assert _covered(delivery) == []

    response = client.post(
        f"/unsubscribe/{unsubscribe_token(delivery.pk)}/",
        {"undo": _undo_token(page), "csrfmiddlewaretoken": client.cookies["csrftoken"].value},
    )

    assert response.status_code == 200
    assert "You will get these messages again" in response.content.decode()
    (again,) = _covered(delivery)
    assert again.pk != original.pk and again.reinstates_id == original.pk
    assert again.channel == Authorization.Channel.REINSTATED
    assert (again.document_text, again.text_hash, again.signature_name, again.expires_at) == (
        original.document_text, original.text_hash, original.signature_name, original.expires_at
    )
    assert again.signed_at > Revocation.objects.get(authorization=original).revoked_at  # no coverage in the gap
    event = AuditEvent.objects.get(action="unsubscribe.undone")
    assert event.object_id == str(delivery.pk) and event.patient_id == patient.pk
    assert event.details == {
        "purpose_id": purpose.pk, "reinstated": [{"revoked_id": original.pk, "authorization_id": again.pk}]
    }
    granted = AuditEvent.objects.get(action="authorization.granted", object_id=str(again.pk))
    assert granted.details["channel"] == "reinstated" and granted.details["reinstates_id"] == original.pk


def test_undo_needs_the_csrf_token(delivery):
    client = Client(enforce_csrf_checks=True)
    page = _unsubscribe(client, delivery)

    response = client.post(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/", {"undo": _undo_token(page)})

    assert response.status_code == 403
    assert _covered(delivery) == []
    assert not AuditEvent.objects.filter(action="unsubscribe.undone").exists()


def test_the_one_click_post_of_a_mailbox_provider_needs_no_csrf_token(delivery):
    """R-RFC8058: the one-click POST still works without a session or a token."""
    response = Client(enforce_csrf_checks=True).post(
        f"/unsubscribe/{unsubscribe_token(delivery.pk)}/", "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200 and _covered(delivery) == []


def test_undo_is_refused_after_the_window(delivery, monkeypatch):
    client = Client()
    page = _unsubscribe(client, delivery)
    token = _undo_token(page)
    later = time.time() + unsubscribe_services.UNDO_SECONDS + 1
    # The signer's clock only (django.core.signing reads time.time()): the token is now older than the window.
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: later))

    response = client.post(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/", {"undo": token})

    assert response.status_code == 410
    assert "This can no longer be undone" in response.content.decode()
    assert _covered(delivery) == []
    assert not AuditEvent.objects.filter(action="unsubscribe.undone").exists()


def test_undo_restores_nothing_that_the_one_click_did_not_revoke(delivery):
    """A token for another delivery, or a forged one, restores nothing; a revocation through the portal is not undone
    by a one-click undo."""
    client = Client()
    other = authorization_make(patient=patient_make(), purpose=delivery.campaign.purpose)
    authorization_revoke(
        actor=None, patient_id=other.patient_id, purpose_id=other.purpose_id, channel=Revocation.Channel.PORTAL
    )
    forged = unsubscribe_services.unsubscribe_undo_token(
        delivery_id=delivery.pk, revocations=list(Revocation.objects.filter(authorization=other))
    )
    _unsubscribe(client, delivery)

    response = client.post(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/", {"undo": forged})
    tampered = client.post(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/", {"undo": forged[:-2] + "xx"})

    assert response.status_code == 409 and tampered.status_code == 410
    assert _covered(delivery) == [] and not Authorization.objects.filter(reinstates__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="unsubscribe.undone").exists()


def test_undo_twice_restores_once(delivery):
    client = Client()
    page = _unsubscribe(client, delivery)
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"

    first = client.post(url, {"undo": _undo_token(page)})
    second = client.post(url, {"undo": _undo_token(page)})

    assert (first.status_code, second.status_code) == (200, 409)
    assert len(_covered(delivery)) == 1
    assert AuditEvent.objects.filter(action="unsubscribe.undone").count() == 1


def test_the_unsubscribe_pages_follow_the_patients_language(delivery):
    from consent.services.patients import patient_language_set

    patient_language_set(actor=None, patient_id=delivery.patient_id, language="es", source="staff")
    client = Client()
    confirm = client.get(f"/unsubscribe/{unsubscribe_token(delivery.pk)}/").content.decode()
    assert '<html lang="es">' in confirm and "¿Dejar de recibir mensajes sobre “CPAP supplies”?" in confirm
    done = _unsubscribe(client, delivery)
    assert "¿Cambió de opinión?" in done and "Volver a suscribirme" in done


def test_switching_the_pages_language_keeps_the_undo_offer(delivery):
    """The language switch reloads the page with a GET: the person who just unsubscribed here still sees the offer,
    in the language they chose, and it still works."""
    client = Client()
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"
    _unsubscribe(client, delivery)

    switched = client.post("/my/language/", {"language": "es", "next": url}, follow=True)

    page = switched.content.decode()
    assert switched.redirect_chain[-1][0] == url and '<html lang="es">' in page
    token = _undo_token(page)
    assert client.post(url, {"undo": token}).status_code == 200
    assert len(_covered(delivery)) == 1


def test_a_mailbox_providers_one_click_post_leaves_no_undo_offer_behind(delivery):
    """RFC 8058: the provider's POST is not a person on our page; nothing is kept for a later visit."""
    client = Client()
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"
    assert client.post(url, {"List-Unsubscribe": "One-Click"}).status_code == 200

    page = client.get(url).content.decode()

    assert 'name="undo"' not in page and "You already stopped these messages." in page
    assert "unsubscribe_undo" not in client.session


def test_after_the_window_a_reload_offers_no_undo(delivery, monkeypatch):
    client = Client()
    url = f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"
    _unsubscribe(client, delivery)
    later = time.time() + unsubscribe_services.UNDO_SECONDS + 1
    monkeypatch.setattr(signing, "time", SimpleNamespace(time=lambda: later))

    page = client.get(url).content.decode()

    assert 'name="undo"' not in page and "You already stopped these messages." in page
