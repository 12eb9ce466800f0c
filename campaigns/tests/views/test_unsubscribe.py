"""One-click unsubscribe under abuse (issue 16): links that are not ours are audited as one exact count per
interval, never one row per anonymous request; GET is audited as viewed, HEAD is not, POST acts, other methods get
405; throttled per address and per link with 429 and Retry-After. R-RFC8058, R-SEC-AUDIT, R-NO-PHI-LEAK."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from audit.models import AuditEvent
from campaigns.models import Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import unsubscribe_token
from campaigns.services.launch import campaign_launch
from campaigns.services.unsubscribe import unsubscribe_bad_token_count, unsubscribe_bad_tokens_flush
from campaigns.tests.factories import campaign_approved_make
from conftest import requires_redis
from consent.models import Patient, Revocation
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

START = datetime(2026, 12, 4, 19, 30, tzinfo=UTC)  # the start of a minute


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def throttling(settings, monkeypatch):
    """Throttling on, its clock held a second into a window (1,800,000,000 is a multiple of every window here)."""
    settings.HIPAAMAIL_THROTTLE_ENABLED = True
    monkeypatch.setattr("accounts.throttle.time.time", lambda: 1_800_000_001.0)
    return settings


@pytest.fixture
def delivery():
    purpose = purpose_make()
    for _ in range(2):
        authorization_make(patient=patient_make(), purpose=purpose)
    campaign = campaign_approved_make(purpose=purpose)
    campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    return Delivery.objects.filter(campaign=campaign, status="sent").first()


def _url(delivery) -> str:
    return f"/unsubscribe/{unsubscribe_token(delivery.pk)}/"


def _bad_token_events():
    return AuditEvent.objects.filter(action__startswith="unsubscribe.bad_token")


@pytest.fixture(params=["locmem", pytest.param("redis", marks=requires_redis)])
def any_cache(request, settings):
    """The demo's and the tests' cache (locmem) and production's (Redis)."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.CELERY_BROKER_URL}
        }
    cache.clear()
    yield request.param
    cache.clear()


def test_r_sec_audit_200_forged_links_write_one_row_with_their_exact_count(client, any_cache):
    """200 forged requests in one minute: no row while the minute runs, then exactly one, counting 200."""
    for n in range(200):
        unsubscribe_bad_token_count(now=START + timedelta(seconds=n * 0.25))
    assert _bad_token_events().count() == 0

    written = unsubscribe_bad_tokens_flush(now=START + timedelta(seconds=66))

    event = _bad_token_events().get()
    assert written == 1
    assert event.action == "unsubscribe.bad_tokens" and event.actor_role == "anonymous"
    assert event.details == {"count": 200, "interval_start": "2026-12-04T19:30:00Z", "interval_seconds": 60}
    assert event.ip is None and event.patient_id is None and event.object_id == ""
    # Flushing again (beat, another process) writes nothing more.
    assert unsubscribe_bad_tokens_flush(now=START + timedelta(seconds=130)) == 0
    assert _bad_token_events().count() == 1


def test_each_interval_gets_its_own_count_and_the_open_one_waits(client):
    for seconds in (1, 2, 59, 61, 62, 125):
        unsubscribe_bad_token_count(now=START + timedelta(seconds=seconds))

    # At 2:06 the first two minutes have ended (and their grace): the third, still open, is not written.
    unsubscribe_bad_tokens_flush(now=START + timedelta(seconds=126))

    counts = sorted((e.details["interval_start"], e.details["count"]) for e in _bad_token_events())
    assert counts == [("2026-12-04T19:30:00Z", 3), ("2026-12-04T19:31:00Z", 2)]
    unsubscribe_bad_tokens_flush(now=START + timedelta(seconds=190))
    assert _bad_token_events().filter(details__interval_start="2026-12-04T19:32:00Z").get().details["count"] == 1


def test_a_bad_link_in_a_later_minute_writes_the_earlier_minutes_count(client):
    for _ in range(3):
        unsubscribe_bad_token_count(now=START + timedelta(seconds=10))

    unsubscribe_bad_token_count(now=START + timedelta(seconds=70))

    assert [e.details["count"] for e in _bad_token_events()] == [3]


@pytest.mark.parametrize("token", ["nonsense", "1:forged-signature", "99999999:xyz", "__proto__"])
def test_forged_links_over_http_get_a_clear_page_and_are_counted_not_audited_each(client, token):
    answers = [client.post(f"/unsubscribe/{token}{n}/") for n in range(5)]

    assert {answer.status_code for answer in answers} == {404}
    assert b"This link does not work" in answers[0].content
    assert Revocation.objects.count() == 0
    assert _bad_token_events().count() <= 1  # the minute is still open (or just ended, a row for its share)
    unsubscribe_bad_tokens_flush(now=datetime.now(UTC) + timedelta(seconds=70))
    assert sum(e.details["count"] for e in _bad_token_events()) == 5


def test_a_signed_token_for_a_delivery_that_does_not_exist_is_a_bad_link(client):
    response = client.get(f"/unsubscribe/{unsubscribe_token(987654321)}/")

    assert response.status_code == 404
    unsubscribe_bad_tokens_flush(now=datetime.now(UTC) + timedelta(seconds=70))
    assert [e.details["count"] for e in _bad_token_events()] == [1]


def test_get_is_audited_as_viewed_and_head_is_not(client, delivery):
    get = client.get(_url(delivery))
    head = client.head(_url(delivery))

    assert get.status_code == head.status_code == 200
    assert head["Content-Type"] == get["Content-Type"]
    viewed = AuditEvent.objects.filter(action="unsubscribe.viewed")
    assert viewed.count() == 1
    assert viewed.get().object_id == str(delivery.pk) and viewed.get().patient_id == delivery.patient_id
    assert Revocation.objects.count() == 0


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_methods_the_link_does_not_serve_get_405_with_allow(client, delivery, method):
    """Not treated as GET any more: nothing audited, nothing revoked."""
    response = getattr(client, method)(_url(delivery))

    assert response.status_code == 405
    assert {m.strip() for m in response["Allow"].split(",")} == {"GET", "HEAD", "POST"}
    assert not AuditEvent.objects.filter(action__startswith="unsubscribe.").exists()
    assert Revocation.objects.count() == 0


def test_post_still_revokes_at_once(client, delivery):
    response = client.post(_url(delivery))

    assert response.status_code == 200 and b"no more of these messages" in response.content
    assert Revocation.objects.get().channel == "one_click"


def test_forged_links_are_throttled_per_address_with_retry_after(client, throttling):
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "unsubscribe_bad_token": "3/m/ip"}

    answers = [client.post(f"/unsubscribe/{n}:forged{n}/", REMOTE_ADDR="198.51.100.3") for n in range(5)]
    elsewhere = client.post("/unsubscribe/9:forged9/", REMOTE_ADDR="198.51.100.4")

    assert [answer.status_code for answer in answers] == [404, 404, 404, 429, 429]
    assert answers[-1]["Retry-After"] == "59"
    assert b"Please wait 59 seconds, then try again." in answers[-1].content
    assert elsewhere.status_code == 404
    # Throttled or not, every forged link is in the count.
    unsubscribe_bad_tokens_flush(now=datetime.now(UTC) + timedelta(seconds=70))
    assert sum(e.details["count"] for e in _bad_token_events()) == 6


def test_one_link_is_throttled_per_link_and_each_link_per_address(client, throttling, delivery):
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "unsubscribe": "100/m/ip,3/m/key"}
    other = Delivery.objects.exclude(pk=delivery.pk).filter(campaign=delivery.campaign).first()

    answers = [client.get(_url(delivery), REMOTE_ADDR=f"198.51.100.{n}") for n in range(1, 6)]
    other_link = client.get(_url(other), REMOTE_ADDR="198.51.100.1")

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429, 429]
    assert answers[-1]["Retry-After"] == "59"
    assert other_link.status_code == 200
    # A refused view is not audited as a view.
    assert AuditEvent.objects.filter(action="unsubscribe.viewed", object_id=str(delivery.pk)).count() == 3

    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "unsubscribe": "2/m/ip,100/m/key"}
    cache.clear()
    per_address = [client.post(_url(d), REMOTE_ADDR="203.0.113.8") for d in (delivery, other, delivery)]
    assert [answer.status_code for answer in per_address] == [200, 200, 429]


def test_r_no_phi_leak_nothing_of_the_patient_in_the_pages_or_the_count(client, delivery, throttling):
    throttling.HIPAAMAIL_THROTTLES = {**throttling.HIPAAMAIL_THROTTLES, "unsubscribe": "100/m/ip,1/m/key"}
    client.get(_url(delivery))
    refused = client.get(_url(delivery))
    client.get("/unsubscribe/1:forged/")
    unsubscribe_bad_tokens_flush(now=datetime.now(UTC) + timedelta(seconds=70))

    patient = Patient.objects.get(pk=delivery.patient_id)
    assert refused.status_code == 429
    for text in (patient.email, patient.full_name, patient.email.split("@")[0]):
        assert text not in refused.content.decode()
    assert set(_bad_token_events().get().details) == {"count", "interval_start", "interval_seconds"}
