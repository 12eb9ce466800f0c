"""Campaign results (campaigns.selectors.results): the aggregate query against a brute-force count of the same rows,
unsubscribes credited to the right campaign, opens and clicks only where the purpose tracks, and small cells
suppressed for marketers so that no count from 1 to 10 can be read or worked out (R-SMALL-CELL)."""
import random
import smtplib
from datetime import timedelta
from unittest import mock

import pytest
from django.core.mail.backends.locmem import EmailBackend
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from campaigns.models import Campaign, Delivery
from campaigns.results_chart import results_charts
from campaigns.selectors.results import CampaignCounts, campaign_counts, results_view
from campaigns.sending.bounces import BounceKind, delivery_bounce_record
from campaigns.sending.dispatch import campaign_finish_if_done, delivery_dispatch_batch
from campaigns.sending.tracking import delivery_click_record, delivery_open_record
from campaigns.services.launch import campaign_launch
from campaigns.services.unsubscribe import delivery_unsubscribe
from campaigns.tests.factories import campaign_approved_make
from consent.models import Revocation, Suppression
from consent.services.authorizations import authorization_revoke
from consent.services.form_versions import purpose_tracking_set
from consent.services.suppressions import suppression_record
from consent.tests.factories import authorization_make, patient_make, purpose_make

FEWER = "fewer than 11"  # campaigns.permissions.count_for_marketer(1), as an English page reads it

pytestmark = pytest.mark.django_db


def _send(campaign, refuse: frozenset[str] = frozenset()):
    """Launch and send in-process; the mail server refuses (550) the addresses in `refuse`."""
    real_send = EmailBackend.send_messages

    def send(self, messages):
        for message in messages:
            if set(message.to) & refuse:
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"no such user")})
        return real_send(self, messages)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"), mock.patch.object(EmailBackend, "send_messages", send):
        campaign_launch(actor=None, campaign_id=campaign.pk)
        while delivery_dispatch_batch(campaign_id=campaign.pk):
            pass
    campaign_finish_if_done(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    return campaign


def _brute_force(campaign) -> CampaignCounts:
    """The same counts, one Python loop over the rows; unsubscribes by the documented rule, applied naively."""
    rows = list(Delivery.objects.filter(campaign=campaign))
    sent = [row for row in rows if row.status == "sent"]
    blocked: dict[str, int] = {}
    for row in rows:
        if row.status == "blocked":
            blocked[row.block_reason] = blocked.get(row.block_reason, 0) + 1
    revocations = {r.authorization_id: r for r in Revocation.objects.all()}
    all_sent = list(Delivery.objects.filter(status="sent"))

    def unsubscribed(row) -> bool:
        revocation = revocations.get(row.authorization_id)
        if revocation is None or revocation.channel != "one_click" or revocation.revoked_at < row.sent_at:
            return False
        return not any(
            other.authorization_id == row.authorization_id and row.sent_at < other.sent_at <= revocation.revoked_at
            for other in all_sent
        )

    tracking = campaign.purpose.tracking_enabled
    return CampaignCounts(
        audience=len(rows),
        sent=len(sent),
        queued=sum(row.status == "queued" for row in rows),
        failed=sum(row.status == "failed" for row in rows),
        blocked=blocked,
        bounced_hard=sum(row.bounced_at is not None and row.bounce_type == "hard" for row in sent),
        bounced_soft=sum(row.bounced_at is not None and row.bounce_type == "soft" for row in sent),
        complained=sum(row.complained_at is not None for row in sent),
        unsubscribed=sum(unsubscribed(row) for row in sent),
        opened=sum(row.opened_at is not None for row in sent) if tracking else None,
        clicked=sum(row.clicked_at is not None for row in sent) if tracking else None,
    )


def _random_campaign(seed: int, *, tracking: bool):
    """Two campaigns of one purpose with every outcome mixed at random: blocked for several reasons, refused by
    the mail server, bounced, complained about, unsubscribed in one click (between the two and after both),
    revoked in the portal, opened and clicked."""
    rng = random.Random(seed)
    purpose = purpose_make()
    other = purpose_make()
    if tracking:
        purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    covered, refuse = [], set()
    for _ in range(rng.randint(25, 40)):
        patient = patient_make()
        fate = rng.choice(["covered"] * 6 + ["none", "other", "expired", "revoked", "suppressed", "refused"])
        if fate == "none":
            continue
        if fate == "other":
            authorization_make(patient=patient, purpose=other)
            continue
        if fate == "expired":
            authorization_make(patient=patient, purpose=purpose, expires_in=timedelta(days=-1), signed_ago=timedelta(days=9))
            continue
        authorization_make(patient=patient, purpose=purpose)
        if fate == "revoked":
            authorization_revoke(actor=None, patient_id=patient.pk, purpose_id=purpose.pk, channel="portal")
        elif fate == "suppressed":
            suppression_record(actor=None, email=patient.email, reason=Suppression.Reason.COMPLAINT)
        elif fate == "refused":
            refuse.add(patient.email)
        else:
            covered.append(patient)
    first = _send(campaign_approved_make(purpose=purpose), refuse=frozenset(refuse))

    def after_sending(campaign, share: float):
        for delivery in Delivery.objects.filter(campaign=campaign, status="sent").select_related("patient"):
            if rng.random() > share:
                continue
            action = rng.choice(["hard", "soft", "complaint", "one_click", "portal", "open", "click", "open_click"])
            if action in ("hard", "soft", "complaint"):
                delivery_bounce_record(
                    message_id=delivery.message_id, recipients=[delivery.patient.email], kind=BounceKind(action),
                    status="5.1.1" if action == "hard" else "4.2.2", source="dsn",
                )
            elif action == "one_click":
                delivery_unsubscribe(delivery_id=delivery.pk)
            elif action == "portal":
                authorization_revoke(actor=None, patient_id=delivery.patient_id, purpose_id=purpose.pk, channel="portal")
            if action in ("open", "open_click"):
                delivery_open_record(delivery_id=delivery.pk)
            if action in ("click", "open_click"):
                delivery_click_record(delivery_id=delivery.pk, campaign_id=campaign.pk)

    after_sending(first, 0.5)
    second = _send(campaign_approved_make(purpose=purpose))
    # One-click after both campaigns: credited to the second (the last message before it) only.
    after_sending(second, 0.6)
    return first, second


@pytest.mark.parametrize("seed,tracking", [(1, True), (2, False), (3, True)])
def test_campaign_counts_match_a_brute_force_count(seed, tracking, django_assert_num_queries):
    first, second = _random_campaign(seed, tracking=tracking)

    for campaign in Campaign.objects.filter(pk__in=[first.pk, second.pk]).select_related("purpose"):
        with django_assert_num_queries(1):
            counts = campaign_counts(campaign=campaign)
        assert counts == _brute_force(campaign)
        assert counts.audience == counts.sent + counts.queued + counts.failed + counts.blocked_total


def test_a_one_click_unsubscribe_is_credited_to_the_last_message_before_it():
    """One revocation, one campaign: the message the patient most likely unsubscribed from."""
    purpose = purpose_make()
    early, late, portal = patient_make(), patient_make(), patient_make()
    for patient in (early, late, portal):
        authorization_make(patient=patient, purpose=purpose)
    first = _send(campaign_approved_make(purpose=purpose))
    delivery_unsubscribe(delivery_id=Delivery.objects.get(campaign=first, patient=early).pk)
    second = _send(campaign_approved_make(purpose=purpose))
    # `late` uses the first message's link after the second arrived: the second is credited (last touch).
    delivery_unsubscribe(delivery_id=Delivery.objects.get(campaign=first, patient=late).pk)
    authorization_revoke(actor=None, patient_id=portal.pk, purpose_id=purpose.pk, channel="portal")

    assert campaign_counts(campaign=first).unsubscribed == 1
    assert campaign_counts(campaign=second).unsubscribed == 1
    assert Delivery.objects.get(campaign=second, patient=early).block_reason == "revoked"


def test_opens_and_clicks_are_neither_counted_nor_shown_when_tracking_is_off(verified_client):
    purpose = purpose_make()
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = _send(campaign_approved_make(purpose=purpose))
    verified_client.sign_in(role="compliance officer")

    counts = campaign_counts(campaign=campaign)
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()

    assert purpose.tracking_enabled is False  # the default
    assert counts.opened is None and counts.clicked is None
    assert "Opened" not in page and "chart-funnel" not in page
    assert "tracking is off, as it is by default" in page


# --- What a marketer may read (R-SMALL-CELL) ----------------------------------------------------------------


def _counts(**overrides) -> CampaignCounts:
    fields = dict(
        audience=0, sent=0, queued=0, failed=0, blocked={}, bounced_hard=0, bounced_soft=0, complained=0,
        unsubscribed=0, opened=None, clicked=None,
    )
    fields |= overrides
    fields["audience"] = fields["sent"] + fields["queued"] + fields["failed"] + sum(fields["blocked"].values())
    return CampaignCounts(**fields)


def _texts(view) -> dict[str, str]:
    return {row.key: row.cell.text for row in view.rows}


def test_r_small_cell_counts_from_1_to_10_read_fewer_than_11_for_marketers_only():
    counts = _counts(sent=500, failed=10, blocked={"no_authorization": 11, "revoked": 1}, unsubscribed=3)

    marketer, officer = _texts(results_view(counts, exact=False)), _texts(results_view(counts, exact=True))

    assert marketer["failed"] == FEWER and marketer["blocked_revoked"] == FEWER
    assert marketer["blocked_no_authorization"] == "11" and marketer["sent"] == "500"
    assert marketer["unsubscribed"] == FEWER and marketer["complained"] == "0"
    assert officer["failed"] == "10" and officer["blocked_revoked"] == "1" and officer["unsubscribed"] == "3"
    assert officer["audience"] == "522"


def test_r_small_cell_a_total_never_gives_away_one_hidden_count():
    """Audience 503 = 500 sent + 3 blocked: an exact audience would reveal the 3 by subtraction."""
    view = results_view(_counts(sent=500, blocked={"revoked": 3}), exact=False)

    assert view.audience.text == f"500 + {FEWER}"
    assert view.blocked.text == FEWER
    assert [row.rate for row in view.outcomes] == ["", ""]  # 500 of "500 + fewer than 11" has no exact rate


def test_r_small_cell_hidden_counts_adding_up_to_11_or_more_leave_the_total_exact():
    view = results_view(_counts(sent=500, blocked={"revoked": 6, "expired": 7}), exact=False)

    assert view.audience.text == "513" and view.blocked.text == "13"
    assert _texts(view)["blocked_revoked"] == FEWER and _texts(view)["blocked_expired"] == FEWER
    assert view.outcomes[0].rate == "97.5%"


def test_r_small_cell_a_count_with_few_left_over_reads_all_but_fewer_than_11():
    """Opened 495 of 500 sent would reveal the 5 who did not open; clicked is judged against opened too."""
    view = results_view(_counts(sent=500, opened=495, clicked=200), exact=False)
    funnel = {row.key: row for row in view.funnel}

    assert funnel["opened"].cell.text == f"all but {FEWER}" and funnel["opened"].rate == ""
    assert funnel["clicked"].cell.text == "200" and funnel["clicked"].rate == ""  # of "all but …": no rate
    view = results_view(_counts(sent=500, opened=300, clicked=295), exact=False)
    funnel = {row.key: row for row in view.funnel}
    assert funnel["opened"].rate == "60.0%"
    assert funnel["clicked"].cell.text == f"all but {FEWER}"


def _derivable_small_counts(view, counts) -> list[str]:
    """What an attacker can work out exactly from a marketer's screen: a part of an exact total whose other
    parts are all exact, and the rest of an exact parent minus an exact subset. Returns those from 1 to 10."""
    leaks = []
    cells = {row.key: row.cell for row in view.rows}
    cells["sent"] = view.sent
    partitions = [
        ("audience", ["sent", "queued", "failed", "blocked"]),
        ("blocked", [f"blocked_{reason}" for reason in counts.blocked]),
    ]
    true = {"audience": counts.audience, "sent": counts.sent, "queued": counts.queued, "failed": counts.failed,
            "blocked": counts.blocked_total, **{f"blocked_{r}": n for r, n in counts.blocked.items()}}
    for total, parts in partitions:
        parts = [part for part in parts if true[part]]
        shown = [part for part in parts if cells.get(part) is not None and cells[part].exact is not None]
        missing = [part for part in parts if part not in shown]
        if cells[total].exact is not None and len(missing) == 1:
            value = cells[total].exact - sum(cells[part].exact for part in shown)
            if 1 <= value <= 10:
                leaks.append(f"{missing[0]}={value}")
    subsets = [("sent", key) for key in ("bounced_hard", "bounced_soft", "unsubscribed", "complained", "opened")]
    subsets.append(("opened", "clicked"))
    for parent, child in subsets:
        if parent in cells and child in cells and cells[parent].exact is not None and cells[child].exact is not None:
            rest = cells[parent].exact - cells[child].exact
            if 1 <= rest <= 10:
                leaks.append(f"{parent}-{child}={rest}")
    for row in view.rows:
        if row.cell.exact is not None and 1 <= row.cell.exact <= 10:
            leaks.append(f"{row.key} shown as {row.cell.exact}")
    return leaks


small_or_not = st.one_of(st.integers(0, 12), st.integers(0, 400))


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    sent=small_or_not, queued=small_or_not, failed=small_or_not,
    blocked=st.dictionaries(st.sampled_from(["no_authorization", "revoked", "expired", "suppressed"]),
                            st.integers(1, 30), max_size=4),
    data=st.data(),
)
def test_r_small_cell_no_count_from_1_to_10_can_be_worked_out_from_a_marketers_screen(
    sent, queued, failed, blocked, data
):
    """R-SMALL-CELL: whatever the counts, subtracting what a marketer's screen shows reveals no count 1-10,
    and every rate shown is made of two numbers shown exactly."""
    opened = data.draw(st.integers(0, sent))
    counts = _counts(
        sent=sent, queued=queued, failed=failed, blocked=blocked,
        bounced_hard=data.draw(st.integers(0, sent)), unsubscribed=data.draw(st.integers(0, sent)),
        opened=opened, clicked=data.draw(st.integers(0, opened)),
    )

    view = results_view(counts, exact=False)

    assert _derivable_small_counts(view, counts) == []
    for row in view.rows:
        if row.rate:
            assert row.cell.exact is not None


def test_r_small_cell_the_chart_is_drawn_from_what_the_screen_shows_not_the_true_count():
    """Two campaigns whose hidden counts differ (3 and 8 blocked) give a marketer the very same picture."""
    one = results_view(_counts(sent=500, blocked={"revoked": 3}, unsubscribed=2), exact=False)
    other = results_view(_counts(sent=500, blocked={"revoked": 8}, unsubscribed=9), exact=False)

    assert results_charts(one) == results_charts(other)
    exact_one = results_charts(results_view(_counts(sent=500, blocked={"revoked": 3}), exact=True))
    exact_other = results_charts(results_view(_counts(sent=500, blocked={"revoked": 8}), exact=True))
    assert exact_one != exact_other  # compliance officers see the true proportions


def test_the_chart_is_drawn_the_same_in_spanish_only_its_words_change():
    """The SVG's coordinates are numbers for the drawing, not for a reader: in Spanish (decimal comma) they must not
    become "12,5", which no browser draws (found on the Spanish staff walk: bars gone, labels piled up)."""
    import re

    from django.template.loader import render_to_string
    from django.utils import translation

    view = results_view(_counts(sent=500, blocked={"revoked": 37}, unsubscribed=2), exact=True)

    def drawn(language: str) -> tuple[list[str], str]:
        with translation.override(language):
            html = "".join(render_to_string("campaigns/_chart.html", {"chart": chart}) for chart in results_charts(view))
        return re.findall(r'\b(?:x|y|width|height|viewBox|points)="([^"]*)"', html), html

    english, _ = drawn("en")
    spanish, html = drawn("es")
    assert spanish == english and not any("," in value for value in spanish if not value.count(" "))
    assert "Qué pasó con la audiencia" in html


# --- The pages ----------------------------------------------------------------------------------------------


@pytest.fixture
def sent_campaign():
    purpose = purpose_make()
    purpose_tracking_set(actor=None, purpose_id=purpose.pk, enabled=True)
    for _ in range(14):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(4):
        patient_make()
    campaign = _send(campaign_approved_make(purpose=purpose))
    for delivery in Delivery.objects.filter(campaign=campaign, status="sent").order_by("id")[:12]:
        delivery_open_record(delivery_id=delivery.pk)
    for delivery in Delivery.objects.filter(campaign=campaign, status="sent").order_by("id")[:2]:
        delivery_click_record(delivery_id=delivery.pk, campaign_id=campaign.pk)
    return campaign


def test_r_small_cell_marketer_page_shows_suppressed_aggregates_and_a_chart(verified_client, sent_campaign):
    """R-SMALL-CELL, R-MIN-NECESSARY, R-DEIDENTIFY: 14 sent, 4 blocked, 12 opened, 2 clicked: the page shows
    every count a marketer may read, and none that they may not."""
    verified_client.sign_in(role="marketer")

    page = verified_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()

    assert 'data-stat="sent">14<' in page
    assert f'data-stat="audience">14 + {FEWER}<' in page  # 18 would give the 4 blocked away
    assert f'data-stat="blocked">{FEWER}<' in page
    # 12 opened of 14 sent would give away the 2 who did not open.
    assert f'data-stat="opened">all but {FEWER}<' in page and f'data-stat="clicked">{FEWER}<' in page
    assert page.count("<svg") >= 3 and 'role="img"' in page and "<desc" in page
    assert "chart-funnel" in page and "hatch" in page
    assert "Evidence for each patient" not in page


def test_compliance_officer_page_shows_exact_results(verified_client, sent_campaign):
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/campaigns/{sent_campaign.pk}/").content.decode()

    assert 'data-stat="audience">18<' in page and 'data-stat="blocked">4<' in page
    assert 'data-stat="clicked">2<' in page and "16.7% of those who opened" in page
    assert FEWER not in page
    assert "Evidence for each patient" in page


def test_results_csv_is_suppressed_for_marketers_and_audited(verified_client, sent_campaign):
    from audit.models import AuditEvent

    marketer = verified_client.sign_in(role="marketer")

    response = verified_client.get(f"/campaigns/{sent_campaign.pk}/results.csv")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().splitlines()
    assert lines[0] == "campaign,metric,label,patients,share,share_of"
    rows = {line.split(",")[1]: line.split(",")[3] for line in lines[1:]}
    assert rows["sent"] == "14" and rows["blocked"] == FEWER and rows["clicked"] == FEWER
    assert rows["audience"] == f"14 + {FEWER}"
    event = AuditEvent.objects.get(action="campaign.results_downloaded")
    assert event.actor == marketer and event.details == {"exact": False}


def test_results_of_an_unknown_campaign_are_not_found(verified_client):
    verified_client.sign_in(role="marketer")

    assert verified_client.get("/campaigns/999999/results.csv").status_code == 404


def test_results_need_a_signed_in_staff_member(client, sent_campaign):
    assert client.get(f"/campaigns/{sent_campaign.pk}/results.csv").status_code == 302


def test_a_campaign_not_launched_has_no_results_and_no_chart(verified_client):
    from campaigns.tests.factories import campaign_make

    campaign = campaign_make(purpose=purpose_make())
    verified_client.sign_in(role="marketer")

    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()

    assert "Not launched yet: no deliveries." in page and "figure" not in page
