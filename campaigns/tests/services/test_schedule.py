"""Scheduling (issue 5, item 4): send at a time entered in a time zone, stored in UTC with the zone, shown back
in both; the second factor re-entered (R-SEC-MFA); a time in the past refused; the scheduler launches the
campaign at its time, not before."""
import zoneinfo
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import dateformat, timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import staff_make
from audit.models import AuditEvent
from campaigns.models import Campaign, Delivery
from campaigns.periodic import campaign_launch_due_task
from campaigns.scheduling import (
    schedule_display,
    schedule_entered_display,
    schedule_local_to_utc,
    schedule_relative,
)
from campaigns.selectors.campaigns import campaign_due_list
from campaigns.services.launch import campaign_launch
from campaigns.services.lifecycle import campaign_pause, campaign_resume, campaign_schedule
from campaigns.tests.factories import campaign_approved_make
from conftest import totp_code
from consent.tests.factories import authorization_make, patient_make, purpose_make

pytestmark = pytest.mark.django_db


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def _local_in(zone: str, delta: timedelta) -> str:
    return f"{(timezone.now() + delta).astimezone(zoneinfo.ZoneInfo(zone)):%Y-%m-%dT%H:%M}"


@pytest.fixture
def approved():
    purpose = purpose_make()
    for _ in range(3):
        authorization_make(patient=patient_make(), purpose=purpose)
    patient_make()
    return campaign_approved_make(purpose=purpose)


def test_schedule_is_shown_in_its_zone_and_in_utc():
    when = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)

    assert schedule_display(when, "America/New_York") == "Tue 1 Dec 2026, 09:00 America/New_York (14:00 UTC)"
    assert schedule_display(when, "UTC") == "Tue 1 Dec 2026, 14:00 UTC"
    assert schedule_display(datetime(2026, 12, 2, 3, 30, tzinfo=UTC), "America/Los_Angeles") == (
        "Tue 1 Dec 2026, 19:30 America/Los_Angeles (Wed 2 Dec, 03:30 UTC)"
    )


def test_a_wall_clock_time_the_zone_skips_is_refused_and_a_repeated_one_is_the_first():
    with pytest.raises(ValidationError, match="does not exist in America/Chicago"):
        schedule_local_to_utc(local=datetime(2027, 3, 14, 2, 30), timezone_name="America/Chicago")
    # 1:30 happens twice on 7 Nov 2027 in Chicago: the first (CDT, UTC-5) is taken.
    assert schedule_local_to_utc(local=datetime(2027, 11, 7, 1, 30), timezone_name="America/Chicago") == datetime(
        2027, 11, 7, 6, 30, tzinfo=UTC
    )
    with pytest.raises(ValidationError, match="time zone"):
        schedule_local_to_utc(local=datetime(2027, 1, 1, 9, 0), timezone_name="Mars/Olympus_Mons")


def test_r_sec_mfa_scheduling_needs_the_code_and_stores_utc_with_the_zone(verified_client, approved):
    """R-SEC-MFA: a wrong code schedules nothing (audited as a failed re-entry); the right one stores the time in
    UTC with the zone it was entered in, and the campaign page shows it back in both."""
    officer = verified_client.sign_in(role="compliance officer")
    local = _local_in("America/New_York", timedelta(days=3))
    form = {"schedule-send_at": local, "schedule-timezone": "America/New_York"}

    wrong = verified_client.post(f"/campaigns/{approved.pk}/schedule/", form | {"schedule-code": _wrong(totp_code(officer))})

    approved.refresh_from_db()
    assert wrong.status_code == 200 and "That code did not work" in wrong.content.decode()
    assert (approved.status, approved.scheduled_for, approved.schedule_timezone) == ("approved", None, "")
    assert AuditEvent.objects.get(action="mfa.reentry_failed").details == {"for": "campaign.schedule"}
    assert not AuditEvent.objects.filter(action="campaign.scheduled").exists()

    right = verified_client.post(f"/campaigns/{approved.pk}/schedule/", form | {"schedule-code": totp_code(officer)})

    approved.refresh_from_db()
    expected = schedule_local_to_utc(local=datetime.strptime(local, "%Y-%m-%dT%H:%M"), timezone_name="America/New_York")
    assert right.status_code == 302 and right["Location"] == f"/campaigns/{approved.pk}/"
    assert (approved.status, approved.scheduled_for, approved.schedule_timezone) == (
        "scheduled", expected, "America/New_York"
    )
    event = AuditEvent.objects.get(action="campaign.scheduled")
    assert event.actor_id == officer.pk
    assert event.details == {
        "from": "approved",
        "to": "scheduled",
        "scheduled_for": expected.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "timezone": "America/New_York",
    }
    page = verified_client.get(right["Location"]).content.decode()
    # Issue 17: in the organisation's zone (named), with the zone it was entered in beside it.
    organisation = expected.astimezone(zoneinfo.ZoneInfo("America/Chicago"))
    assert dateformat.format(organisation, "M j, Y, g:i A T") in page
    assert schedule_entered_display(expected, "America/New_York") in page
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    ("send_at", "zone", "message"),
    [
        ("past", "America/Chicago", "That time has already passed"),
        ("2026-13-40T25:00", "America/Chicago", "Enter the date and time as YYYY-MM-DD HH:MM"),
        ("", "America/Chicago", "Enter the date and time to send at."),
        ("future", "Atlantis/Capital", "Choose a time zone from the list."),
    ],
    ids=["past", "garbage", "missing", "unknown-zone"],
)
def test_bad_times_are_refused_with_a_clear_error_and_the_code_is_not_spent(verified_client, approved, send_at, zone, message):
    officer = verified_client.sign_in(role="administrator")
    value = {"past": _local_in(zone if zone != "Atlantis/Capital" else "UTC", -timedelta(minutes=5)),
             "future": _local_in("UTC", timedelta(days=1))}.get(send_at, send_at)

    response = verified_client.post(
        f"/campaigns/{approved.pk}/schedule/",
        {"schedule-send_at": value, "schedule-timezone": zone, "schedule-code": totp_code(officer)},
    )

    approved.refresh_from_db()
    assert response.status_code == 200
    assert message in response.content.decode()
    assert (approved.status, approved.scheduled_for) == ("approved", None)
    assert not AuditEvent.objects.filter(action__in=["campaign.scheduled", "mfa.reentry_failed"]).exists()
    assert TOTPDevice.objects.get(user=officer).last_t == -1  # the code was not used up on a form error


def test_the_service_refuses_a_time_in_the_past_and_a_naive_time(approved):
    officer = staff_make(role="compliance officer")

    with pytest.raises(ValidationError, match="already passed"):
        campaign_schedule(
            actor=officer, campaign_id=approved.pk, send_at=timezone.now() - timedelta(seconds=1), timezone_name="UTC"
        )
    with pytest.raises(ValueError):
        campaign_schedule(
            actor=officer, campaign_id=approved.pk, send_at=datetime(2099, 1, 1, 9, 0), timezone_name="UTC"
        )

    approved.refresh_from_db()
    assert approved.status == "approved"


def test_r_min_necessary_a_marketer_cannot_schedule(verified_client, approved):
    """R-MIN-NECESSARY: marketers see the status only — the scheduling URL is a 404 and the service refuses."""
    marketer = verified_client.sign_in(role="marketer")

    response = verified_client.post(
        f"/campaigns/{approved.pk}/schedule/",
        {"schedule-send_at": _local_in("UTC", timedelta(days=1)), "schedule-timezone": "UTC", "schedule-code": "123456"},
    )
    with pytest.raises(PermissionDenied):
        campaign_schedule(
            actor=marketer, campaign_id=approved.pk, send_at=timezone.now() + timedelta(days=1), timezone_name="UTC"
        )

    approved.refresh_from_db()
    assert response.status_code == 404 and approved.status == "approved"


def test_only_an_approved_or_scheduled_campaign_can_be_scheduled(approved):
    officer = staff_make(role="compliance officer")
    later = timezone.now() + timedelta(days=2)
    campaign_schedule(actor=officer, campaign_id=approved.pk, send_at=later, timezone_name="UTC")
    moved = campaign_schedule(
        actor=officer, campaign_id=approved.pk, send_at=later + timedelta(hours=1), timezone_name="Europe/Paris"
    )
    assert (moved.status, moved.scheduled_for, moved.schedule_timezone) == (
        "scheduled", later + timedelta(hours=1), "Europe/Paris"
    )
    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        campaign_launch(actor=officer, campaign_id=approved.pk)

    with pytest.raises(ValidationError, match="A sending campaign cannot be scheduled"):
        campaign_schedule(actor=officer, campaign_id=approved.pk, send_at=later, timezone_name="UTC")


def test_the_scheduler_launches_a_due_campaign_at_its_time_and_not_before(approved):
    """The beat task (campaign_launch_due_task) leaves a scheduled campaign alone until its time, then launches
    it as the system: the deliveries are made then, and the workers are woken."""
    officer = staff_make(role="compliance officer")
    at = timezone.now() + timedelta(hours=6)
    campaign_schedule(actor=officer, campaign_id=approved.pk, send_at=at, timezone_name="America/Denver")

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"):
        with mock.patch("django.utils.timezone.now", return_value=at - timedelta(seconds=1)):
            assert campaign_due_list() == []
            campaign_launch_due_task()
        approved.refresh_from_db()
        assert approved.status == "scheduled" and not Delivery.objects.exists()

        with mock.patch("django.utils.timezone.now", return_value=at):
            assert campaign_due_list() == [approved.pk]
            campaign_launch_due_task()

    approved.refresh_from_db()
    assert approved.status == "sending"
    assert sorted(Delivery.objects.values_list("status", flat=True)) == ["blocked", "queued", "queued", "queued"]
    launched = AuditEvent.objects.get(action="campaign.launched")
    assert (launched.actor_id, launched.actor_role) == (None, "system")


def test_a_paused_scheduled_campaign_is_not_launched_at_its_time_until_resumed(approved):
    officer = staff_make(role="compliance officer")
    at = timezone.now() + timedelta(hours=1)
    campaign_schedule(actor=officer, campaign_id=approved.pk, send_at=at, timezone_name="UTC")
    campaign_pause(actor=officer, campaign_id=approved.pk)

    with mock.patch("campaigns.tasks.campaign_dispatch_task.delay"), mock.patch(
        "django.utils.timezone.now", return_value=at + timedelta(minutes=5)
    ):
        campaign_launch_due_task()
        assert Campaign.objects.get(pk=approved.pk).status == "paused" and not Delivery.objects.exists()
        resumed = campaign_resume(actor=officer, campaign_id=approved.pk)
        assert resumed.status == "scheduled"
        campaign_launch_due_task()

    assert Campaign.objects.get(pk=approved.pk).status == "sending"
    assert Delivery.objects.count() == 4


@pytest.mark.parametrize(
    ("ahead", "shown"),
    [
        (timedelta(seconds=20), "in 1 minute"),
        (timedelta(minutes=45), "in 45 minutes"),
        (timedelta(minutes=119), "in 119 minutes"),
        (timedelta(hours=5, minutes=59), "in 5 hours"),
        (timedelta(days=3, hours=2), "in 3 days"),
        (timedelta(days=100), "in 3 months"),
        (timedelta(days=800), "in 2 years"),
        (timedelta(seconds=-1), ""),
    ],
)
def test_how_far_away_a_schedule_is_reads_in_words(ahead, shown):
    now = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)

    assert schedule_relative(now + ahead, now=now) == shown
