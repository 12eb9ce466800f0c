"""Opt-in open and click tracking (campaigns.sending.tracking, campaigns.views.tracking): off by default, the rewrite of
a rendered message, the public endpoints (first open and first click only, no cookie), and no forged token or
open redirect. R-NO-PHI-LEAK: the URLs carry a delivery id and a URL from approved content, nothing else."""
import re
from unittest import mock

import pytest

from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.sending.messages import CampaignRender, unsubscribe_token
from campaigns.sending.tracking import (
    TrackedHtml,
    delivery_click_record,
    delivery_open_record,
    link_token,
    link_token_read,
    tracking_apply,
    tracking_token,
    tracking_token_read,
)
from campaigns.services.launch import campaign_launch
from campaigns.tests.factories import block_make, campaign_approved_make
from consent.services.form_versions import purpose_tracking_set
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db

SITE = "https://mail.example.test"

DOCUMENT = (
    '<!doctype html><html><body><div>'
    '<p><a href="https://shop.example.com/cpap?size=m&amp;color=blue" style="color: red;">Masks</a></p>'
    "<p><a href='https://shop.example.com/cpap?size=m&amp;color=blue'>Masks again</a></p>"
    '<p><a href="mailto:help@example.com">Write to us</a> <a href="tel:+15550100">Call</a> <a href="#top">Top</a></p>'
    '<p><a href="https://shop.example.com/you?e=hmfPLACEHOLDER">Yours</a></p>'
    f'<p><a href="{SITE}/my/">Your preferences</a></p>'
    '<p><a href="hmunsubPLACEHOLDER">Stop these messages</a></p>'
    "</div></body></html>"
)


@pytest.fixture
def site(settings):
    settings.SITE_URL = SITE
    return SITE


def _campaign(*, tracking: bool):
    purpose = purpose_make()
    if tracking:
        purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    return campaign_approved_make(purpose=purpose)


def _sent(*, tracking: bool, patients: int = 2):
    campaign = _campaign(tracking=tracking)
    for _ in range(patients):
        authorization_make(patient=patient_make(), purpose=campaign.purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    while delivery_dispatch_batch(campaign_id=campaign.pk):
        pass
    return campaign, list(Delivery.objects.filter(campaign=campaign).order_by("id"))


# --- Off by default ----------------------------------------------------------------------------------------


def test_tracking_is_off_by_default_and_leaves_the_message_as_it_is(site):
    campaign = _campaign(tracking=False)

    tracked = tracking_apply(DOCUMENT, campaign=campaign, keep=["hmunsubPLACEHOLDER"])

    assert campaign.purpose.tracking_enabled is False
    assert tracked.html == DOCUMENT and tracked.placeholder is None and tracked.links == 0
    assert "/t/" not in tracked.html and "<img" not in tracked.html
    assert tracked.for_recipient(DOCUMENT, delivery_id=5) == DOCUMENT


def test_an_unsaved_campaign_is_never_tracked(site):
    """The editor's preview renders an unsaved campaign: no delivery, nothing to track."""
    purpose = purpose_make()
    purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    purpose.refresh_from_db()

    assert tracking_apply(DOCUMENT, campaign=Campaign(purpose=purpose)).html == DOCUMENT


def test_endpoints_record_nothing_for_a_purpose_without_tracking(client):
    campaign, (delivery, _) = _sent(tracking=False)
    link = link_token(campaign_id=campaign.pk, url="https://shop.example.com/cpap")

    open_response = client.get(f"/t/o/{tracking_token(delivery.pk)}.gif")
    click_response = client.get(f"/t/c/{tracking_token(delivery.pk)}/{link}/")

    delivery.refresh_from_db()
    assert open_response.status_code == 200 and open_response["Content-Type"] == "image/gif"
    assert click_response.status_code == 302 and click_response["Location"] == "https://shop.example.com/cpap"
    assert delivery.opened_at is None and delivery.clicked_at is None


# --- The rewrite -------------------------------------------------------------------------------------------


def test_links_are_rewritten_and_a_pixel_appended_with_one_placeholder_per_recipient(site):
    campaign = _campaign(tracking=True)

    tracked = tracking_apply(DOCUMENT, campaign=campaign, keep=["hmunsubPLACEHOLDER", "hmfPLACEHOLDER"])

    assert tracked.links == 2  # the two shop links; nothing else
    clicks = re.findall(r'href="(https://mail\.example\.test/t/c/[^"]+)"', tracked.html)
    assert len(clicks) == 2 and clicks[0] == clicks[1]  # the same target signed once
    recipient, link = clicks[0].removeprefix(f"{SITE}/t/c/").rstrip("/").split("/")
    assert recipient == tracked.placeholder
    assert link_token_read(link) == (campaign.pk, "https://shop.example.com/cpap?size=m&color=blue")
    for untouched in ('href="mailto:help@example.com"', 'href="tel:+15550100"', 'href="#top"',
                      'href="https://shop.example.com/you?e=hmfPLACEHOLDER"', f'href="{SITE}/my/"',
                      'href="hmunsubPLACEHOLDER"', 'style="color: red;"'):
        assert untouched in tracked.html
    pixel = f'<img src="{SITE}/t/o/{tracked.placeholder}.gif" width="1" height="1" alt=""'
    assert pixel in tracked.html and tracked.html.index(pixel) < tracked.html.index("</body>")

    mine = tracked.for_recipient(tracked.html, delivery_id=42)

    assert tracked.placeholder not in mine
    token = re.search(r"/t/o/([^\"]+)\.gif", mine).group(1)
    assert tracking_token_read(token) == 42
    assert f"/t/c/{token}/{link}/" in mine


def test_a_campaign_message_rendered_once_is_tracked_per_recipient_by_substitution(site):
    """campaigns.sending.messages.CampaignRender rewrites its HTML once per batch (keeping its placeholders); each
    recipient's message is then one substitution, and the unsubscribe link and merge fields still work."""
    campaign = _campaign(tracking=True)
    block = block_make(html='<p>Hello {{ first_name }}. <a href="https://shop.example.com/new">See the new masks</a></p>')
    campaign.content_blocks.create(block=block, position=0)
    render = CampaignRender(campaign=campaign, allowed_fields=["first_name"])

    message = render.assemble(delivery_id=7, to_address="a@example.org", merge_values={"first_name": "Ann"})
    html_part = message.html
    tracked = render.tracking

    assert tracked.links == 1
    assert "Hello Ann." in html_part
    assert message.unsubscribe_url in html_part.replace("&amp;", "&")  # the one-click link is not tracked
    assert re.search(rf'href="{SITE}/t/c/7:[^/"]+/[^/"]+/"', html_part)
    assert re.search(rf'src="{SITE}/t/o/7:[^"]+\.gif"', html_part)


def test_tracked_urls_carry_no_patient_data(site):
    """R-NO-PHI-LEAK: a link whose target holds a merge field is not tracked, so no value is signed into a URL."""
    campaign = _campaign(tracking=True)

    tracked = tracking_apply(
        '<a href="https://x.example/?name=hmfABC">x</a>', campaign=campaign, keep=["hmfABC"]
    )

    assert tracked.links == 0 and 'href="https://x.example/?name=hmfABC"' in tracked.html


# --- The endpoints -----------------------------------------------------------------------------------------


def test_first_open_only_is_recorded_and_no_cookie_is_set(client):
    campaign, (delivery, other) = _sent(tracking=True)
    url = f"/t/o/{tracking_token(delivery.pk)}.gif"

    first = client.get(url)
    delivery.refresh_from_db()
    opened_at = delivery.opened_at
    second = client.get(url)
    delivery.refresh_from_db()

    assert first.status_code == 200 and first["Content-Type"] == "image/gif" and first.content.startswith(b"GIF89a")
    assert opened_at is not None and delivery.opened_at == opened_at
    assert "no-store" in first["Cache-Control"]
    assert not first.cookies and not second.cookies
    other.refresh_from_db()
    assert other.opened_at is None and delivery.clicked_at is None
    assert not AuditEvent.objects.filter(action__startswith="tracking").exists()


def test_first_click_is_recorded_counts_as_an_open_and_redirects_to_the_content_url(client):
    campaign, (delivery, _) = _sent(tracking=True)
    target = "https://shop.example.com/cpap?size=m&color=blue"
    url = f"/t/c/{tracking_token(delivery.pk)}/{link_token(campaign_id=campaign.pk, url=target)}/"

    response = client.get(url)
    delivery.refresh_from_db()
    clicked_at = delivery.clicked_at
    client.get(url)
    delivery.refresh_from_db()

    assert response.status_code == 302 and response["Location"] == target
    assert response["Referrer-Policy"] == "no-referrer" and not response.cookies
    assert clicked_at is not None and delivery.clicked_at == clicked_at
    assert delivery.opened_at == clicked_at


def test_head_requests_from_link_scanners_record_nothing(client):
    campaign, (delivery, _) = _sent(tracking=True)

    client.head(f"/t/o/{tracking_token(delivery.pk)}.gif")
    client.head(f"/t/c/{tracking_token(delivery.pk)}/{link_token(campaign_id=campaign.pk, url='https://a.example/')}/")

    delivery.refresh_from_db()
    assert delivery.opened_at is None and delivery.clicked_at is None


def test_a_forged_or_altered_link_is_refused_never_redirected(client):
    """No open redirect: only a target we signed from the campaign's content is followed."""
    campaign, (delivery, _) = _sent(tracking=True)
    recipient = tracking_token(delivery.pk)
    genuine = link_token(campaign_id=campaign.pk, url="https://shop.example.com/")
    other_key = link_token(campaign_id=campaign.pk, url="https://evil.example/")
    forged = genuine.split(":")[0] + ":" + other_key.split(":")[1]
    from django.core import signing

    unsigned = signing.dumps({"c": campaign.pk, "u": "https://evil.example/"}, compress=True)

    for bad in (forged, unsigned, "https:evil.example", "x", genuine[:-2]):
        response = client.get(f"/t/c/{recipient}/{bad}/")
        assert response.status_code == 404, bad
        assert "Location" not in response and b"This link does not work" in response.content
    delivery.refresh_from_db()
    assert delivery.clicked_at is None and delivery.opened_at is None


def test_a_signed_target_that_is_not_http_is_never_followed():
    from django.core import signing

    token = signing.Signer(salt="campaigns.sending.tracking.link").sign_object({"c": 1, "u": "javascript:alert(1)"})

    assert link_token_read(token) is None


def test_a_forged_recipient_token_records_nothing_and_the_link_still_works(client):
    campaign, (delivery, _) = _sent(tracking=True)
    link = link_token(campaign_id=campaign.pk, url="https://shop.example.com/")
    signature = tracking_token(delivery.pk).split(":")[1]
    # The last character changed (to "A", or "B" when it is "A": the real token once failed this test in 64).
    forged = f"{delivery.pk}:{signature[:-1]}{'B' if signature.endswith('A') else 'A'}"

    assert client.get(f"/t/o/{forged}.gif").status_code == 200
    response = client.get(f"/t/c/{forged}/{link}/")

    delivery.refresh_from_db()
    assert response.status_code == 302 and delivery.opened_at is None and delivery.clicked_at is None


def test_tracking_and_unsubscribe_tokens_are_not_interchangeable(client):
    """Separate salts: a tracking URL cannot unsubscribe anyone, and an unsubscribe token records no open."""
    campaign, (delivery, _) = _sent(tracking=True)

    assert tracking_token_read(unsubscribe_token(delivery.pk)) is None
    client.get(f"/t/o/{unsubscribe_token(delivery.pk)}.gif")
    response = client.post(f"/unsubscribe/{tracking_token(delivery.pk)}/")

    delivery.refresh_from_db()
    assert delivery.opened_at is None
    assert response.status_code == 404


def test_a_link_of_another_campaign_records_nothing_for_this_delivery():
    campaign, (delivery, _) = _sent(tracking=True)
    other, _ = _sent(tracking=True, patients=1)

    assert delivery_click_record(delivery_id=delivery.pk, campaign_id=other.pk) is False
    assert delivery_click_record(delivery_id=delivery.pk, campaign_id=campaign.pk) is True
    assert delivery_click_record(delivery_id=delivery.pk, campaign_id=campaign.pk) is False


def test_a_delivery_that_was_not_sent_records_nothing():
    purpose = purpose_make()
    purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    patient_make()  # no authorization: blocked
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    blocked = Delivery.objects.get(campaign=campaign)

    assert blocked.status == "blocked"
    assert delivery_open_record(delivery_id=blocked.pk) is False
    assert delivery_click_record(delivery_id=blocked.pk, campaign_id=campaign.pk) is False


def test_tracked_html_token_is_the_tracking_token():
    assert TrackedHtml(html="", placeholder="p").token_for(9) == tracking_token(9)
