"""The review loop in the pages (issue 17, items 2 and 3): the "needs your review" queue and its count, the notices
page, one code for approving and then sending (the step-up's grace, R-SEC-MFA) or "approve and send now", the
honest message for a code just used, six report exports on one code, the progress split into sent, blocked and
remaining, and the schedule form in the organisation's zone across a change of daylight saving time."""
import re
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery, Notice
from campaigns.selectors.campaigns import campaign_due_list
from campaigns.sending.dispatch import delivery_dispatch_batch
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_submit
from campaigns.tests.factories import campaign_approved_make, campaign_make
from conftest import totp_code
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


@pytest.fixture
def purpose():
    return purpose_make(name="CPAP supplies")


@pytest.fixture
def grace(settings):
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 300


def _submitted(purpose, **overrides) -> Campaign:
    campaign = campaign_make(purpose=purpose, **overrides)
    return campaign_submit(actor=campaign.created_by, campaign_id=campaign.pk)


def _passes() -> list[dict]:
    return [event.details for event in AuditEvent.objects.filter(action="mfa.reentry_passed").order_by("id")]


# --- The queue ---------------------------------------------------------------------------------------------------


def test_the_queue_lists_submitted_campaigns_oldest_first_with_who_and_when_and_the_nav_counts_them(
    verified_client, purpose
):
    first = _submitted(purpose, name="First in")
    second = _submitted(purpose, name="Second in")
    campaign_make(purpose=purpose, name="Still a draft")
    officer = verified_client.sign_in(role="compliance officer")

    page = verified_client.get("/campaigns/review/").content.decode()

    assert page.index("First in") < page.index("Second in")
    assert "Still a draft" not in page.split("<main")[1]
    assert f'href="/campaigns/{first.pk}/review/"' in page and f'href="/campaigns/{second.pk}/review/"' in page
    assert f"submitted by {first.created_by.email}" in page
    assert re.search(r'data-nav="review-queue">Needs review <span class="nav-count" data-count>'
                     r'<span class="visually-hidden">waiting: </span>2</span>', page)
    submitted_at = AuditEvent.objects.get(action="campaign.submitted", object_id=str(first.pk)).occurred_at
    local = timezone.localtime(submitted_at)
    assert f"{local:%b} {local.day}, {local.year}" in page
    assert officer.email not in page.split("<main")[1]


def test_a_marketer_has_no_queue_and_no_queue_link(verified_client, purpose):
    _submitted(purpose)
    verified_client.sign_in(role="marketer")

    assert verified_client.get("/campaigns/review/").status_code == 404
    assert 'data-nav="review-queue"' not in verified_client.get("/").content.decode()


def test_the_home_page_shows_the_reviewer_what_waits(verified_client, purpose):
    _submitted(purpose, name="Spring masks")
    verified_client.sign_in(role="administrator")

    page = verified_client.get("/").content.decode()

    assert "data-review-panel" in page and "1 waits for your review" in page and "Spring masks" in page


def test_the_queue_tells_an_author_who_reviews_that_another_must_approve(verified_client, purpose):
    admin = staff_make(role="administrator", with_totp=True)
    _submitted(purpose, author=admin, name="My own")
    verified_client.sign_in(user=admin)

    page = verified_client.get("/campaigns/review/").content.decode()

    assert "My own" in page and "You wrote this, so another compliance officer" in page


# --- Notices in the product ----------------------------------------------------------------------------------


def test_the_author_sees_the_approval_in_notices_opens_it_and_it_is_read(verified_client, purpose):
    campaign = campaign_approved_make(purpose=purpose, name="Spring masks")
    author = verified_client.sign_in(user=campaign.created_by)
    notice = Notice.objects.get(recipient=author)

    home = verified_client.get("/").content.decode()
    page = verified_client.get("/campaigns/notices/").content.decode()
    opened = verified_client.get(f"/campaigns/notices/{notice.pk}/")

    assert re.search(r'data-nav="notices">Notices <span class="nav-count" data-count>'
                     r'<span class="visually-hidden">unread: </span>1</span>', home)
    assert f"{campaign.approved_by.email} approved “Spring masks”." in page and "data-unread" in page
    assert opened.status_code == 302 and opened["Location"] == f"/campaigns/{campaign.pk}/"
    notice.refresh_from_db()
    assert notice.read_at is not None
    assert 'data-nav="notices">Notices</a>' in verified_client.get("/").content.decode()


def test_mark_as_read_touches_only_ones_own_notices(verified_client, purpose):
    mine = campaign_approved_make(purpose=purpose)
    theirs = campaign_approved_make(purpose=purpose)
    author = verified_client.sign_in(user=mine.created_by)
    other = Notice.objects.get(recipient=theirs.created_by)

    assert verified_client.get(f"/campaigns/notices/{other.pk}/").status_code == 404
    verified_client.post("/campaigns/notices/read/", {"notice": str(other.pk)})
    verified_client.post("/campaigns/notices/read/", {"notice": "all"})

    other.refresh_from_db()
    assert other.read_at is None
    assert not Notice.objects.filter(recipient=author, read_at__isnull=True).exists()


# --- One code: the grace, and approve and send now (R-SEC-MFA) ---------------------------------------------


def test_r_sec_mfa_approve_then_send_takes_one_code_and_both_steps_are_audited(verified_client, purpose, grace):
    """R-SEC-MFA, issue 17: approving and then sending asked for two codes (the second refused as "did not work"
    while it was still the current one). Within the grace the send needs none; both step-ups are audited."""
    authorization_make(patient=patient_make(), purpose=purpose)
    campaign = _submitted(purpose)
    officer = verified_client.sign_in(role="compliance officer")

    approved = verified_client.post(
        f"/campaigns/{campaign.pk}/review/", {"decision": "approve", "approve-code": totp_code(officer)}
    )
    review = verified_client.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        sent = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": ""})

    campaign.refresh_from_db()
    assert approved.status_code == 302 and sent.status_code == 302
    assert "no code is needed until" in review
    assert campaign.status == "sending" and Delivery.objects.filter(campaign=campaign).count() == 1
    assert _passes() == [{"for": "campaign.approve", "by": "code"}, {"for": "campaign.launch", "by": "grace"}]
    assert not AuditEvent.objects.filter(action="mfa.reentry_failed").exists()


def test_r_sec_mfa_approve_and_send_now_is_one_step_up(
    verified_client, purpose, settings, django_capture_on_commit_callbacks
):
    """R-SEC-MFA: "Approve and send now" approves and launches on one code, even with no grace at all."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 0
    authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    campaign = _submitted(purpose)
    officer = verified_client.sign_in(role="compliance officer")

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay") as wake, django_capture_on_commit_callbacks(
        execute=True
    ):
        response = verified_client.post(
            f"/campaigns/{campaign.pk}/review/", {"decision": "approve_send", "approvesend-code": totp_code(officer)}
        )

    campaign.refresh_from_db()
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/"
    assert (campaign.status, campaign.approved_by_id) == ("sending", officer.pk)
    assert sorted(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == ["blocked", "queued"]
    assert wake.call_count == 1
    assert _passes() == [{"for": "campaign.approve", "then": "campaign.launch", "by": "code"}]
    actions = list(
        AuditEvent.objects.filter(object_type="campaign", object_id=str(campaign.pk)).values_list("action", flat=True)
    )
    assert actions[-3:] == ["mfa.reentry_passed", "campaign.approved", "campaign.launched"]


def test_r_sec_mfa_approve_and_send_now_by_the_author_does_nothing(verified_client, purpose):
    admin = staff_make(role="administrator", with_totp=True)
    campaign = _submitted(purpose, author=admin)
    verified_client.sign_in(user=admin)

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/review/", {"decision": "approve_send", "approvesend-code": totp_code(admin)}
    )

    campaign.refresh_from_db()
    assert response.status_code == 403 and "You wrote this campaign" in response.content.decode()
    assert campaign.status == "submitted" and not Delivery.objects.exists()
    assert AuditEvent.objects.filter(action="campaign.approve_refused").count() == 1


def test_r_sec_mfa_a_code_just_used_gets_an_honest_message(verified_client, purpose, settings):
    """With the grace off, the code that approved cannot send: the page says it was just used, not that it did
    not work."""
    settings.HIPAAMAIL_STEPUP_GRACE_SECONDS = 0
    campaign = _submitted(purpose)
    officer = verified_client.sign_in(role="compliance officer")
    code = totp_code(officer)
    verified_client.post(f"/campaigns/{campaign.pk}/review/", {"decision": "approve", "approve-code": code})

    again = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": code})

    page = again.content.decode()
    assert again.status_code == 200
    assert "That code was just used; wait for the next one" in page and "did not work" not in page
    assert not Delivery.objects.exists()
    assert AuditEvent.objects.get(action="mfa.reentry_failed").details == {"for": "campaign.launch"}


def test_r_sec_mfa_signing_out_ends_the_grace(verified_client, purpose, grace):
    """R-SEC-MFA: the grace lives in the session; after signing out and in again the code is asked again."""
    campaign = _submitted(purpose)
    officer = verified_client.sign_in(role="compliance officer")
    verified_client.post(f"/campaigns/{campaign.pk}/review/", {"decision": "approve", "approve-code": totp_code(officer)})

    verified_client.post("/accounts/logout/")
    verified_client.sign_in(user=officer)
    refused = verified_client.post(f"/campaigns/{campaign.pk}/launch/", {"launch-code": ""})

    assert refused.status_code == 200 and "That code did not work" in refused.content.decode()
    assert not Delivery.objects.exists()


def test_r_sec_mfa_six_report_exports_need_one_code(verified_client, grace):
    """R-SEC-MFA, issue 17: six exports cost about 150 s of waiting for new codes; now the first takes the code and
    the next five pass on the grace, each export and each step-up audited."""
    officer = verified_client.sign_in(role="compliance officer")
    today = timezone.localdate()
    period = {"summary-date_from": (today - timedelta(days=7)).isoformat(), "summary-date_to": today.isoformat()}

    codes = [totp_code(officer)] + [""] * 5
    responses = [
        verified_client.post("/reports/compliance-summary/", period | {"summary-format": "csv", "summary-code": code})
        for code in codes
    ]

    assert [response.status_code for response in responses] == [200] * 6
    assert all("attachment" in response["Content-Disposition"] for response in responses)
    assert [details["by"] for details in _passes()] == ["code"] + ["grace"] * 5
    assert AuditEvent.objects.filter(action="report.exported", actor=officer).count() == 6
    assert not AuditEvent.objects.filter(action="mfa.reentry_failed").exists()


# --- Progress -----------------------------------------------------------------------------------------------


def _launched(*, covered: int, uncovered: int) -> Campaign:
    purpose = purpose_make()
    for _ in range(covered):
        authorization_make(patient=patient_make(), purpose=purpose)
    for _ in range(uncovered):
        patient_make()
    campaign = campaign_approved_make(purpose=purpose)
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=None, campaign_id=campaign.pk)
    return campaign


def test_progress_separates_sent_blocked_and_remaining_and_blocked_is_never_progress(verified_client):
    """Issue 17: with 12 of 20 blocked and none sent the bar read 60 %. Now: 0 % with 12 blocked and 8 remaining;
    after the sends, 100 % with 8 sent."""
    campaign = _launched(covered=8, uncovered=12)
    verified_client.sign_in(role="compliance officer")

    before = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    delivery_dispatch_batch(campaign_id=campaign.pk, batch_size=100)
    after = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()

    assert before["percent"] == 0 and before["remaining"] is True
    assert [(s["key"], s["text"], s["width"]) for s in before["segments"]] == [
        ("sent", "0", 0.0), ("blocked", "12", 60.0), ("remaining", "8", 40.0)
    ]
    assert 'data-segment="blocked" style="width: 60.00%"' in page
    assert "<span>Blocked (not sent): <strong>12</strong></span>" in page
    assert "<span>Remaining (queued or being sent): <strong>8</strong></span>" in page
    assert after["percent"] == 100 and after["remaining"] is False
    assert [(s["key"], s["text"]) for s in after["segments"]] == [("sent", "8"), ("blocked", "12"), ("remaining", "0")]


def test_r_small_cell_a_marketer_reads_the_progress_with_small_counts_suppressed(verified_client):
    """R-SMALL-CELL: a marketer's progress reads "fewer than 11" for 1 to 10, and its segment is drawn at the
    middle of that range, not at the true count."""
    campaign = _launched(covered=3, uncovered=20)
    verified_client.sign_in(role="marketer")

    data = verified_client.get(f"/campaigns/{campaign.pk}/progress/").json()

    shown = {s["key"]: (s["text"], s["width"]) for s in data["segments"]}
    assert shown["blocked"][0] == "20" and shown["remaining"][0] == "fewer than 11"
    assert shown["remaining"][1] == round(100 * 5.5 / 25.5, 2)
    assert "3" not in data["summary"]


# --- The schedule form, in the organisation's zone ----------------------------------------------------------


def test_the_schedule_form_defaults_to_the_organisations_zone_and_suggests_a_time(verified_client, purpose, settings):
    settings.TIME_ZONE = "America/Chicago"
    campaign = campaign_approved_make(purpose=purpose)
    verified_client.sign_in(role="compliance officer")

    page = verified_client.get(f"/campaigns/{campaign.pk}/review/").content.decode()

    assert '<option value="America/Chicago" selected>' in page
    assert 'data-browser-timezone="preselect"' not in page
    assert re.search(r'name="schedule-send_at" value="\d{4}-\d{2}-\d{2}T\d{2}:00"', page)
    assert "data-schedule-relative" in page


@pytest.mark.parametrize(
    "local, utc",
    [
        ("2027-03-13T09:00", datetime(2027, 3, 13, 15, 0, tzinfo=UTC)),  # CST, UTC-6
        ("2027-03-14T09:00", datetime(2027, 3, 14, 14, 0, tzinfo=UTC)),  # CDT, UTC-5: clocks went forward at 2:00
        ("2027-11-07T09:00", datetime(2027, 11, 7, 15, 0, tzinfo=UTC)),  # CST again: clocks went back at 2:00
    ],
)
def test_a_schedule_across_a_daylight_saving_change_stores_the_right_instant_and_shows_it_back(
    verified_client, purpose, settings, grace, local, utc
):
    """9:00 in Chicago is 15:00 UTC in winter and 14:00 UTC in summer; the scheduler launches at that instant,
    and the campaign page shows it in the organisation's zone, named, with how far away it is."""
    settings.TIME_ZONE = "America/Chicago"
    campaign = campaign_approved_make(purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")

    response = verified_client.post(
        f"/campaigns/{campaign.pk}/schedule/",
        {"schedule-send_at": local, "schedule-timezone": "America/Chicago", "schedule-code": totp_code(officer)},
    )

    campaign.refresh_from_db()
    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert response.status_code == 302
    assert (campaign.scheduled_for, campaign.schedule_timezone) == (utc, "America/Chicago")
    zone = "CDT" if utc.month == 3 and utc.day == 14 else "CST"
    day = int(local[8:10])
    assert f"{['Mar', 'Nov'][local[5:7] == '11']} {day}, 2027, 9:00 AM {zone}" in page
    assert "as entered" not in page  # entered in the organisation's own zone: one zone on the page
    assert re.search(r"data-schedule-in>in \d+ months<", page)  # March or November 2027, from December 2026
    assert campaign_due_list(now=utc - timedelta(seconds=1)) == []
    assert campaign_due_list(now=utc) == [campaign.pk]


def test_a_schedule_entered_in_another_zone_is_shown_in_the_organisations_with_the_zone_it_was_entered_in(
    verified_client, purpose, settings, grace
):
    settings.TIME_ZONE = "America/Chicago"
    campaign = campaign_approved_make(purpose=purpose)
    officer = verified_client.sign_in(role="compliance officer")

    verified_client.post(
        f"/campaigns/{campaign.pk}/schedule/",
        {"schedule-send_at": "2027-03-14T09:00", "schedule-timezone": "America/New_York",
         "schedule-code": totp_code(officer)},
    )

    page = verified_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Mar 14, 2027, 8:00 AM CDT" in page
    assert "Mar 14, 9:00 AM America/New_York, as entered" in page
